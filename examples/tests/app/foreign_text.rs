//! No text written by another session reaches the app's records, logs or pages (PostgreSQL):
//! a support engineer's open transaction updating a plaintext password blocks 001's `ALTER
//! TABLE`; the failure names the blocker by pid, state, age, `application_name` and lock mode,
//! and the password appears nowhere: not in `up`'s output, not in `applied_migrations`, not in
//! `status --json`, not in the demo server's log, `/health` or `/migrations` (anonymous or
//! with the admin token). (The library's side, database errors stored with their values
//! redacted, is migrator-tests' `foreign_text`.)

use crate::common;

use common::{http, kroger_cli, server, texts, users, TestDb};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Integer;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use migrator::connection::Backend;

const SECRET: &str = "SECRET-kroger-pw-7f3a9c";
const TOKEN: &str = "admin-token-for-foreign-text-0123456789";

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The support engineer's session: `BEGIN; UPDATE ... kroger_password = SECRET`, left open.
fn open_transaction(url: &str) -> (PgConnection, i32) {
    let mut conn = PgConnection::establish(url).unwrap();
    conn.batch_execute("SET application_name = 'support-psql'")
        .unwrap();
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut conn)
        .unwrap()
        .pid;
    conn.batch_execute(&format!(
        "BEGIN; UPDATE user_profiles SET kroger_password = '{SECRET}' WHERE id = 1;"
    ))
    .unwrap();
    (conn, pid)
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} holds the secret:\n{text}");
    assert!(
        !text.contains("UPDATE user_profiles"),
        "{what} holds another session's statement:\n{text}"
    );
}

#[test]
fn a_blockers_statement_is_never_recorded_logged_or_served() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, 40);
    let (_blocker, pid) = open_transaction(&t.url);
    let lock_env = [
        ("MIGRATION_DDL_LOCK_TIMEOUT_MS", "300"),
        ("MIGRATION_DDL_LOCK_RETRIES", "1"),
    ];

    let (code, out, err) = kroger_cli::run(&mut kroger_cli::cli(&t.url, &["up"], &lock_env));
    assert_eq!(code, 1, "up should fail on the lock timeout:\n{out}\n{err}");
    assert_clean("up's output", &format!("{out}\n{err}"));
    let named = format!("blocked by pid {pid} (idle in transaction");
    assert!(err.contains(&named), "{named:?} not in:\n{err}");
    for part in [
        "application_name 'support-psql'",
        "holds RowExclusiveLock",
        " s, ",
    ] {
        assert!(err.contains(part), "{part:?} not in:\n{err}");
    }

    let recorded = texts(
        &db,
        "SELECT COALESCE(error_message, '') || ' ' || COALESCE(applied_by, '') AS v \
         FROM applied_migrations",
    )
    .join("\n");
    assert_clean("applied_migrations", &recorded);
    assert!(recorded.contains(&named), "{recorded}");

    let (code, status, err) =
        kroger_cli::run(&mut kroger_cli::cli(&t.url, &["status", "--json"], &[]));
    assert_eq!(code, 0, "{err}");
    assert_clean("status --json", &format!("{status}\n{err}"));

    // The demo server retries 001 at start-up (still blocked) and serves its status.
    let dir = tempfile::tempdir().unwrap();
    let mut s = server::start(
        dir.path(),
        &[
            ("DATABASE_URL", t.url.as_str()),
            ("ENVIRONMENT", "development"),
            ("MIGRATION_ADMIN_TOKEN", TOKEN),
            ("MIGRATION_DDL_LOCK_TIMEOUT_MS", "300"),
            ("MIGRATION_DDL_LOCK_RETRIES", "1"),
        ],
    );
    let (health, _) = s.wait_for("degraded");
    assert_clean("/health", &health.body);
    for field in ["blocked by", "applied_by", "error_message"] {
        assert!(
            !health.body.contains(field),
            "anonymous /health shows {field}: {}",
            health.body
        );
    }
    let bearer = format!("Bearer {TOKEN}");
    let admin = http::request_with_headers(
        s.port,
        "GET",
        "/health",
        &[("Authorization", &bearer)],
        None,
        "",
    )
    .unwrap();
    assert_clean("/health with the admin token", &admin.body);
    assert!(admin.body.contains(&named), "{}", admin.body);
    for (what, headers) in [
        ("anonymous /migrations", vec![]),
        (
            "/migrations with the admin token",
            vec![("Authorization", bearer.as_str())],
        ),
    ] {
        let page =
            http::request_with_headers(s.port, "GET", "/migrations", &headers, None, "").unwrap();
        assert_eq!(page.status, 200, "{what}");
        assert_clean(what, &page.body);
    }
    let anonymous = http::get(s.port, "/migrations").unwrap();
    assert!(!anonymous.body.contains("blocked by"), "{}", anonymous.body);
    assert_clean("the server's log", &s.log());
}
