//! The tracking table the Python runner left (the guide's columns only, with or without an
//! `id SERIAL` key): read as it is by `migrate_kroger_passwords status` and `plan` and by the
//! demo's `/health` in production with their defaults (no locked run happens), and upgraded at
//! the first locked run (`mark`) with its rows kept. (The library's side is migrator-tests'
//! `legacy_table`.)

use crate::common;

use common::legacy::{columns, GUIDE_TABLE, GUIDE_TABLE_WITH_ID};
use common::{exec, texts, TestDb};
use migrator::connection::Backend;

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

/// The Kroger command in production with its defaults; exit code, stdout, stderr.
fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = common::isolated(CLI)
        .args(args)
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "production")
        .output()
        .expect("run the Kroger command");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!stdout.contains(common::pg_password()) && !stderr.contains(common::pg_password()));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn the_python_table_in_production(ddl: &str) {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    exec(&db, ddl);
    let guide_columns = columns(&db, Backend::Postgres);
    exec(
        &db,
        "INSERT INTO applied_migrations (migration_name, status, applied_at, execution_time_ms)
         VALUES ('000_python_setup', 'success', '2024-05-01 12:00:00', 40),
                ('001_hash_kroger_passwords', 'success', '2024-05-02 08:30:00', 1234)",
    );
    let id = "001_hash_kroger_passwords";

    let (code, out, err) = cli(&t.url, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"], 0, "{out}");
    let m = &status["migrations"][0];
    assert_eq!(m["id"], id);
    assert_eq!(m["status"], "success");
    assert_eq!(m["attempts"], 0);
    assert_eq!(m["applied_at"], "2024-05-02T08:30:00.000Z");
    assert_eq!(m["execution_time_ms"], 1234);
    assert_eq!(m["checksum_drift"], false);
    assert_eq!(
        status["unknown_applied"],
        serde_json::json!([{"id": "000_python_setup", "status": "success"}])
    );

    let (code, out, err) = cli(&t.url, &["plan", "--json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["pending"], serde_json::json!([]), "{out}");
    let (code, out, err) = cli(&t.url, &["plan"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("`up` has nothing to do."), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let mut demo = common::server::start_plain(
        dir.path(),
        &[("DATABASE_URL", &t.url), ("ENVIRONMENT", "production")],
    );
    let health = demo.settled_health();
    let body = health.json();
    assert_eq!(
        (health.status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    assert_eq!(body["migrations"][0]["status"], "success");
    drop(demo);
    assert_eq!(
        columns(&db, Backend::Postgres),
        guide_columns,
        "reading changes nothing"
    );

    // The first locked run (an operator's `mark`) adds the missing columns and keeps the rows.
    let (code, _, err) = cli(&t.url, &["mark", id, "success", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let upgraded = columns(&db, Backend::Postgres);
    for column in ["checksum", "attempts", "applied_by"] {
        assert!(upgraded.iter().any(|c| c == column), "{upgraded:?}");
    }
    assert_eq!(
        texts(
            &db,
            "SELECT migration_name || ' ' || status || ' ' || \
             to_char(applied_at, 'YYYY-MM-DD HH24:MI') || ' ' || execution_time_ms AS v \
             FROM applied_migrations WHERE migration_name = '000_python_setup'"
        ),
        ["000_python_setup success 2024-05-01 12:00 40"]
    );
    if ddl.contains("SERIAL") {
        assert_eq!(
            texts(
                &db,
                "SELECT id || ' ' || migration_name AS v FROM applied_migrations ORDER BY id"
            ),
            ["1 000_python_setup", "2 001_hash_kroger_passwords"]
        );
    }
    let (code, out, err) = cli(&t.url, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"], 0, "{out}");
    assert_eq!(status["migrations"][0]["status"], "success");
    assert_eq!(status["migrations"][0]["checksum_drift"], false);
}

#[test]
fn the_python_table_in_production_postgres() {
    the_python_table_in_production(GUIDE_TABLE);
}

#[test]
fn the_python_table_with_an_id_key_in_production_postgres() {
    the_python_table_in_production(GUIDE_TABLE_WITH_ID);
}
