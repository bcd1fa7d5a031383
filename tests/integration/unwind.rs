//! Migrations that leave transactions behind: a panic inside a nested transaction, and a
//! non-transactional migration that opened a transaction with a raw BEGIN and failed. The
//! `failed` row is still committed, the work rolled back, and the pooled connection is clean.

use crate::common;

use common::{count, exec, table_exists, TestDb};
use diesel::RunQueryDsl;
use migrator::{
    config::Environment, migration, report::Status, Config, Context, Database, Error, Result,
};

#[migration("001_panics_in_a_nested_transaction")]
fn panics_in_a_nested_transaction(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS work (x INTEGER)")?;
    if table_exists(ctx, "panic_switch")? {
        diesel::Connection::transaction::<(), Error, _>(ctx.conn(), |conn| {
            diesel::sql_query("INSERT INTO work (x) VALUES (1)").execute(conn)?;
            panic!("inner boom");
        })?;
    }
    Ok(())
}

#[migration("002_leaves_a_transaction_open", transaction = false)]
fn leaves_a_transaction_open(ctx: &mut Context<'_>) -> Result<()> {
    if table_exists(ctx, "open_switch")? {
        ctx.batch_execute("BEGIN; INSERT INTO work (x) VALUES (2);")?;
        return Err(Error::msg("gave up halfway"));
    }
    Ok(())
}

fn one_connection(t: &TestDb) -> Database {
    Database::connect_with(&t.url, r2d2::Pool::builder().max_size(1).min_idle(Some(0))).unwrap()
}

fn row(db: &Database, id: &str) -> migrator::report::AppliedMigration {
    file_migrator!()
        .unwrap()
        .status(db)
        .unwrap()
        .migrations
        .into_iter()
        .find(|m| m.id == id)
        .and_then(|m| m.row)
        .unwrap()
}

both!(a_panic_in_a_nested_transaction_is_recorded_and_rolled_back);
fn a_panic_in_a_nested_transaction_is_recorded_and_rolled_back(
    backend: migrator::connection::Backend,
) {
    let t = TestDb::new(backend);
    let db = one_connection(&t);
    exec(&db, "CREATE TABLE panic_switch (x INTEGER)");
    let err = file_migrator!()
        .unwrap()
        .run(&db, &Config::new(Environment::Development))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "migration 001_panics_in_a_nested_transaction failed: panicked: inner boom"
    );
    // Seen from another pool: the failed row is committed, the work is not.
    let other = t.connect();
    let r = row(&other, "001_panics_in_a_nested_transaction");
    assert_eq!((r.status, r.attempts), (Status::Failed, 1));
    assert_eq!(
        common::try_count(&other, "SELECT COUNT(*) AS n FROM work"),
        None
    );
    // The single pooled connection works, outside any transaction.
    exec(&db, "DROP TABLE panic_switch");
    file_migrator!()
        .unwrap()
        .run(&db, &Config::new(Environment::Development))
        .unwrap();
    assert_eq!(
        row(&other, "002_leaves_a_transaction_open").status,
        Status::Success
    );
}

both!(a_raw_transaction_left_open_is_rolled_back_and_the_failure_recorded);
fn a_raw_transaction_left_open_is_rolled_back_and_the_failure_recorded(
    backend: migrator::connection::Backend,
) {
    let t = TestDb::new(backend);
    let db = one_connection(&t);
    exec(&db, "CREATE TABLE open_switch (x INTEGER)");
    let err = file_migrator!()
        .unwrap()
        .run(&db, &Config::new(Environment::Development))
        .unwrap_err();
    assert_eq!(err.migration_id(), Some("002_leaves_a_transaction_open"));
    let other = t.connect();
    let r = row(&other, "002_leaves_a_transaction_open");
    assert_eq!(r.status, Status::Failed, "not left `running`");
    assert_eq!(r.error_message.as_deref(), Some("gave up halfway"));
    assert_eq!(
        count(&other, "SELECT COUNT(*) AS n FROM work"),
        0,
        "the raw BEGIN was rolled back"
    );
    // The pooled connection is not stuck in that transaction: what it writes is committed.
    exec(&db, "INSERT INTO work (x) VALUES (3)");
    assert_eq!(count(&other, "SELECT COUNT(*) AS n FROM work"), 1);
}
