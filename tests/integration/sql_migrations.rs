//! Diesel SQL migrations run under the same lock, before the code migrations, tracked in
//! Diesel's own table.

use crate::common;

use common::matrix::Cell;
use common::{count, texts, TestDb};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use migrator::{config::Environment, connection::Backend, migration, Config, Context, Result};

const SQL: EmbeddedMigrations = embed_migrations!("sql_migrations");

#[migration("001_seed_widgets")]
fn seed_widgets(ctx: &mut Context<'_>) -> Result<()> {
    // Needs the table the SQL migration creates.
    ctx.batch_execute("INSERT INTO widgets (id, name) VALUES (1, 'first')")
}

fn sql_then_code(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    let mut migrator = file_migrator!().unwrap();
    migrator.sql_migrations(&SQL);
    let config = Config::new(Environment::Development);
    let report = migrator.run(&db, &config).unwrap();
    assert_eq!(report.sql_migrations, ["20240101000000"]);
    assert_eq!(report.applied().count(), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM widgets"), 1);
    assert_eq!(
        texts(&db, "SELECT version AS v FROM __diesel_schema_migrations"),
        ["20240101000000"]
    );
    let again = migrator.run(&db, &config).unwrap();
    assert!(again.sql_migrations.is_empty());
    assert_eq!(again.applied().count(), 0);
}

#[test]
fn sql_then_code_postgres() {
    sql_then_code(Backend::Postgres);
}

#[test]
fn sql_then_code_sqlite() {
    sql_then_code(Backend::Sqlite);
}

#[test]
fn pending_sql_migrations_count_for_the_policy() {
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    let mut migrator = file_migrator!().unwrap();
    migrator.sql_migrations(&SQL);
    let mut config = Config::new(Environment::Development);
    config.set_require_confirmation(true).set_interactive(false);
    let err = migrator.run(&db, &config).unwrap_err();
    assert!(err.is_refusal());
    assert!(
        err.to_string()
            .ends_with("set MIGRATION_CONFIRM=2024-01-01-000000_create_widgets,001_seed_widgets"),
        "{err}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'widgets'"
        ),
        0
    );
}

const FAILING: EmbeddedMigrations = embed_migrations!("sql_migrations_failing");

#[test]
fn a_failing_sql_migration_is_named_and_stops_the_run() {
    for backend in common::BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        let mut migrator = file_migrator!().unwrap();
        migrator.sql_migrations(&FAILING);
        let err = migrator
            .run(&db, &Config::new(Environment::Development))
            .unwrap_err();
        assert_eq!(
            err.migration_id(),
            Some("2024-01-02-000000_broken"),
            "{err}"
        );
        assert!(err.to_string().contains("no_such_table"), "{err}");
        let report = err.report().unwrap();
        assert!(report.applied().next().is_none(), "no code migration ran");
        // The report says what Diesel applied before the failing one.
        assert_eq!(report.sql_migrations, ["20240101000000"]);
        // The first one was applied and recorded by Diesel.
        assert_eq!(
            texts(&db, "SELECT version AS v FROM __diesel_schema_migrations"),
            ["20240101000000"]
        );
    }
}

/// In every cell of the production matrix, with and without pending SQL migrations, the
/// `MIGRATION_CONFIRM` value the plan gives is one `up` accepts, and the plan's verdict is what
/// `up` then does.
#[test]
fn the_plan_confirms_exactly_what_up_accepts() {
    for with_sql in [false, true] {
        for cell in Cell::all() {
            let t = TestDb::new(Backend::Sqlite);
            let db = t.connect();
            let mut migrator = file_migrator!().unwrap();
            if with_sql {
                migrator.sql_migrations(&SQL);
            } else {
                common::exec(
                    &db,
                    "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT)",
                );
            }
            let backups = tempfile::tempdir().unwrap();
            let dir = backups.path().to_string_lossy().into_owned();
            let mut config = cell.config(&dir);
            let plan = migrator.plan(&db, &config).unwrap();
            let ids: Vec<&str> = plan.pending.iter().map(|m| m.id.as_str()).collect();
            let expected: &[&str] = if with_sql {
                &["2024-01-01-000000_create_widgets", "001_seed_widgets"]
            } else {
                &["001_seed_widgets"]
            };
            assert_eq!(ids, expected, "{cell:?}");
            let pinned = plan.confirm_with.clone().unwrap();
            config.set_confirm(pinned);
            let plan = migrator.plan(&db, &config).unwrap();
            let result = migrator.run(&db, &config);
            assert_eq!(
                plan.up_allowed,
                cell.enable == Some("true"),
                "{cell:?} with SQL: {with_sql}: {:?}",
                plan.refusal
            );
            assert_eq!(
                result.is_ok(),
                plan.up_allowed,
                "{cell:?} with SQL: {with_sql}: {result:?}"
            );
            if let Err(e) = result {
                assert!(e.to_string().contains("ENABLE_PROD_MIGRATIONS"), "{e}");
            }
        }
    }
}
