//! The runner on real PostgreSQL and SQLite: order, idempotence, failure and rollback, retry,
//! skipped and interrupted migrations, drift and unknown rows, the lock and the pool after a
//! failure, and a tracking table left by the Python runner.

use crate::common;

use std::time::Duration;

use common::{count, exec, logs, table_exists, texts, TestDb};
use diesel::sql_types::Text;
use diesel::RunQueryDsl;
use migrator::connection::LockGuard;
use migrator::{
    config::Environment, connection::Backend, migration, plan::MarkAs, report::Outcome,
    report::Status, Config, Context, Database, Error, Result,
};

/// Appends `name` to `effects`, numbered in order of application.
fn effect(ctx: &mut Context<'_>, name: &str) -> Result<()> {
    diesel::sql_query("INSERT INTO effects (seq, migration) SELECT COUNT(*) + 1, $1 FROM effects")
        .bind::<Text, _>(name)
        .execute(ctx.conn())?;
    Ok(())
}

// Registered out of order on purpose; numeric order is 2, 10, 11, 12, 13 (not lexicographic).

#[migration("0011_may_fail")]
fn may_fail(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("INSERT INTO things (id, note) VALUES (3, 'three')")?;
    effect(ctx, "0011_may_fail")?;
    if table_exists(ctx, "fail_switch")? {
        return Err(Error::msg("fail switch is on"));
    }
    Ok(())
}

#[migration("002_create_things")]
fn create_things(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute(
        "CREATE TABLE things (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
         CREATE TABLE effects (seq INTEGER NOT NULL, migration TEXT NOT NULL);",
    )?;
    effect(ctx, "002_create_things")
}

#[migration("013_may_panic")]
fn may_panic(ctx: &mut Context<'_>) -> Result<()> {
    effect(ctx, "013_may_panic")?;
    if table_exists(ctx, "panic_switch")? {
        panic!("boom in 013");
    }
    Ok(())
}

#[migration("010_insert_rows")]
fn insert_rows(ctx: &mut Context<'_>) -> Result<()> {
    assert_eq!(
        ctx.execute("INSERT INTO things (id, note) VALUES (1, 'one'), (2, 'two')")?,
        2
    );
    effect(ctx, "010_insert_rows")
}

#[migration("012_no_transaction", transaction = false)]
fn no_transaction(ctx: &mut Context<'_>) -> Result<()> {
    assert!(!ctx.is_transactional());
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS nontx_done (x INTEGER)")?;
    effect(ctx, "012_no_transaction")
}

const ORDER: [&str; 5] = [
    "002_create_things",
    "010_insert_rows",
    "0011_may_fail",
    "012_no_transaction",
    "013_may_panic",
];

fn dev() -> Config {
    Config::new(Environment::Development)
}

fn run(db: &Database) -> Result<migrator::report::Report> {
    file_migrator!()?.run(db, &dev())
}

fn effects(db: &Database) -> Vec<String> {
    texts(db, "SELECT migration AS v FROM effects ORDER BY seq")
}

fn row(db: &Database, id: &str) -> migrator::report::AppliedMigration {
    let status = file_migrator!().unwrap().status(db).unwrap();
    status
        .migrations
        .into_iter()
        .find(|m| m.id == id)
        .and_then(|m| m.row)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

both!(applies_in_numeric_order_and_records_each);
fn applies_in_numeric_order_and_records_each(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let report = run(&db).unwrap();
    let ids: Vec<&str> = report.migrations.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ORDER);
    assert!(report
        .migrations
        .iter()
        .all(|m| m.outcome == Outcome::Applied));
    assert_eq!(effects(&db), ORDER);
    for id in ORDER {
        let r = row(&db, id);
        assert_eq!(r.status, Status::Success, "{id}");
        assert_eq!(r.attempts, 1, "{id}");
        assert!(r.execution_time_ms.is_some_and(|ms| ms >= 0), "{id}");
        assert!(r.error_message.is_none(), "{id}");
        assert!(
            r.checksum
                .as_deref()
                .is_some_and(|c| c.len() == 19 && c.starts_with("v2:")),
            "{id}"
        );
        let by = r.applied_by.unwrap();
        assert!(by.ends_with(&format!(":{}", std::process::id())), "{by}");
        assert!(r.applied_at.is_some(), "{id}");
    }
    assert!(logs::contains("Applying migration 002_create_things"));
    assert!(logs::contains("Migration 013_may_panic applied in "));
}

