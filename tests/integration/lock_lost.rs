//! A PostgreSQL lock session terminated mid-run (an administrator's pg_terminate_backend, a
//! failover): the run stops, rolls back what it had not committed, and records nothing that
//! another runner may now own. (Terminated in the middle of the app's long backfill, the
//! runner stops within seconds: the app's tests, examples/tests/app/lock_lost.rs.)

use crate::common;

use std::sync::Mutex;
use std::time::Duration;

use common::{count, TestDb};
use diesel::RunQueryDsl;
use migrator::connection::LockGuard;
use migrator::report::Outcome;
use migrator::{
    config::Environment, connection::Backend, context::Progress, migration, Config, Context, Error,
    ErrorKind, Migrator, Result,
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

/// The first of three migrations of a run that stops between the second and the third.
#[migration("010_stop_after_two_first")]
fn stop_after_two_first(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE stop_first (x INTEGER)")
}

/// The second: once its `success` row is written, a trigger ends the lock's session (waiting
/// until it is gone), so the run loses its lock after this migration and before the next.
#[migration("011_stop_after_two_second")]
fn stop_after_two_second(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute(
        "CREATE FUNCTION end_the_lock_session() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
             PERFORM pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE application_name LIKE 'migrator %' AND pid <> pg_backend_pid() \
             AND datname = current_database(); \
             RETURN NEW; \
         END $$; \
         CREATE TRIGGER end_the_lock_session AFTER INSERT OR UPDATE ON applied_migrations \
         FOR EACH ROW WHEN (NEW.migration_name = '011_stop_after_two_second' \
         AND NEW.status = 'success') EXECUTE FUNCTION end_the_lock_session()",
    )
}

/// The third, never started.
#[migration("012_stop_after_two_third")]
fn stop_after_two_third(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE stop_third (x INTEGER)")
}

#[test]
fn a_lost_lock_stops_the_run_and_rolls_back() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = file_migration!("001_terminate_the_lock_session")
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

#[test]
fn a_lock_lost_between_two_migrations_returns_what_was_applied() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = Migrator::from_migrations(
        file_migrations!()
            .into_iter()
            .filter(|m| m.id().contains("_stop_after_two_")),
    )
    .unwrap()
    .run(&db, &Config::new(Environment::Development))
    .unwrap_err();
    // Not a migration's failure: the lost lock itself, with the report of the run.
    assert!(
        matches!(err.without_report(), Error::LockLost { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionLost);
    assert!(err.is_connection_lost());
    assert_eq!(err.migration_id(), None);
    assert_eq!(migrator::cli::exit_code(&err), migrator::cli::EXIT_FAILED);
    assert!(
        err.to_string().starts_with("the migration lock was lost"),
        "{err}"
    );
    let report = err.report().expect("the report of the run");
    let applied: Vec<&str> = report.applied().map(|m| m.id.as_str()).collect();
    assert_eq!(
        applied,
        ["010_stop_after_two_first", "011_stop_after_two_second"]
    );
    let third = report
        .migrations
        .iter()
        .find(|m| m.id == "012_stop_after_two_third")
        .expect("the third is in the report");
    assert_eq!(third.outcome, Outcome::NotRun);
    assert_eq!(report.failed().map(|m| m.id.as_str()), None);
    // The two are recorded; the third was never started, and nothing claims it.
    let rows = common::texts(
        &db,
        "SELECT migration_name || ' ' || status AS v FROM applied_migrations \
         ORDER BY migration_name",
    );
    assert_eq!(
        rows,
        [
            "010_stop_after_two_first success",
            "011_stop_after_two_second success"
        ]
    );
    assert_eq!(
        common::try_count(&db, "SELECT COUNT(*) AS n FROM stop_third"),
        None
    );
}

both!(a_reporter_kept_after_the_run_does_not_keep_the_lock);
fn a_reporter_kept_after_the_run_does_not_keep_the_lock(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    file_migration!("002_keep_a_progress_reporter")
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
