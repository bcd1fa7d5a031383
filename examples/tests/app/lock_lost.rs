//! A lock session terminated in the middle of migration 001's long backfill (an
//! administrator's pg_terminate_backend, a failover): `migrate_kroger_passwords up` stops within
//! seconds (not at the end of the backfill), and the next runner finishes the work, each row
//! hashed once. (The library's side of a lost lock is migrator-tests' `lock_lost`.)

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::users::{self, assert_all_hashed, assert_each_updated_once};
use common::{count, TestDb};
use migrator::connection::Backend;

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

/// `migrate_kroger_passwords up` on `url`, development, with the given Argon2 memory and
/// batch size on one worker thread.
fn kroger_up(url: &str, memory_kib: &str, batch_size: &str) -> Command {
    let mut cmd = common::isolated(CLI);
    cmd.arg("up")
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "development")
        .env("ARGON2_MEMORY_KIB", memory_kib)
        .env("ARGON2_ITERATIONS", "1")
        .env("MIGRATION_WORKER_THREADS", "1")
        .env("MIGRATION_BATCH_SIZE", batch_size)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn hashed(db: &migrator::Database) -> i64 {
    common::try_count(
        db,
        "SELECT COUNT(kroger_password_hash) AS n FROM user_profiles",
    )
    .unwrap_or(0)
}

#[test]
fn a_lock_lost_mid_backfill_stops_the_runner_within_seconds_and_the_next_one_finishes() {
    // Long enough on one thread that the backfill would run on well past the 10 s bound.
    const ROWS: i64 = 3_000;
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let mut first = kroger_up(&t.url, "4096", "8").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while hashed(&db) == 0 {
        assert!(Instant::now() < deadline, "the backfill never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    // An administrator (or a failover) ends the lock's session, mid-backfill.
    let terminated = count(
        &db,
        "SELECT COUNT(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'migrator %' AND datname = current_database()) AS t",
    );
    assert_eq!(terminated, 1, "one lock session");
    let since = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        if since.elapsed() > Duration::from_secs(10) {
            let _ = first.kill();
            let out = first.wait_with_output().unwrap();
            panic!(
                "the runner kept migrating for 10 s without its lock ({} of {ROWS} rows \
                 hashed): {}",
                hashed(&db),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("migration 001_hash_kroger_passwords failed: the migration lock was lost"),
        "{stderr}"
    );
    // Before the error, what the run did: here, the one it was running failed, and what came
    // after it was not started.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l == "failed 001_hash_kroger_passwords"),
        "{stdout}"
    );
    assert!(!stdout.contains("applied "), "{stdout}");
    let at_stop = hashed(&db);
    assert!(at_stop < ROWS - 100, "stopped mid-way: {at_stop} hashed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hashed(&db), at_stop, "nothing written after it stopped");

    // The next runner (the lock is free) resumes and finishes; no row was hashed twice.
    let second = kroger_up(&t.url, "256", "128").output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
    let row = common::texts(
        &db,
        "SELECT status || ' ' || CAST(attempts AS TEXT) AS v FROM applied_migrations \
         WHERE migration_name = '001_hash_kroger_passwords'",
    );
    assert_eq!(row, ["success 2"]);
}
