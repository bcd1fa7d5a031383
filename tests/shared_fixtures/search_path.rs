//! One tracking table, found one way, on PostgreSQL: after a first run, the application role
//! gets a schema of its own (`CREATE SCHEMA app AUTHORIZATION app`), which now comes first on
//! its default `search_path` (`"$user", public`). `status`, `plan`, `up`, `mark`, the dry run
//! and `/health` keep using the table in `public` (no second `applied_migrations`, nothing runs
//! again), and two runners whose `search_path`s differ take the same lock and share the table.

use crate::common;

use std::time::Duration;

use common::{count, exec, texts, users, TestDb};
use common::{pg_password, role_database};
use migrator::connection::LockGuard;
use migrator::testing::RoleDatabase;
use migrator::{
    config::Environment, connection::Backend, plan::MarkAs, report::Outcome, report::Status,
    Config, Database, Migrator,
};
use migrator_tests::fixtures;

const CLI: &str = env!("CARGO_BIN_EXE_kroger-cli-under-test");

fn dev() -> Config {
    let mut config = Config::new(Environment::Development);
    config.set_lock_timeout(Duration::from_secs(120));
    config
}

fn connect(url: &str) -> Database {
    TestDb::at(url.to_owned(), Backend::Postgres).connect()
}

/// The schemas holding a table named `table`.
fn schemas_of(admin: &Database, table: &str) -> Vec<String> {
    texts(
        admin,
        &format!(
            "SELECT CAST(table_schema AS TEXT) AS v FROM information_schema.tables \
             WHERE table_name = '{table}' ORDER BY 1"
        ),
    )
}

/// Gives the role its own schema, which goes ahead of `public` on its `search_path`.
fn create_role_schema(r: &RoleDatabase, admin: &Database) {
    exec(
        admin,
        &format!("CREATE SCHEMA {0} AUTHORIZATION {0}", r.role),
    );
    assert_eq!(
        texts(&connect(&r.url), "SELECT current_schema() AS v"),
        std::slice::from_ref(&r.role),
        "the role's own schema now comes first on its search_path"
    );
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

/// The Kroger command (`status`, `plan`, `mark`, `up`) and the demo's `/health`, in production
/// with its defaults, after the role's schema appeared.
#[test]
fn the_command_line_and_health_use_the_one_table() {
    let r = role_database();
    let admin = connect(&r.admin_url);
    users::seed(&connect(&r.url), Backend::Postgres, 50);
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let out = common::isolated(CLI)
            .args(args)
            .env("DATABASE_URL", &r.url)
            .env("ARGON2_MEMORY_KIB", "256")
            .env("ARGON2_ITERATIONS", "1")
            .envs(env.iter().copied())
            .output()
            .expect("run the Kroger command");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(!stdout.contains(pg_password()) && !stderr.contains(pg_password()));
        (out.status.code().unwrap_or(-1), stdout, stderr)
    };
    let production = [("ENVIRONMENT", "production")];
    let (code, _, err) = cli(&["up"], &[("ENVIRONMENT", "development")]);
    assert_eq!(code, 0, "{err}");
    create_role_schema(&r, &admin);

    let (code, out, err) = cli(&["status", "--json"], &production);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"], 0, "{out}");
    assert_eq!(status["migrations"][0]["status"], "success", "{out}");
    assert_eq!(status["migrations"][0]["attempts"], 1, "{out}");

    let (code, out, err) = cli(&["plan", "--json"], &production);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["pending"], serde_json::json!([]), "{out}");

    let id = "001_hash_kroger_passwords";
    let (code, _, err) = cli(&["mark", id, "skipped", "--yes"], &production);
    assert_eq!(code, 0, "{err}");
    let public_status = || {
        texts(
            &admin,
            &format!(
                "SELECT CAST(status AS TEXT) AS v FROM public.applied_migrations \
                 WHERE migration_name = '{id}'"
            ),
        )
    };
    assert_eq!(public_status(), ["skipped"]);
    let (code, _, err) = cli(&["mark", id, "success", "--yes"], &production);
    assert_eq!(code, 0, "{err}");
    assert_eq!(public_status(), ["success"]);

    let enabled = [
        ("ENVIRONMENT", "production"),
        ("ENABLE_PROD_MIGRATIONS", "true"),
        ("MIGRATION_REQUIRE_CONFIRMATION", "false"),
        ("MIGRATION_BACKUP_BEFORE", "false"),
    ];
    let (code, out, err) = cli(&["up"], &enabled);
    assert_eq!(
        (code, out.trim()),
        (0, "Nothing to do: no pending migrations."),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut demo = common::demo::start(
        dir.path(),
        &[("DATABASE_URL", &r.url), ("ENVIRONMENT", "production")],
    );
    let health = demo.settled_health();
    let body = health.json();
    assert_eq!(
        (health.status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    assert_eq!(body["pending"], 0);
    assert_eq!(body["migrations"][0]["status"], "success");
    assert!(!demo.log().contains(pg_password()));

    assert_eq!(schemas_of(&admin, "applied_migrations"), ["public"]);
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
