//! One tracking table, found one way, on PostgreSQL: after a first run, the application role
//! gets a schema of its own (`CREATE SCHEMA app AUTHORIZATION app`), which now comes first on
//! its default `search_path` (`"$user", public`). `status`, `plan`, `up`, `mark` and the dry
//! run keep using the table in `public` (no second `applied_migrations`, nothing runs again),
//! and two runners whose `search_path`s differ take the same lock and share the table. (The
//! app's command line and its `/health` are the app's test, examples/tests/app/search_path.rs.)

use crate::common;

use std::time::Duration;

use common::{count, create_role_schema, exec, role_database, schemas_of, texts, TestDb};
use migrator::connection::LockGuard;
use migrator::{
    config::Environment, connection::Backend, plan::MarkAs, report::Outcome, report::Status,
    Config, Database, Migrator,
};
use migrator_tests::fixtures;

fn dev() -> Config {
    let mut config = Config::new(Environment::Development);
    config.set_lock_timeout(Duration::from_secs(120));
    config
}

fn connect(url: &str) -> Database {
    TestDb::at(url.to_owned(), Backend::Postgres).connect()
}

fn effects(admin: &Database, id: &str) -> i64 {
    count(
        admin,
        &format!("SELECT COUNT(*) AS n FROM public.run_effects WHERE migration = '{id}'"),
    )
}

fn pending_ids(db: &Database) -> Vec<String> {
    let status = Migrator::from_registry().unwrap().status(db).unwrap();
    status.pending().map(|m| m.id.clone()).collect()
}

#[test]
fn a_schema_ahead_on_search_path_does_not_split_the_table() {
    let r = role_database();
    let admin = connect(&r.admin_url);
    let migrator = Migrator::from_registry().unwrap();
    // A long-lived process (its table resolved before the schema appears) and a fresh one.
    let before = connect(&r.url);
    assert_eq!(migrator.run(&before, &dev()).unwrap().applied().count(), 4);
    assert_eq!(schemas_of(&admin, "applied_migrations"), ["public"]);
    create_role_schema(&r, &admin);
    let after = connect(&r.url);

    for db in [&before, &after] {
        let status = migrator.status(db).unwrap();
        assert_eq!(status.pending().count(), 0);
        for m in &status.migrations {
            assert_eq!(m.row.as_ref().map(|r| r.status), Some(Status::Success));
        }
    }
    migrator
        .mark(&after, &dev(), "003_nontx_insert", MarkAs::Pending)
        .unwrap();
    assert_eq!(pending_ids(&after), ["003_nontx_insert"]);
    assert_eq!(pending_ids(&before), ["003_nontx_insert"]);
    let rehearsal = migrator.dry_run(&after, &dev()).unwrap();
    assert_eq!(
        rehearsal.get("003_nontx_insert").unwrap().outcome,
        Outcome::NotRehearsable
    );
    assert_eq!(
        rehearsal.get("001_create_effects").unwrap().outcome,
        Outcome::AlreadyApplied
    );

    let report = migrator.run(&after, &dev()).unwrap();
    let applied: Vec<&str> = report.applied().map(|m| m.id.as_str()).collect();
    assert_eq!(applied, ["003_nontx_insert"]);
    migrator
        .mark(&before, &dev(), "002_slow_insert", MarkAs::Skipped)
        .unwrap();
    assert_eq!(
        texts(
            &admin,
            "SELECT CAST(status AS TEXT) AS v FROM public.applied_migrations \
             WHERE migration_name = '002_slow_insert'"
        ),
        ["skipped"]
    );
    assert_eq!(migrator.run(&before, &dev()).unwrap().applied().count(), 0);

    assert_eq!(schemas_of(&admin, "applied_migrations"), ["public"]);
    assert_eq!(schemas_of(&admin, "run_effects"), ["public"]);
    assert_eq!(
        count(
            &admin,
            "SELECT COUNT(*) AS n FROM public.applied_migrations"
        ),
        4
    );
    for (id, runs) in [
        ("001_create_effects", 1),
        ("002_slow_insert", 1),
        ("003_nontx_insert", 2),
        ("004_slow_nontx", 1),
    ] {
        assert_eq!(effects(&admin, id), runs, "{id}");
    }
}

/// Two runners of the same binary on one database, one with the role's schema ahead on its
/// `search_path` and one without, started together: each pending migration runs once.
#[test]
fn runners_whose_search_paths_differ_share_the_table_and_the_lock() {
    let r = role_database();
    let admin = connect(&r.admin_url);
    let migrator = Migrator::from_registry().unwrap();
    migrator.run(&connect(&r.url), &dev()).unwrap();
    create_role_schema(&r, &admin);
    exec(
        &admin,
        "DELETE FROM public.applied_migrations \
         WHERE migration_name IN ('002_slow_insert', '003_nontx_insert')",
    );
    // One lock, whichever search_path found the table: the role's (its schema, then public)
    // and the superuser's (public only).
    let held = LockGuard::acquire(&connect(&r.url), Duration::from_secs(10)).unwrap();
    let err = LockGuard::acquire(&admin, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, migrator::Error::LockTimeout { .. }), "{err}");
    drop(held);
    // Two runners of each kind, at once.
    let applied =
        crate::runners_at_once([&r.url, &r.admin_url, &r.url, &r.admin_url].map(String::as_str));
    assert_eq!(applied, ["002_slow_insert", "003_nontx_insert"]);
    assert_eq!(schemas_of(&admin, "applied_migrations"), ["public"]);
    assert_eq!(schemas_of(&admin, "run_effects"), ["public"]);
    for id in fixtures::IDS {
        let again = matches!(id, "002_slow_insert" | "003_nontx_insert");
        assert_eq!(effects(&admin, id), 1 + i64::from(again), "{id}");
    }
    for db in [connect(&r.url), admin] {
        assert!(pending_ids(&db).is_empty());
    }
}
