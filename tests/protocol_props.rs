//! Property tests of the two decisions the rest stands on, on PostgreSQL and SQLite, each
//! against a model small enough to be obviously right:
//!
//! - **The backfill's claim/write protocol.** Random interleavings of three workers' claims and
//!   writes (each worker a process of its own, driven a half-step at a time through
//!   [`migrator::testing::SteppedWorker`], which runs the worker threads' own code), crashes
//!   (a batch dropped unwritten, its lease left behind) and the clean-up of dead workers,
//!   computations that fail (the batch given back; `failed` after six in a row),
//!   application writes between a claim and its write (new inputs, the application's own output,
//!   cleared outputs, NULL inputs, deletes, inserts beyond `upper_key`, and on PostgreSQL a
//!   transaction left open on a row), and an operator's pause, resume and cancel. The model
//!   predicts every write exactly (which rows the guard lets through), so after every step the
//!   table, `status` and `rows_done` must equal the model's; claims must take only pending rows
//!   up to `upper_key`, never a row another live worker leased (PostgreSQL) or an open
//!   transaction holds; `finished` only when nothing is pending. At the end every batch in
//!   flight is written, the dead are cleaned up, inputs the computation fails on are fixed, a
//!   paused or failed backfill is resumed, and a worker must finish it: every row computed from
//!   its current inputs. Each property also checks that its runs reached the states that
//!   matter (batches left by the guard, crashes with a batch in flight, leases stepped around,
//!   failed computations, finished and cancelled backfills), so that it cannot pass vacuously.
//! - **The plan's decisions.** The policy table of DESIGN.md as a pure function of the
//!   variables (random values and spellings), confirmation (`--yes`, a terminal, a pinned plan
//!   that matches or not) and the tracking table's rows (none, `success`, `failed`, `skipped`,
//!   `running`), against [`Migrator::plan`]; then `up` (`Migrator::run`) must do what the plan
//!   says: apply everything pending when it allows it, change nothing when it refuses.
//!
//! Cases per property and backend: `PROPTEST_CASES`, else 32 runs of the protocol and 64 plans
//! (35 to 50 s in all on 2 cores busy with other builds, about 10 s of CPU). A failure prints the minimal sequence of steps, and its seed
//! is kept in `tests/proptest-regressions/protocol_props.txt` (tried first on the next run).

#[path = "protocol_props/claim_write.rs"]
mod claim_write;
#[path = "protocol_props/model.rs"]
mod model;
#[path = "protocol_props/plan.rs"]
mod plan;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::RunQueryDsl;
use migrator::testing::{Migrations, Spec, TestDatabase};
use migrator::{connection::Backend, AnyConnection, Migrator};
use proptest::strategy::Strategy;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestError, TestRunner,
};

pub(crate) fn only(ids: &[&str]) -> Migrator {
    Migrator::from_migrations(migrator::Migration::registered().filter(|m| ids.contains(&m.id())))
        .expect("the test's migrations")
}

/// Cases per property: `PROPTEST_CASES`, else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs of the protocol per backend, by default (each is a database and up to 48 steps).
pub(crate) const PROTOCOL_CASES: u32 = 32;
/// Plans per backend, by default (each is a database, a plan and an `up`).
pub(crate) const PLAN_CASES: u32 = 64;

pub(crate) fn fresh(backend: Backend) -> TestDatabase {
    let mut spec = Spec::new();
    spec.migrations(Migrations::None);
    spec.create(backend)
        .unwrap_or_else(|e| panic!("a fresh {backend} database: {e}"))
}

/// Runs `sql` with `values` (text) then `key` (an integer) as its bind parameters.
pub(crate) fn exec(conn: &mut AnyConnection, sql: &str, values: &[Option<&str>], key: i64) {
    let query = diesel::sql_query(sql);
    let done = match values {
        [] => query.bind::<BigInt, _>(key).execute(conn),
        [a] => query
            .bind::<Nullable<Text>, _>(*a)
            .bind::<BigInt, _>(key)
            .execute(conn),
        [a, b] => query
            .bind::<Nullable<Text>, _>(*a)
            .bind::<Nullable<Text>, _>(*b)
            .bind::<BigInt, _>(key)
            .execute(conn),
        _ => unreachable!("at most two values"),
    };
    done.unwrap_or_else(|e| panic!("{sql}: {e}"));
}
/// Runs `test` on `cases` values of `strategy`; a failure is shrunk to a minimal input,
/// printed, and its seed kept in `proptest-regressions/` (tried first on the next run).
pub(crate) fn check_property<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/protocol_props.txt"
        )))),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, |value| {
        test(value);
        Ok(())
    }) {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => {
            panic!("{name} failed: {reason}\nminimal failing input: {value:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("{name} aborted: {reason}"),
    }
}