both!(second_run_applies_nothing);
fn second_run_applies_nothing(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    run(&db).unwrap();
    let again = run(&db).unwrap();
    assert!(again
        .migrations
        .iter()
        .all(|m| m.outcome == Outcome::AlreadyApplied));
    assert_eq!(effects(&db), ORDER);
    assert_eq!(row(&db, "010_insert_rows").attempts, 1);
}

both!(failure_rolls_back_records_and_is_retried_after_a_fix);
fn failure_rolls_back_records_and_is_retried_after_a_fix(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    exec(&db, "CREATE TABLE fail_switch (x INTEGER)");
    let err = run(&db).unwrap_err();
    assert_eq!(err.migration_id(), Some("0011_may_fail"));
    assert_eq!(
        err.to_string(),
        "migration 0011_may_fail failed: fail switch is on"
    );
    let report = err.report().unwrap();
    let outcomes: Vec<Outcome> = report.migrations.iter().map(|m| m.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Failed,
            Outcome::NotRun,
            Outcome::NotRun
        ]
    );
    // Rolled back: neither its row in `things` nor its effect.
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM things WHERE id = 3"),
        0
    );
    assert_eq!(effects(&db), ORDER[..2]);
    let failed = row(&db, "0011_may_fail");
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error_message.as_deref(), Some("fail switch is on"));
    assert_eq!(failed.attempts, 1);
    assert!(failed.execution_time_ms.is_some());
    assert!(logs::contains(
        "Migration 0011_may_fail failed: fail switch is on"
    ));
    // Later migrations were not attempted.
    assert!(file_migrator!().unwrap().status(&db).unwrap().migrations[3]
        .row
        .is_none());

    // Still broken: a second failed attempt is counted.
    run(&db).unwrap_err();
    assert_eq!(row(&db, "0011_may_fail").attempts, 2);

    // Fixed: retried and applied, then the rest.
    exec(&db, "DROP TABLE fail_switch");
    let report = run(&db).unwrap();
    let applied: Vec<&str> = report.applied().map(|m| m.id.as_str()).collect();
    assert_eq!(applied, ORDER[2..]);
    let fixed = row(&db, "0011_may_fail");
    assert_eq!(fixed.status, Status::Success);
    assert_eq!(fixed.attempts, 3);
    assert!(fixed.error_message.is_none());
    assert_eq!(effects(&db), ORDER);
}

both!(a_panic_is_rolled_back_and_recorded);
fn a_panic_is_rolled_back_and_recorded(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    exec(&db, "CREATE TABLE panic_switch (x INTEGER)");
    let err = run(&db).unwrap_err();
    assert_eq!(err.migration_id(), Some("013_may_panic"));
    let r = row(&db, "013_may_panic");
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error_message.as_deref(), Some("panicked: boom in 013"));
    assert_eq!(effects(&db), ORDER[..4]);
}

both!(skipped_never_runs);
fn skipped_never_runs(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    exec(&db, "CREATE TABLE fail_switch (x INTEGER)");
    let migrator = file_migrator!().unwrap();
    migrator
        .mark(&db, &dev(), "0011_may_fail", MarkAs::Skipped)
        .unwrap();
    let report = migrator.run(&db, &dev()).unwrap();
    assert_eq!(
        report.get("0011_may_fail").unwrap().outcome,
        Outcome::Skipped
    );
    let again = migrator.run(&db, &dev()).unwrap();
    assert_eq!(
        again.get("0011_may_fail").unwrap().outcome,
        Outcome::Skipped
    );
    assert!(!effects(&db).contains(&"0011_may_fail".to_owned()));
    assert_eq!(row(&db, "0011_may_fail").status, Status::Skipped);
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM things WHERE id = 3"),
        0
    );
}

both!(interrupted_running_migration_is_resumed);
fn interrupted_running_migration_is_resumed(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    exec(&db, "CREATE TABLE fail_switch (x INTEGER)");
    run(&db).unwrap_err();
    exec(&db, "DROP TABLE fail_switch");
    // What a runner killed inside 012 (non-transactional) leaves behind.
    exec(
        &db,
        "INSERT INTO applied_migrations (migration_name, status, attempts, applied_by) \
         VALUES ('012_no_transaction', 'running', 1, 'dead-host:1')",
    );
    let status = file_migrator!().unwrap().status(&db).unwrap();
    assert!(
        status.migrations[3].pending,
        "a running row without a live runner is pending"
    );
    run(&db).unwrap();
    let r = row(&db, "012_no_transaction");
    assert_eq!(r.status, Status::Success);
    assert_eq!(r.attempts, 2);
    assert_eq!(effects(&db), ORDER);
}

