//! A PostgreSQL lock session terminated mid-run (an administrator's pg_terminate_backend, a
//! failover): the run stops, rolls back what it had not committed, and records nothing that
//! another runner may now own. (Terminated in the middle of the app's long backfill, the
//! runner stops within seconds: the app's tests, examples/tests/app/lock_lost.rs.)

#[macro_use]
extern crate migrator_test_support;
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{count, TestDb};
use diesel::RunQueryDsl;
use migrator::lock::LockGuard;
use migrator::{
    config::Environment, context::Progress, migration, Backend, Config, Context, Error, Migrator,
    Result,
};

/// Reporters that migration 002 keeps beyond its run, by backend.
static KEPT: Mutex<Vec<(Backend, Progress)>> = Mutex::new(Vec::new());

/// Keeps a clone of its progress reporter (as a careless worker thread might).
#[migration("002_keep_a_progress_reporter", transaction = false)]
fn keep_a_progress_reporter(ctx: &mut Context<'_>) -> Result<()> {
    if let Ok(mut kept) = KEPT.lock() {
        kept.push((ctx.backend(), ctx.progress().clone()));
    }
    Ok(())
}

/// Ends the migration lock's session (it is the idle one named `migrator HOST:PID`).
#[migration("001_terminate_the_lock_session")]
fn terminate_the_lock_session(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE done (x INTEGER)")?;
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE 'migrator %' AND pid <> pg_backend_pid() \
         AND datname = current_database()",
    )
    .execute(ctx.conn())?;
    Ok(())
}

fn only(id: &str) -> Migrator {
    Migrator::from_migrations(migrator::registered().filter(|m| m.id() == id)).unwrap()
}

#[test]
fn a_lost_lock_stops_the_run_and_rolls_back() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = only("001_terminate_the_lock_session")
        .run(&db, &Config::new(Environment::Development))
        .unwrap_err();
    let Error::MigrationFailed { cause, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**cause, Error::LockLost { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "migration 001_terminate_the_lock_session failed: the migration lock was lost"
        ),
        "{err}"
    );
    // The migration's transaction was rolled back, and no row claims anything.
    assert_eq!(
        common::try_count(&db, "SELECT COUNT(*) AS n FROM done"),
        None,
        "rolled back"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM applied_migrations"),
        0
    );
}

both!(a_reporter_kept_after_the_run_does_not_keep_the_lock);
fn a_reporter_kept_after_the_run_does_not_keep_the_lock(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    only("002_keep_a_progress_reporter")
        .run(&db, &Config::new(Environment::Development))
        .unwrap();
    let kept = {
        let mut kept = KEPT.lock().unwrap();
        let i = kept.iter().position(|(b, _)| *b == backend).unwrap();
        kept.swap_remove(i).1
    };
    // The run is over and its lock released, whoever still holds a reporter of it.
    LockGuard::acquire(&db, Duration::ZERO).expect("the lock is free after the run");
    let err = kept.ensure_lock_held().unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err:?}");
}
