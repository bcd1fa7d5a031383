//! The pool in a transactional migration is an error, at once: work through it would escape
//! the migration's transaction (committed by a rollback or `up --dry-run`), and a backfill
//! through the pool of a table the migration altered would wait forever on the migration's
//! own lock, while the run holds the migration lock.

use crate::common;

use std::sync::mpsc;
use std::time::Duration;

use common::{count, exec, TestDb};
use migrator::backfill::Backfill;
use migrator::{
    config::Environment, connection::Backend, migration, report::Outcome, report::Status, Config,
    Context, Error, Result,
};

const ALTER_THEN_BACKFILL: &str = "001_alter_then_backfill_through_the_pool";
const POOL: &str = "002_pool_in_a_transaction";

#[migration("001_alter_then_backfill_through_the_pool")]
fn alter_then_backfill(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("ALTER TABLE items ADD COLUMN upper_v TEXT")?;
    let mut backfill = Backfill::new("items", "id");
    backfill
        .input("v")
        .output("upper_v")
        .pending_when("upper_v IS NULL");
    let progress = ctx.progress().clone();
    backfill.run(ctx.database()?, &progress, |v| {
        Ok(vec![v[0].map(str::to_uppercase)])
    })?;
    Ok(())
}

#[migration("002_pool_in_a_transaction")]
fn pool_in_a_transaction(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("INSERT INTO items (id, v) VALUES (100, 'in the transaction')")?;
    let mut outside = ctx.pool()?.get()?;
    diesel::connection::SimpleConnection::batch_execute(
        &mut *outside,
        "INSERT INTO items (id, v) VALUES (101, 'outside the transaction')",
    )?;
    Ok(())
}

fn seeded(backend: Backend) -> TestDb {
    let t = TestDb::new(backend);
    exec(
        &t.connect(),
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO items (id, v) VALUES (1, 'a'), (2, 'b');",
    );
    t
}

/// Runs migration `id` alone (or rehearses it), failing the test if it has not ended in 10 s.
fn run_bounded(t: &TestDb, id: &'static str, dry_run: bool) -> Result<migrator::report::Report> {
    let (done, ended) = mpsc::channel();
    let url = t.url.clone();
    std::thread::spawn(move || {
        let db = migrator::Database::connect(&url).unwrap();
        let migrator = file_migration!(id);
        let config = Config::new(Environment::Development);
        let result = if dry_run {
            migrator.dry_run(&db, &config)
        } else {
            migrator.run(&db, &config)
        };
        let _ = done.send(result);
    });
    ended
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{id} still running after 10 s (waiting on its own locks?)"))
}

fn assert_pool_refused(err: &Error, id: &str) {
    let Error::MigrationFailed { cause, .. } = err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(&**cause, Error::PoolInTransaction { migration } if migration == id),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "migration {id} failed: migration {id} uses the connection pool inside its transaction"
        )),
        "{message}"
    );
    assert!(message.contains("transaction = false"), "{message}");
}

fn has_upper_v(t: &TestDb) -> bool {
    let sql = match t.backend {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.columns \
             WHERE table_name = 'items' AND column_name = 'upper_v'"
        }
        _ => "SELECT COUNT(*) AS n FROM pragma_table_info('items') WHERE name = 'upper_v'",
    };
    count(&t.connect(), sql) > 0
}

both!(an_alter_then_a_backfill_through_the_pool_ends_at_once_with_the_error);
fn an_alter_then_a_backfill_through_the_pool_ends_at_once_with_the_error(backend: Backend) {
    let t = seeded(backend);
    let err = run_bounded(&t, ALTER_THEN_BACKFILL, false).unwrap_err();
    assert_pool_refused(&err, ALTER_THEN_BACKFILL);
    assert!(!has_upper_v(&t), "the ALTER was rolled back");
    let status = file_migrator!().unwrap().status(&t.connect()).unwrap();
    let row = status.migrations[0].row.clone().unwrap();
    assert_eq!(row.status, Status::Failed);
}

both!(the_pool_in_a_transaction_commits_nothing_even_in_a_rehearsal);
fn the_pool_in_a_transaction_commits_nothing_even_in_a_rehearsal(backend: Backend) {
    let t = seeded(backend);
    let report = run_bounded(&t, POOL, true).unwrap();
    let rehearsal = report.get(POOL).unwrap();
    assert_eq!(rehearsal.outcome, Outcome::Failed);
    assert!(
        rehearsal
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("uses the connection pool inside its transaction"),
        "{rehearsal:?}"
    );
    let err = run_bounded(&t, POOL, false).unwrap_err();
    assert_pool_refused(&err, POOL);
    assert_eq!(
        count(
            &t.connect(),
            "SELECT COUNT(*) AS n FROM items WHERE id >= 100"
        ),
        0,
        "nothing escaped the transaction"
    );
}