both!(checksum_drift_and_unknown_migrations_are_reported);
fn checksum_drift_and_unknown_migrations_are_reported(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    run(&db).unwrap();
    exec(
        &db,
        "UPDATE applied_migrations SET checksum = '00000000deadbeef' \
         WHERE migration_name = '010_insert_rows';
         INSERT INTO applied_migrations (migration_name, status, attempts) \
         VALUES ('999_removed_later', 'success', 1);",
    );
    logs::take();
    let report = run(&db).unwrap();
    assert_eq!(report.checksum_drift.len(), 1);
    assert_eq!(report.checksum_drift[0].id, "010_insert_rows");
    assert_eq!(report.checksum_drift[0].recorded, "00000000deadbeef");
    assert_eq!(report.unknown_applied.len(), 1);
    assert_eq!(report.unknown_applied[0].id, "999_removed_later");
    assert!(logs::contains(
        "Migration 010_insert_rows changed since it was applied"
    ));
    assert!(logs::contains("999_removed_later"));
    // Reported, never re-run.
    assert_eq!(effects(&db), ORDER);
    let status = file_migrator!().unwrap().status(&db).unwrap();
    assert!(status.migrations[1].checksum_drift);
    assert_eq!(status.unknown_applied[0].id, "999_removed_later");
}

both!(lock_is_free_and_pool_reusable_after_a_failure);
fn lock_is_free_and_pool_reusable_after_a_failure(backend: Backend) {
    let t = TestDb::new(backend);
    let db = Database::connect_with(&t.url, r2d2::Pool::builder().max_size(1).min_idle(Some(0)))
        .unwrap();
    exec(&db, "CREATE TABLE fail_switch (x INTEGER)");
    run(&db).unwrap_err();
    exec(&db, "DROP TABLE fail_switch");
    // Another runner, not willing to wait at all, gets the lock at once.
    let other = t.connect();
    let mut impatient = dev();
    impatient.set_lock_timeout(Duration::ZERO);
    file_migrator!().unwrap().run(&other, &impatient).unwrap();
    // The one pooled connection of the failed run is usable and not stuck in a transaction:
    // what it commits is visible to another connection.
    {
        let mut conn = db.get().unwrap();
        diesel::Connection::transaction::<_, diesel::result::Error, _>(&mut *conn, |c| {
            diesel::sql_query("INSERT INTO things (id, note) VALUES (100, 'after')").execute(c)
        })
        .unwrap();
    }
    assert_eq!(
        count(&other, "SELECT COUNT(*) AS n FROM things WHERE id = 100"),
        1
    );
}

both!(a_held_lock_times_out_naming_the_holder);
fn a_held_lock_times_out_naming_the_holder(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let held = LockGuard::acquire(&db, Duration::ZERO).unwrap();
    let mut config = dev();
    config.set_lock_timeout(Duration::from_millis(300));
    let err = file_migrator!().unwrap().run(&db, &config).unwrap_err();
    let Error::LockTimeout { holder, .. } = &err else {
        panic!("expected a lock timeout, got {err}");
    };
    let holder = holder.clone().expect("the holder is named");
    let me = format!(":{}", std::process::id());
    assert!(holder.contains(&me), "{holder}");
    if backend == Backend::Postgres {
        assert!(holder.contains("pid "), "{holder}");
        assert!(holder.contains("application_name 'migrator "), "{holder}");
    }
    assert!(holder.contains(" since "), "{holder}");
    assert!(logs::contains("Waiting for the migration lock"));
    assert!(err.to_string().contains("MIGRATION_LOCK_TIMEOUT_SECS"));
    // Nothing ran.
    assert_eq!(
        file_migrator!()
            .unwrap()
            .status(&db)
            .unwrap()
            .pending()
            .count(),
        5
    );
    drop(held);
    run(&db).unwrap();
}

both!(status_changes_nothing);
fn status_changes_nothing(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let status = file_migrator!().unwrap().status(&db).unwrap();
    assert_eq!(status.pending().count(), 5);
    let sql = match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'"
        }
        _ => "SELECT COUNT(*) AS n FROM sqlite_master",
    };
    assert_eq!(count(&db, sql), 0, "status created nothing");
}

both!(mark_round_trips);
fn mark_round_trips(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let m = file_migrator!().unwrap();
    m.run(&db, &dev()).unwrap();
    m.mark(&db, &dev(), "013_may_panic", MarkAs::Failed)
        .unwrap();
    assert_eq!(row(&db, "013_may_panic").status, Status::Failed);
    m.mark(&db, &dev(), "013_may_panic", MarkAs::Success)
        .unwrap();
    assert_eq!(row(&db, "013_may_panic").status, Status::Success);
    m.mark(&db, &dev(), "013_may_panic", MarkAs::Pending)
        .unwrap();
    assert_eq!(m.status(&db).unwrap().pending().count(), 1);
    let report = m.run(&db, &dev()).unwrap();
    assert_eq!(report.applied().count(), 1);
    let err = m
        .mark(&db, &dev(), "404_not_here", MarkAs::Success)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown migration 404_not_here: this binary contains no migration with that ID"
    );
}

