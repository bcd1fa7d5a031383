//! The demo server as a child process over HTTP: the SQLite default path end to end, four
//! workers on one PostgreSQL database, a failing migration in development and in production,
//! and bad requests.

use crate::common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::http::{self, Response};
use common::server::{start, Server};
use common::users::{self, assert_all_hashed};
use common::{count, exec, TestDb};
use migrator::connection::Backend;

#[test]
fn the_sqlite_default_path_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let (health, seen) = server.wait_for("ok");
    assert_eq!(
        seen.first().map(String::as_str),
        Some("migrating"),
        "{seen:?}"
    );
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["database"]["reachable"], true);
    assert_eq!(body["database"]["backend"], "SQLite");
    assert_eq!(body["pending"], 0);
    assert_eq!(body["migrations"][0]["id"], "001_hash_kroger_passwords");
    assert_eq!(body["migrations"][0]["status"], "success");
    assert!(
        dir.path().join("smart-meal-planner.db").exists(),
        "the default SQLite file"
    );

    let log = server.log();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.contains("ENVIRONMENT=development (default), DATABASE_URL=sqlite://smart-meal-planner.db (default)"),
        "{first}"
    );
    assert!(
        log.contains("Migration 001_hash_kroger_passwords progress:"),
        "{log}"
    );

    let port = server.port;
    assert_eq!(http::get(port, "/api-test").unwrap().json()["status"], "ok");
    let db = http::get(port, "/check-db-connection").unwrap();
    assert_eq!(db.json()["connected"], true);
    assert!(db.json()["round_trip_ms"].as_f64().unwrap() >= 0.0);

    // A demo user's seeded password was hashed by 001 and verifies.
    let r = http::json(
        port,
        "POST",
        "/users/4/kroger-password/verify",
        r#"{"password":"kroger-demo-4"}"#,
    );
    assert_eq!(
        (r.status, r.json()["verified"].as_bool()),
        (200, Some(true))
    );
    let r = http::json(
        port,
        "POST",
        "/users/4/kroger-password/verify",
        r#"{"password":"kroger-demo-5"}"#,
    );
    assert_eq!(
        (r.status, r.json()["verified"].as_bool()),
        (200, Some(false))
    );
    // A new password is stored hashed and verifies.
    let r = http::json(
        port,
        "PUT",
        "/users/7/kroger-password",
        r#"{"password":"n3w-Kroger-pw"}"#,
    );
    assert_eq!((r.status, r.json()["updated"].as_bool()), (200, Some(true)));
    let r = http::json(
        port,
        "POST",
        "/users/7/kroger-password/verify",
        r#"{"password":"n3w-Kroger-pw"}"#,
    );
    assert_eq!(r.json()["verified"], true);

    let metrics = http::get(port, "/metrics").unwrap();
    assert!(metrics.content_type.starts_with("text/plain"));
    for line in [
        "smart_meal_planner_migration_outcome{migration=\"001_hash_kroger_passwords\",outcome=\"applied\"} 1",
        "smart_meal_planner_kroger_password_verifications_total{outcome=\"verified\"} 2",
        "smart_meal_planner_kroger_password_verifications_total{outcome=\"mismatch\"} 1",
        "smart_meal_planner_migrating 0",
    ] {
        assert!(metrics.body.contains(line), "{line} in\n{}", metrics.body);
    }
    assert!(metrics
        .body
        .contains("smart_meal_planner_startup_duration_seconds "));

    assert_eq!(server.terminate(), 0, "graceful shutdown on SIGTERM");
    let log = std::fs::read_to_string(
        dir.path().join(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap();
    assert!(log.contains("Shutting down"), "{log}");
    for secret in ["kroger-demo-4", "kroger-demo-5", "n3w-Kroger-pw"] {
        assert!(!log.contains(secret), "the log contains {secret}");
    }
}

#[test]
fn bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    server.wait_for("ok");
    let port = server.port;
    let cases: Vec<(Response, u16, &str)> = vec![
        (
            http::json(
                port,
                "POST",
                "/users/99999/kroger-password/verify",
                r#"{"password":"x"}"#,
            ),
            404,
            "user 99999 not found",
        ),
        (
            http::json(
                port,
                "PUT",
                "/users/99999/kroger-password",
                r#"{"password":"x"}"#,
            ),
            404,
            "user 99999 not found",
        ),
        (
            http::json(
                port,
                "POST",
                "/users/abc/kroger-password/verify",
                r#"{"password":"x"}"#,
            ),
            400,
            "the user id must be an integer",
        ),
        (
            http::json(
                port,
                "PUT",
                "/users/1/kroger-password",
                r#"{"password": "unterminated"#,
            ),
            400,
            "the body is not valid JSON",
        ),
        (
            http::json(
                port,
                "PUT",
                "/users/1/kroger-password",
                r#"{"secret":"s3cr3t-in-wrong-field"}"#,
            ),
            422,
            "the body must be a JSON object with a string field \"password\"",
        ),
        (
            http::json(
                port,
                "PUT",
                "/users/1/kroger-password",
                r#"{"password": 123456789}"#,
            ),
            422,
            "the body must be a JSON object with a string field \"password\"",
        ),
        (
            http::json(
                port,
                "PUT",
                "/users/1/kroger-password",
                r#"{"password":""}"#,
            ),
            422,
            "the password must not be empty",
        ),
        (
            http::request(
                port,
                "PUT",
                "/users/1/kroger-password",
                Some("text/plain"),
                "pw",
            )
            .unwrap(),
            415,
            "the body must be JSON (Content-Type: application/json)",
        ),
        (
            http::get(port, "/no/such/thing").unwrap(),
            404,
            "no such endpoint",
        ),
    ];
    for (response, status, message) in cases {
        assert_eq!(response.status, status, "{response:?}");
        assert!(
            response.content_type.starts_with("application/json"),
            "{response:?}"
        );
        assert_eq!(response.json()["error"], message);
        assert!(!response.body.contains("s3cr3t") && !response.body.contains("123456789"));
    }
    // User 1000 has a password; 1001 does not exist; a user without one says so.
    exec(&migrator::Database::connect(&format!("sqlite://{}/smart-meal-planner.db", dir.path().display())).unwrap(),
        "UPDATE user_profiles SET kroger_password = NULL, kroger_password_hash = NULL WHERE id = 10");
    let r = http::json(
        port,
        "POST",
        "/users/10/kroger-password/verify",
        r#"{"password":"x"}"#,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("user 10 has no Kroger password"))
    );
}

