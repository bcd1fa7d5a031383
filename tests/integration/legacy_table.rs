//! The tracking table the Python runner left (the guide's columns only, with or without an
//! `id SERIAL` key): read as it is until the first locked run, upgraded then with its rows
//! kept; and its `TIMESTAMP` (without time zone) `applied_at` written and read as UTC whatever
//! the session's time zone. (`status`, `plan` and `/health` reading it in production with
//! their defaults are the app's test, examples/tests/app/legacy_table.rs.)

use crate::common;

use common::{count, exec, texts, TestDb};
use migrator::{
    config::Environment, connection::Backend, migration, plan::MarkAs, report::Outcome,
    report::Status, AnyConnection, Config, Context, Database, Result,
};

use common::legacy::{columns, GUIDE_COLUMNS, GUIDE_TABLE, GUIDE_TABLE_WITH_ID};

/// The migration of this test binary (the in-process tests).
#[migration("001_first")]
fn first(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS first_done (x INTEGER)")
}

fn production() -> Config {
    let mut config = Config::new(Environment::Production);
    config
        .set_enable_prod_migrations(true)
        .set_require_confirmation(false)
        .set_backup_before(false);
    config
}

both!(read_as_it_is_until_the_first_locked_run);
fn read_as_it_is_until_the_first_locked_run(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let ddl = match backend {
        Backend::Postgres => GUIDE_TABLE_WITH_ID.to_owned(),
        // SQLite spells the surrogate key its own way.
        _ => GUIDE_TABLE_WITH_ID.replace("id SERIAL PRIMARY KEY", "id INTEGER PRIMARY KEY"),
    };
    exec(&db, &ddl);
    exec(
        &db,
        "INSERT INTO applied_migrations (migration_name, status, execution_time_ms, error_message)
         VALUES ('001_first', 'success', 7, NULL)",
    );
    let migrator = file_migrator!().unwrap();
    let status = migrator.status(&db).unwrap();
    assert_eq!(status.pending().count(), 0);
    let row = status.migrations[0].row.clone().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.checksum, row.applied_by),
        (Status::Success, 0, None, None)
    );
    assert_eq!(row.execution_time_ms, Some(7));
    // Nothing pending: the run takes no lock and leaves the table as it is.
    let report = migrator.run(&db, &production()).unwrap();
    assert_eq!(report.migrations[0].outcome, Outcome::AlreadyApplied);
    let guide_with_id: Vec<&str> = std::iter::once("id").chain(GUIDE_COLUMNS).collect();
    assert_eq!(columns(&db, backend), guide_with_id);

    migrator
        .mark(&db, &production(), "001_first", MarkAs::Failed)
        .unwrap();
    assert!(columns(&db, backend).iter().any(|c| c == "checksum"));
    let report = migrator.run(&db, &production()).unwrap();
    assert_eq!(report.applied().count(), 1);
    let row = migrator.status(&db).unwrap().migrations[0]
        .row
        .clone()
        .unwrap();
    assert_eq!((row.status, row.attempts), (Status::Success, 1));
    assert!(row.checksum.is_some());
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM applied_migrations"),
        1
    );
}

/// Sets every pooled session's time zone, as an application may (or a migration that runs
/// `SET TIME ZONE`, or a pooler handing over a server session): Diesel starts each session in
/// UTC, so only a change after connecting shows the difference.
#[derive(Debug)]
struct SessionTimeZone(&'static str);

impl r2d2::CustomizeConnection<AnyConnection, migrator::Error> for SessionTimeZone {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<()> {
        use diesel::connection::SimpleConnection;
        Ok(conn.batch_execute(&format!("SET TIME ZONE '{}'", self.0))?)
    }
}

/// A session time zone far from UTC (+05:45) and the guide's `TIMESTAMP` column: what is
/// written is UTC, and what is read is what was written, as UTC.
#[test]
fn a_timestamp_without_time_zone_is_utc_whatever_the_session_time_zone() {
    let t = TestDb::new(Backend::Postgres);
    exec(
        &t.connect(),
        &format!(
            "{GUIDE_TABLE};
             INSERT INTO applied_migrations (migration_name, status, applied_at)
             VALUES ('000_python_setup', 'success', '2024-05-01 12:00:00');"
        ),
    );
    let db = Database::connect_with(
        &t.url,
        r2d2::Pool::builder()
            .max_size(4)
            .connection_customizer(Box::new(SessionTimeZone("Asia/Kathmandu"))),
    )
    .unwrap();
    assert_eq!(
        texts(&db, "SELECT current_setting('TimeZone') AS v"),
        ["Asia/Kathmandu"]
    );
    let migrator = file_migrator!().unwrap();
    // Writes 001_first's row (and upgrades the table: the time zone is the point here).
    migrator
        .run(&db, &Config::new(Environment::Development))
        .unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM applied_migrations WHERE migration_name = '001_first' \
             AND applied_at BETWEEN CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) - INTERVAL '10 minutes' \
             AND CAST(now() AT TIME ZONE 'UTC' AS TIMESTAMP) + INTERVAL '10 minutes'"
        ),
        1,
        "written in UTC: {:?}",
        texts(
            &db,
            "SELECT CAST(applied_at AS TEXT) || ' at ' || CAST(now() AS TEXT) AS v \
             FROM applied_migrations WHERE migration_name = '001_first'"
        )
    );
    let status = migrator.status(&db).unwrap();
    assert_eq!(
        status.unknown_applied[0].applied_at.as_deref(),
        Some("2024-05-01T12:00:00.000Z"),
        "a stored UTC time reads as itself"
    );
    let row = status.migrations[0].row.clone().unwrap();
    assert_eq!(
        row.applied_at.map(|a| vec![a]).unwrap_or_default(),
        texts(
            &db,
            "SELECT to_char(applied_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS v \
             FROM applied_migrations WHERE migration_name = '001_first'"
        ),
        "read back as written"
    );
}
