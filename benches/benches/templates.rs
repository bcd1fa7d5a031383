//! `#[migrator::test]`'s templates against migrating every test's database: 100 "tests" that
//! each need all of the Smart Meal Planner's migrations (the demo schema `DEMO_SQL` with its
//! 1,000 users, then `001_hash_kroger_passwords` with its backfill inline), one after another,
//! each creating its database and dropping it, on PostgreSQL (the harness's throwaway cluster)
//! and SQLite. Prints the time per test each way and the ratio (README, "Testing your
//! migrations").
//!
//! `cargo bench -p migrator-benches --bench templates` (`TEMPLATE_BENCH_TESTS=N` for another
//! count). Argon2 runs with cheap parameters (256 KiB, 1 iteration), as the test suites do
//! (`setup = ...`). `TEMPLATE_BENCH_ARGON2=default` keeps the demo's own parameters (m=19456,
//! t=2: seconds of hashing per migrated database); `TEMPLATE_BENCH_BASELINE_TESTS=N` then times
//! the slow way on N tests only (its cost per test is steady) and compares per-test times.

use std::time::{Duration, Instant};

use migrator::connection::Backend;
use migrator::testing::{Backfills, Spec};
use smart_meal_planner::demo::DEMO_SQL;

fn spec(templates: bool) -> Spec {
    let mut spec = Spec::new();
    spec.sql_migrations(&DEMO_SQL)
        .backfills(Backfills::Inline)
        .dangerous_disable_templates(!templates);
    spec
}

/// Makes and drops `tests` databases of `spec`; the total time.
fn run(spec: &Spec, backend: Backend, tests: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..tests {
        let db = spec.create(backend).expect("a test database");
        // What a test would find: every user hashed.
        let mut conn = db.database().get().expect("a connection");
        let rows: migrator::connection::Count = diesel::RunQueryDsl::get_result(
            diesel::sql_query(
                "SELECT COUNT(*) AS n FROM user_profiles WHERE kroger_password_hash IS NULL",
            ),
            &mut *conn,
        )
        .expect("count unhashed rows");
        assert_eq!(rows.n, 0);
    }
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with one test.
    let tests: u32 = if std::env::args().any(|a| a == "--bench") {
        std::env::var("TEMPLATE_BENCH_TESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
    } else {
        1
    };
    let default_argon2 = std::env::var("TEMPLATE_BENCH_ARGON2").is_ok_and(|v| v == "default");
    if !default_argon2 {
        smart_meal_planner::kroger::set_hash_params(migrator::password::Params {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        });
    }
    let baseline_tests: u32 = std::env::var("TEMPLATE_BENCH_BASELINE_TESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(tests)
        .clamp(1, tests.max(1));
    println!(
        "{tests} tests, each on a fresh database with all of the demo's migrations (Argon2 {})",
        if default_argon2 {
            "m=19456,t=2,p=1: the demo's"
        } else {
            "m=256,t=1,p=1: test parameters"
        }
    );
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let migrating = run(&spec(false), backend, baseline_tests);
        let templates = run(&spec(true), backend, tests);
        let per = |d: Duration, n: u32| d.as_secs_f64() * 1000.0 / f64::from(n);
        println!(
            "{backend}: migrating each database {:.1} ms/test ({:.2} s for {baseline_tests}), \
             templates {:.1} ms/test ({:.2} s for {tests}, the template's build included): \
             {:.1}x faster",
            per(migrating, baseline_tests),
            migrating.as_secs_f64(),
            per(templates, tests),
            templates.as_secs_f64(),
            per(migrating, baseline_tests) / per(templates, tests)
        );
    }
}
