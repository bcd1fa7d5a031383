//! One tracking table, found one way, on PostgreSQL: after a first run of
//! `migrate_kroger_passwords up`, the application role gets a schema of its own (`CREATE SCHEMA
//! app AUTHORIZATION app`), which now comes first on its default `search_path` (`"$user",
//! public`). `status`, `plan`, `mark`, `up` and the demo's `/health`, in production, keep using
//! the table in `public`. (The library's side is migrator-tests' `shared_fixtures` search_path.)

use crate::common;

use common::TestDb;
use common::{create_role_schema, pg_password, role_database, schemas_of, texts, users};
use migrator::{connection::Backend, Database};

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

fn connect(url: &str) -> Database {
    TestDb::at(url.to_owned(), Backend::Postgres).connect()
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
    let mut demo = common::server::start_plain(
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