both!(a_legacy_tracking_table_is_upgraded_in_place);
fn a_legacy_tracking_table_is_upgraded_in_place(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    // The Python runner's table, with one migration it applied.
    exec(
        &db,
        "CREATE TABLE applied_migrations (
            migration_name VARCHAR(255) PRIMARY KEY,
            status VARCHAR(20) NOT NULL,
            applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            execution_time_ms INTEGER,
            error_message TEXT
         );
         CREATE TABLE things (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
         CREATE TABLE effects (seq INTEGER NOT NULL, migration TEXT NOT NULL);
         INSERT INTO applied_migrations (migration_name, status, execution_time_ms)
         VALUES ('002_create_things', 'success', 12);",
    );
    let report = run(&db).unwrap();
    assert_eq!(
        report.get("002_create_things").unwrap().outcome,
        Outcome::AlreadyApplied
    );
    assert_eq!(report.applied().count(), 4);
    let legacy = row(&db, "002_create_things");
    assert_eq!(
        legacy.checksum, None,
        "no drift is claimed for rows without a checksum"
    );
    assert_eq!(legacy.attempts, 0);
    assert!(report.checksum_drift.is_empty());
    assert_eq!(row(&db, "010_insert_rows").attempts, 1);
}

#[test]
fn an_unknown_status_is_an_error_naming_the_row() {
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    run(&db).unwrap();
    exec(
        &db,
        "UPDATE applied_migrations SET status = 'succes' WHERE migration_name = '010_insert_rows'",
    );
    let err = run(&db).unwrap_err();
    assert_eq!(
        err.to_string(),
        "applied_migrations row 010_insert_rows: unknown status \"succes\": expected running, \
         success, failed or skipped"
    );
}

both!(a_dry_run_rehearses_transactional_migrations_and_changes_nothing);
fn a_dry_run_rehearses_transactional_migrations_and_changes_nothing(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let report = file_migrator!().unwrap().dry_run(&db, &dev()).unwrap();
    let outcomes: Vec<(&str, Outcome, Option<u64>)> = report
        .migrations
        .iter()
        .map(|m| (m.id.as_str(), m.outcome, m.rows))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("002_create_things", Outcome::Rehearsed, Some(0)),
            ("010_insert_rows", Outcome::Rehearsed, Some(2)),
            ("0011_may_fail", Outcome::Rehearsed, Some(0)),
            ("012_no_transaction", Outcome::NotRehearsable, None),
            ("013_may_panic", Outcome::NotRehearsable, None),
        ]
    );
    let sql = match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'"
        }
        _ => "SELECT COUNT(*) AS n FROM sqlite_master",
    };
    assert_eq!(count(&db, sql), 0, "the rehearsal left nothing behind");
    // A failing rehearsal is reported, and still changes nothing.
    exec(&db, "CREATE TABLE fail_switch (x INTEGER)");
    let report = file_migrator!().unwrap().dry_run(&db, &dev()).unwrap();
    let failed = report.get("0011_may_fail").unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    assert_eq!(failed.error.as_deref(), Some("fail switch is on"));
    assert_eq!(count(&db, sql), 1);
    // The real run afterwards reports the rows too.
    exec(&db, "DROP TABLE fail_switch");
    let report = run(&db).unwrap();
    assert_eq!(report.get("010_insert_rows").unwrap().rows, Some(2));
}

both!(nothing_pending_needs_no_lock);
fn nothing_pending_needs_no_lock(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    run(&db).unwrap();
    // Another runner holds the lock (say, a replica starting up); a run with nothing to do
    // does not wait for it.
    let _held = LockGuard::acquire(&db, Duration::ZERO).unwrap();
    let mut impatient = dev();
    impatient.set_lock_timeout(Duration::ZERO);
    let report = file_migrator!().unwrap().run(&db, &impatient).unwrap();
    assert!(report
        .migrations
        .iter()
        .all(|m| m.outcome == Outcome::AlreadyApplied));
    // But a pending one does wait for it.
    exec(
        &db,
        "DELETE FROM applied_migrations WHERE migration_name = '013_may_panic'",
    );
    let err = file_migrator!().unwrap().run(&db, &impatient).unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
}