#[test]
fn four_workers_on_one_postgres_database() {
    const ROWS: i64 = 400;
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let dir = tempfile::tempdir().unwrap();
    let mut servers: Vec<Server> = (0..4)
        .map(|_| {
            start(
                dir.path(),
                &[("DATABASE_URL", &t.url), ("ENVIRONMENT", "staging")],
            )
        })
        .collect();
    for server in &mut servers {
        let (health, _) = server.wait_for("ok");
        assert_eq!(health.json()["pending"], 0);
    }
    let applying: usize = servers
        .iter()
        .filter(|s| {
            s.log()
                .contains("Applying migration 001_hash_kroger_passwords")
        })
        .count();
    assert_eq!(applying, 1, "exactly one worker migrates");
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM applied_migrations WHERE attempts = 1 AND status = 'success'"),
        1
    );
    // A database named by DATABASE_URL gets neither the demo schema nor demo users.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_name = '__diesel_schema_migrations'"
        ),
        0
    );
    assert_all_hashed(&db, ROWS);
    users::assert_each_updated_once(&db, ROWS);
    for server in &servers {
        assert!(!server.log().contains(common::pg_password()));
    }
    for server in servers {
        assert_eq!(server.terminate(), 0);
    }
}

/// A DBA made `user_profiles` read-only: 001 fails on its first batch.
fn read_only_users(backend: Backend) -> TestDb {
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, 100);
    match backend {
        Backend::Postgres => exec(
            &db,
            "CREATE FUNCTION read_only() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'user_profiles is read-only during the audit'; END
             $$ LANGUAGE plpgsql;
             CREATE TRIGGER read_only BEFORE UPDATE ON user_profiles
             FOR EACH ROW EXECUTE FUNCTION read_only();",
        ),
        _ => exec(
            &db,
            "CREATE TRIGGER read_only BEFORE UPDATE ON user_profiles
             BEGIN SELECT RAISE(ABORT, 'user_profiles is read-only during the audit'); END;",
        ),
    }
    t
}

#[test]
fn a_failed_migration_degrades_development_and_keeps_serving() {
    let t = read_only_users(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[
            ("DATABASE_URL", &t.url),
            ("ENVIRONMENT", "development"),
            ("MIGRATION_ADMIN_TOKEN", "health-admin-t0ken"),
        ],
    );
    let (health, _) = server.wait_for("degraded");
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["error"]["migration"], "001_hash_kroger_passwords");
    // Anonymous callers learn which migration failed, not its error text.
    assert!(body["error"].get("message").is_none(), "{body}");
    assert!(
        !health.body.contains("read-only during the audit"),
        "{body}"
    );
    let admin = http::request_with_headers(
        server.port,
        "GET",
        "/health",
        &[("Authorization", "Bearer health-admin-t0ken")],
        None,
        "",
    )
    .unwrap()
    .json();
    let message = admin["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("user_profiles is read-only during the audit"),
        "{message}"
    );
    assert!(
        admin["migrations"][0]["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("read-only during the audit")),
        "{admin}"
    );
    assert_eq!(body["migrations"][0]["status"], "failed");
    assert_eq!(http::get(server.port, "/api-test").unwrap().status, 200);
    let metrics = http::get(server.port, "/metrics").unwrap().body;
    assert!(metrics.contains("outcome=\"failed\"} 1"), "{metrics}");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn a_failed_migration_stops_production() {
    let t = read_only_users(Backend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[
            ("DATABASE_URL", &t.url),
            ("ENVIRONMENT", "production"),
            ("AUTO_MIGRATE_ON_STARTUP", "true"),
            ("ENABLE_PROD_MIGRATIONS", "true"),
            ("MIGRATION_REQUIRE_CONFIRMATION", "false"),
            ("MIGRATION_BACKUP_BEFORE", "false"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "production kept running:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("Migration 001_hash_kroger_passwords failed:"),
        "{log}"
    );
    assert!(
        log.contains("Stopping: start-up migrations failed in production"),
        "{log}"
    );
    let mut stderr = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!log.contains(common::pg_password()));
}

#[test]
fn health_counts_pending_sql_migrations_as_the_library_does() {
    let dir = tempfile::tempdir().unwrap();
    // Start-up migrations off: the demo's SQL migration and 001 stay pending.
    let mut server = start(dir.path(), &[("AUTO_MIGRATE_ON_STARTUP", "false")]);
    let (health, _) = server.wait_for("degraded");
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(
        body["pending_sql"],
        serde_json::json!(["2024-01-01-000000_create_user_profiles"]),
        "{body}"
    );
    assert_eq!(body["migrations"][0]["id"], "001_hash_kroger_passwords");
    assert_eq!(body["migrations"][0]["status"], "pending");
    assert_eq!(body["migrations"][0]["pending"], true);
    // One SQL migration and one code migration: StatusReport::pending_count.
    assert_eq!(body["pending"], 2, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("migrations skipped"), "{body}");
}
