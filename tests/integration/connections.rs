//! Connections that must hold, or must be refused at once: a role-level PostgreSQL
//! `idle_session_timeout` does not cut the migration's connection while it waits for a long
//! backfill; a SQLite database reached through a symlink or another spelling of its path
//! shares one lock; an in-memory SQLite database (one connection) refuses a backup or a
//! backfill with a clear error instead of waiting 30 s for a second connection.

use crate::common;

use std::time::{Duration, Instant};

use common::{count, exec, TestDb};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use migrator::backfill::Backfill;
use migrator::connection::LockGuard;
use migrator::{
    config::Environment, connection::Backend, context::Progress, migration, report::Outcome,
    Config, Context, Database, Error, Result,
};

const SLOW_BACKFILL: &str = "001_backfill_for_twenty_seconds";
const NOOP: &str = "002_noop";

/// Twenty rows, one a second, then a statement on the migration's own connection, which idled
/// meanwhile.
#[migration("001_backfill_for_twenty_seconds", transaction = false)]
fn backfill_for_twenty_seconds(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute(
        "CREATE TABLE slow_items (id INTEGER PRIMARY KEY, v TEXT NOT NULL, done TEXT);
         INSERT INTO slow_items (id, v) SELECT g, 'v' || g FROM generate_series(1, 20) AS g;",
    )?;
    let mut backfill = Backfill::new("slow_items", "id");
    backfill
        .input("v")
        .output("done")
        .pending_when("done IS NULL")
        .batch_size(1)
        .threads(1);
    backfill.run(ctx.database()?, ctx.progress(), |inputs| {
        std::thread::sleep(Duration::from_secs(1));
        Ok(vec![inputs[0].map(str::to_uppercase)])
    })?;
    ctx.batch_execute("CREATE INDEX slow_items_done ON slow_items (done)")
}

#[migration("002_noop")]
fn noop(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn dev() -> Config {
    Config::new(Environment::Development)
}

#[test]
fn a_role_idle_session_timeout_does_not_break_a_twenty_second_backfill() {
    let t = TestDb::new(Backend::Postgres);
    let name = t.url.rsplit('/').next().unwrap().to_owned();
    exec(
        &t.connect(),
        &format!("ALTER ROLE postgres IN DATABASE {name} SET idle_session_timeout = '2s'"),
    );
    // The setting bites: a plain session that idles 3 s is gone.
    let mut plain = PgConnection::establish(&t.url).unwrap();
    plain.batch_execute("SELECT 1").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        plain.batch_execute("SELECT 1").is_err(),
        "idle_session_timeout did not end an idle session"
    );

    let db = t.connect();
    let start = Instant::now();
    let report = file_migration!(SLOW_BACKFILL)
        .run(&db, &dev())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "the backfill took 20 s"
    );
    assert_eq!(report.get(SLOW_BACKFILL).unwrap().outcome, Outcome::Applied);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM slow_items WHERE done = upper(v)"
        ),
        20
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = 'slow_items_done'"
        ),
        1
    );
}

#[test]
fn a_symlink_or_another_spelling_of_a_sqlite_path_shares_the_lock() {
    common::logs::init();
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.db");
    let real_db = Database::connect(&format!("sqlite://{}", real.display())).unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink("real.db", &link).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let dotted = dir.path().join("sub").join("..").join("real.db");

    let _held = LockGuard::acquire(&real_db, Duration::ZERO).unwrap();
    for other in [&link, &dotted] {
        let db = Database::connect(&format!("sqlite://{}", other.display())).unwrap();
        let err = LockGuard::acquire(&db, Duration::ZERO).unwrap_err();
        assert!(
            matches!(err, Error::LockTimeout { .. }),
            "{} got a lock of its own: {err:?}",
            other.display()
        );
    }
}

#[test]
fn an_in_memory_sqlite_database_refuses_a_backup_at_once() {
    common::logs::init();
    let db = Database::connect("sqlite://:memory:").unwrap();
    let backups = tempfile::tempdir().unwrap();
    let mut config = dev();
    config
        .set_backup_before(true)
        .set_backup_dir(backups.path());
    let start = Instant::now();
    let err = file_migration!(NOOP).run(&db, &config).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "answered at once"
    );
    let expected = "backup failed, nothing was migrated: an in-memory SQLite database \
                    (sqlite://:memory:) cannot be backed up";
    assert!(err.to_string().starts_with(expected), "{err}");
    // The run's error carries its report (nothing applied), the backup's error under it.
    assert!(
        matches!(err.without_report(), Error::Backup { source: None, .. }),
        "{err:?}"
    );
    let report = err.report().expect("the run's report");
    assert_eq!(report.applied().count(), 0);
    assert!(
        report
            .migrations
            .iter()
            .all(|m| m.outcome == Outcome::NotRun),
        "{report:?}"
    );
    assert_eq!(report.backup, None);
    let err = file_migration!(NOOP).backup(&db, &config).unwrap_err();
    assert!(err.report().is_none(), "{err:?}");
    assert!(err.to_string().starts_with(expected), "{err}");
    assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 0);
}

#[test]
fn an_in_memory_sqlite_database_refuses_a_backfill_at_once() {
    common::logs::init();
    let db = Database::connect("sqlite://:memory:").unwrap();
    exec(
        &db,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT, done TEXT);
         INSERT INTO items (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    let mut backfill = Backfill::new("items", "id");
    backfill
        .input("v")
        .output("done")
        .pending_when("done IS NULL")
        .batch_size(1);
    let start = Instant::now();
    let err = backfill
        .run(
            &db,
            &Progress::new("memory", Duration::from_secs(60)),
            |v| Ok(vec![v[0].map(str::to_owned)]),
        )
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "answered at once"
    );
    assert!(
        err.to_string().starts_with(
            "backfill of items: an in-memory SQLite database (sqlite://:memory:) has a single \
             connection"
        ),
        "{err}"
    );
}
