//! A PostgreSQL lock session terminated mid-run (an administrator's pg_terminate_backend, a
//! failover): the run stops, rolls back what it had not committed, and records nothing that
//! another runner may now own.

mod common;

use common::{count, TestDb};
use diesel::RunQueryDsl;
use migrator::{migration, Backend, Config, Context, Environment, Error, Migrator, Result};

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

#[test]
fn a_lost_lock_stops_the_run_and_rolls_back() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = Migrator::from_registry()
        .unwrap()
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
