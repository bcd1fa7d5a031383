//! Migration 001 and the Kroger password paths on real PostgreSQL and SQLite: 10,000 rows,
//! nasty inputs, idempotence, three processes sharing the backfill, SIGKILL mid-backfill, the
//! app's set/verify paths, the `migrate_kroger_passwords` command, and no plaintext in any
//! log or output.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::users::{self, assert_all_hashed, assert_no_plaintext};
use common::{count, exec, kroger_cli, logs, TestDb};
use migrator::password::{Hasher, Params, Password};
use migrator::{
    config::Environment, connection::Backend, report::Outcome, report::Status, Config, Migrator,
};
use smart_meal_planner::kroger::{self, Verification};

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

/// Cheap Argon2 parameters for the suite: the code path is the same, the cost is not.
/// (The benchmarks measure the defaults.)
const TEST_MEMORY_KIB: &str = "256";

fn fast_params() {
    kroger::set_hash_params(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
}

fn dev() -> Config {
    Config::new(Environment::Development)
}

fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(CLI);
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "development")
        .env("ARGON2_MEMORY_KIB", TEST_MEMORY_KIB)
        .env("ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn ten_thousand_rows(backend: Backend) {
    fast_params();
    const ROWS: i64 = 10_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    logs::take();
    let migrator = Migrator::from_registry().unwrap();
    let report = migrator.run(&db, &dev()).unwrap();
    assert_eq!(
        report.get("001_hash_kroger_passwords").unwrap().outcome,
        Outcome::Applied
    );
    assert_all_hashed(&db, ROWS);
    users::assert_each_updated_once(&db, ROWS);
    let index = match backend {
        Backend::Postgres => count(
            &db,
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = \
             'idx_user_profiles_kroger_password_hash' \
             AND indexdef LIKE '%WHERE (kroger_password_hash IS NOT NULL)%'",
        ),
        _ => count(
            &db,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' \
             AND name = 'idx_user_profiles_kroger_password_hash' AND sql LIKE '%WHERE%'",
        ),
    };
    assert_eq!(index, 1);
    let lines = logs::take().join("\n");
    assert!(
        lines.contains("Migration 001_hash_kroger_passwords progress:"),
        "{lines}"
    );
    assert_no_plaintext(&lines, ROWS);

    // Second run: nothing applied, nothing written; the backfill itself finds nothing either.
    let again = migrator.run(&db, &dev()).unwrap();
    assert_eq!(
        again.get("001_hash_kroger_passwords").unwrap().outcome,
        Outcome::AlreadyApplied
    );
    let progress = migrator::context::Progress::new("again", Duration::from_secs(10));
    let rerun = kroger::run_backfill(&db, &progress, &Default::default()).unwrap();
    assert_eq!(rerun.rows_updated, 0);
    users::assert_each_updated_once(&db, ROWS);
    assert_no_plaintext(&logs::take().join("\n"), ROWS);
}

#[test]
fn ten_thousand_rows_postgres() {
    ten_thousand_rows(Backend::Postgres);
}

#[test]
fn ten_thousand_rows_sqlite() {
    ten_thousand_rows(Backend::Sqlite);
}

fn wait_children(children: Vec<(&str, Child)>) -> Vec<(String, i32, String, String)> {
    children
        .into_iter()
        .map(|(name, child)| {
            let out = child.wait_with_output().unwrap();
            (
                name.to_owned(),
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

fn three_processes_share_the_backfill(backend: Backend) {
    const ROWS: i64 = 3_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    // One process runs the migration (adding the columns, then hashing); two more join the
    // backfill, started before the columns exist.
    let slow = [
        ("ARGON2_MEMORY_KIB", "4096"),
        ("MIGRATION_BATCH_SIZE", "16"),
        ("MIGRATION_WORKER_THREADS", "1"),
    ];
    let children = vec![
        ("work-a", cli(&t.url, &["work"], &slow).spawn().unwrap()),
        ("up", cli(&t.url, &["up"], &slow).spawn().unwrap()),
        ("work-b", cli(&t.url, &["work"], &slow).spawn().unwrap()),
    ];
    let results = wait_children(children);
    let mut by_workers = 0;
    for (name, code, out, err) in &results {
        assert_eq!(*code, 0, "{name} failed: {err}");
        assert_no_plaintext(out, ROWS);
        assert_no_plaintext(err, ROWS);
        if let Some(rows) = out.strip_prefix("rows written by this process: ") {
            by_workers += rows.trim().parse::<i64>().unwrap();
        }
    }
    // PostgreSQL shares the rows (SKIP LOCKED); on SQLite one process at a time is the
    // contract: a second one may compute rows the first writes first (its guarded writes skip
    // them), so it can end with 0 rows written, never with a row written twice.
    if backend == Backend::Postgres {
        assert!(by_workers > 0, "the workers took part: {results:?}");
    }
    assert_all_hashed(&db, ROWS);
    users::assert_each_updated_once(&db, ROWS);
}

#[test]
fn three_processes_share_the_backfill_postgres() {
    three_processes_share_the_backfill(Backend::Postgres);
}

#[test]
fn three_processes_share_the_backfill_sqlite() {
    three_processes_share_the_backfill(Backend::Sqlite);
}

fn killed_mid_backfill(backend: Backend) {
    fast_params();
    const ROWS: i64 = 2_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let mut child = cli(
        &t.url,
        &["up"],
        &[
            ("ARGON2_MEMORY_KIB", "8192"),
            ("MIGRATION_BATCH_SIZE", "32"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while common::try_count(
        &db,
        "SELECT COUNT(kroger_password_hash) AS n FROM user_profiles",
    )
    .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the backfill never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let hashed = count(
        &db,
        "SELECT COUNT(kroger_password_hash) AS n FROM user_profiles",
    );
    assert!(
        hashed > 0 && hashed < ROWS - 30,
        "killed mid-way: {hashed} hashed"
    );
    let migrator = Migrator::from_registry().unwrap();
    let row = migrator.status(&db).unwrap().migrations[0]
        .row
        .clone()
        .unwrap();
    assert_eq!(row.status, Status::Running);

    let mut config = dev();
    config.set_lock_timeout(Duration::ZERO);
    let report = migrator.run(&db, &config).unwrap();
    assert_eq!(report.applied().count(), 1);
    let row = migrator.status(&db).unwrap().migrations[0]
        .row
        .clone()
        .unwrap();
    assert_eq!((row.status, row.attempts), (Status::Success, 2));
    assert_all_hashed(&db, ROWS);
    users::assert_each_updated_once(&db, ROWS);
}

#[test]
fn killed_mid_backfill_postgres() {
    killed_mid_backfill(Backend::Postgres);
}

#[test]
fn killed_mid_backfill_sqlite() {
    killed_mid_backfill(Backend::Sqlite);
}

fn password_paths(backend: Backend) {
    fast_params();
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, 20);
    // User 9 stays legacy (plaintext only) for the lazy upgrade: hash everything but it.
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = NULL WHERE id = 9",
    );
    Migrator::from_registry().unwrap().run(&db, &dev()).unwrap();
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = 'kp-9-secret' WHERE id = 9",
    );
    let hasher = kroger::hasher().unwrap();
    let mut conn = db.get().unwrap();

    // Setting stores only the hash and salt.
    let new = Password::new("brand new password");
    assert!(kroger::set_kroger_password(&mut conn, &hasher, 10, &new).unwrap());
    let user = &users::users(&db)[9];
    assert_eq!(user.id, 10);
    assert_eq!(user.kroger_password, None);
    assert!(hasher
        .verify(&new, user.kroger_password_hash.as_ref().unwrap())
        .unwrap());
    assert!(!kroger::set_kroger_password(&mut conn, &hasher, 999, &new).unwrap());

    // Verifying a hashed row.
    let ok = kroger::verify_kroger_password(&mut conn, &hasher, 10, &new).unwrap();
    assert_eq!(
        ok,
        Verification::Verified {
            upgraded: false,
            rehashed: false
        }
    );
    let wrong = Password::new("brand new passwordx");
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 10, &wrong).unwrap(),
        Verification::Mismatch
    );

    // A legacy row verifies against its plaintext and is upgraded on success only.
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 9, &Password::new("kp-9-secre"))
            .unwrap(),
        Verification::Mismatch
    );
    assert!(users::users(&db)[8].kroger_password_hash.is_none());
    let legacy = Password::new("kp-9-secret");
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 9, &legacy).unwrap(),
        Verification::Verified {
            upgraded: true,
            rehashed: false
        }
    );
    let user = &users::users(&db)[8];
    assert!(hasher
        .verify(&legacy, user.kroger_password_hash.as_ref().unwrap())
        .unwrap());
    assert_eq!(
        user.kroger_password_salt.as_deref(),
        user.kroger_password_hash
            .as_ref()
            .unwrap()
            .split('$')
            .nth(4)
    );

    // New parameters: old hashes still verify, and are replaced.
    let stronger = Hasher::new(Params {
        memory_kib: 512,
        iterations: 2,
        parallelism: 1,
    })
    .unwrap();
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &stronger, 9, &legacy).unwrap(),
        Verification::Verified {
            upgraded: false,
            rehashed: true
        }
    );
    let rehashed = users::users(&db)[8].kroger_password_hash.clone().unwrap();
    assert!(rehashed.contains("m=512,t=2,p=1"), "{rehashed}");
    assert!(!stronger.needs_rehash(&rehashed));

    // An old app version changed user 11's plaintext after 001 hashed it: the plaintext is
    // the truth, the stale hash no longer lets the old password in, and it is repaired.
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = 'changed-by-old-app' WHERE id = 11",
    );
    let old = Password::new("kp-11-secret");
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 11, &old).unwrap(),
        Verification::Mismatch
    );
    let changed = Password::new("changed-by-old-app");
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 11, &changed).unwrap(),
        Verification::Verified {
            upgraded: false,
            rehashed: true
        }
    );
    let repaired = users::users(&db)[10].kroger_password_hash.clone().unwrap();
    assert!(hasher.verify(&changed, &repaired).unwrap());
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 11, &changed).unwrap(),
        Verification::Verified {
            upgraded: false,
            rehashed: false
        }
    );

    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 8, &legacy).unwrap(),
        Verification::NoPassword
    );
    assert_eq!(
        kroger::verify_kroger_password(&mut conn, &hasher, 12345, &legacy).unwrap(),
        Verification::UnknownUser
    );
}

#[test]
fn password_paths_postgres() {
    password_paths(Backend::Postgres);
}

#[test]
fn password_paths_sqlite() {
    password_paths(Backend::Sqlite);
}

fn command_line(backend: Backend) {
    const ROWS: i64 = 300;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let mut all_output = String::new();
    let mut run = |args: &[&str], env: &[(&str, &str)]| {
        let (code, out, err) = kroger_cli::run(&mut cli(&t.url, args, env));
        all_output.push_str(&out);
        all_output.push_str(&err);
        (code, out, err)
    };

    let (code, out, _) = run(&["status", "--json"], &[]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pending"], 1);
    assert_eq!(status["migrations"][0]["id"], "001_hash_kroger_passwords");
    assert_eq!(status["migrations"][0]["transactional"], false);

    let (code, out, _) = run(&["plan", "--json"], &[]);
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["up_allowed"], true);
    assert_eq!(plan["pending"][0]["id"], "001_hash_kroger_passwords");

    let (code, _, err) = run(&["verify"], &[]);
    assert_eq!(code, 1, "verify before the migration fails: {err}");

    // Production, not enabled: refused (3). Nothing changed.
    let (code, _, err) = run(&["up"], &[("ENVIRONMENT", "production")]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ENABLE_PROD_MIGRATIONS"), "{err}");
    let (code, _, err) = run(&["up"], &[("ENVIRONMENT", "prod")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid ENVIRONMENT value \"prod\""), "{err}");

    let (code, out, err) = run(&["up"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied 001_hash_kroger_passwords"), "{out}");
    assert!(
        err.contains("Applying migration 001_hash_kroger_passwords"),
        "{err}"
    );
    let (code, out, _) = run(&["up"], &[]);
    assert_eq!(
        (code, out.trim()),
        (0, "Nothing to do: no pending migrations.")
    );

    let (code, out, _) = run(&["verify", "--json", "--check-hashes"], &[]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let with_password = users::expected(ROWS)
        .iter()
        .filter(|(_, p)| p.is_some())
        .count();
    assert_eq!(report["counts"]["total_users"], ROWS);
    assert_eq!(report["counts"]["plain_passwords"], with_password);
    assert_eq!(report["counts"]["hashed_passwords"], with_password);
    assert_eq!(report["counts"]["remaining"], 0);
    assert_eq!(report["counts"]["hashes_verified"], with_password);

    // A hash that does not match its plaintext: found, exit 1, and its plaintext is kept.
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = 'kp-changed-secret' WHERE id = 20",
    );
    let (code, out, _) = run(&["verify", "--check-hashes"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PROBLEM: user 20: the hash does not verify its plaintext"),
        "{out}"
    );
    let (code, out, _) = run(&["verify", "--json", "--clear-verified-plaintext"], &[]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["counts"]["plaintexts_cleared"], with_password - 1);
    assert_eq!(
        count(&db, "SELECT COUNT(kroger_password) AS n FROM user_profiles"),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM user_profiles WHERE id = 20 AND kroger_password IS NOT NULL"
        ),
        1
    );

    // mark round trip, and its errors.
    let (code, out, _) = run(&["mark", "001_hash_kroger_passwords", "skipped"], &[]);
    assert_eq!(
        (code, out.trim()),
        (0, "001_hash_kroger_passwords marked skipped")
    );
    let (code, out, _) = run(&["status"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("001_hash_kroger_passwords                skipped"),
        "{out}"
    );
    let (code, _, err) = run(&["mark", "999_unknown", "success"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown migration 999_unknown"), "{err}");
    let (code, _, _) = run(&["mark", "001_hash_kroger_passwords", "done"], &[]);
    assert_eq!(code, 2, "clap rejects the status");
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_string_lossy().into_owned();
    let (code, out, err) = run(&["backup"], &[("MIGRATION_BACKUP_DIR", &dir)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("backup written: {dir}/")), "{out}");
    assert!(out.contains("-manual."), "{out}");
    let (code, _, _) = run(&["frobnicate"], &[]);
    assert_eq!(code, 2);

    assert_no_plaintext(&all_output, ROWS);
    if backend == Backend::Postgres {
        assert!(!all_output.contains(common::pg_password()));
    }
}

#[test]
fn command_line_postgres() {
    command_line(Backend::Postgres);
}

#[test]
fn command_line_sqlite() {
    command_line(Backend::Sqlite);
}

#[test]
fn a_bad_database_url_on_the_command_line_is_a_usage_error() {
    let (code, out, err) =
        kroger_cli::run(&mut cli("mysql://root:hunter2@db/app", &["status"], &[]));
    assert_eq!(code, 2);
    assert!(err.contains("unsupported scheme \"mysql\""), "{err}");
    assert!(!format!("{out}{err}").contains("hunter2"));
    let (code, _, err) = kroger_cli::run(&mut cli(
        "sqlite:///tmp/ignored.db",
        &[
            "--database-url",
            "postgres://u:hunter2@127.0.0.1:1/x",
            "status",
        ],
        &[],
    ));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot connect to postgres://u:***@127.0.0.1:1/x"),
        "{err}"
    );
    assert!(!err.contains("hunter2"));
}

#[test]
fn the_manual_sql_script_is_idempotent_on_postgres() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, 50);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/add_kroger_password_columns.sql"
    );
    for _ in 0..2 {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &t.url,
                "-f",
                script,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_name = \
             'user_profiles' AND column_name IN ('kroger_password_hash', 'kroger_password_salt')"
        ),
        2
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = 'idx_user_profiles_kroger_password_hash'"),
        1
    );
    // The migration then only hashes.
    fast_params();
    Migrator::from_registry().unwrap().run(&db, &dev()).unwrap();
    assert_all_hashed(&db, 50);
}

/// A verification reads, hashes with no connection held, then writes under the row's lock:
/// a row changed in between keeps its change.
fn a_row_changed_while_hashing_keeps_its_change(backend: Backend) {
    fast_params();
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, 20);
    Migrator::from_registry().unwrap().run(&db, &dev()).unwrap();
    let stronger = Hasher::new(Params {
        memory_kib: 512,
        iterations: 2,
        parallelism: 1,
    })
    .unwrap();
    let hash_of = |id: i64| {
        users::users(&db)[id as usize - 1]
            .kroger_password_hash
            .clone()
    };
    let mut conn = db.get().unwrap();
    let mut check = |id: i64, password: &Password| {
        let stored = kroger::read_kroger_password(&mut conn, id)
            .unwrap()
            .unwrap();
        let checked = stored.check(&stronger, password).unwrap();
        assert!(checked.needs_write(), "user {id} needs a rehash");
        checked
    };

    // An old app version changes user 9's plaintext while its rehash is computed.
    let old = Password::new("kp-9-secret");
    let checked = check(9, &old);
    let before = hash_of(9);
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = 'changed-meanwhile' WHERE id = 9",
    );
    let verified_then = Verification::Verified {
        upgraded: false,
        rehashed: false,
    };
    assert_eq!(
        checked.finish(&mut db.get().unwrap(), 9, &old).unwrap(),
        verified_then
    );
    assert_eq!(hash_of(9), before, "the stale rehash was not stored");

    // User 10 sets a new password meanwhile.
    let checked = check(10, &Password::new("kp-10-secret"));
    let hasher = kroger::hasher().unwrap();
    let new = Password::new("set meanwhile");
    assert!(kroger::set_kroger_password(&mut db.get().unwrap(), &hasher, 10, &new).unwrap());
    assert_eq!(
        checked
            .finish(&mut db.get().unwrap(), 10, &Password::new("kp-10-secret"))
            .unwrap(),
        verified_then
    );
    assert!(hasher.verify(&new, &hash_of(10).unwrap()).unwrap());

    // Unchanged: stored.
    let password = Password::new("kp-11-secret");
    let checked = check(11, &password);
    assert_eq!(
        checked
            .finish(&mut db.get().unwrap(), 11, &password)
            .unwrap(),
        Verification::Verified {
            upgraded: false,
            rehashed: true
        }
    );
    assert!(!stronger.needs_rehash(&hash_of(11).unwrap()));

    // Inside a caller's transaction the write is part of it, and rolled back with it.
    let before = hash_of(12);
    let password = Password::new("kp-12-secret");
    let rolled_back = diesel::Connection::transaction::<(), migrator::Error, _>(
        &mut *db.get().unwrap(),
        |conn| {
            let outcome = kroger::verify_kroger_password(conn, &stronger, 12, &password).unwrap();
            assert_eq!(
                outcome,
                Verification::Verified {
                    upgraded: false,
                    rehashed: true
                }
            );
            Err(migrator::Error::msg("roll back"))
        },
    );
    assert!(rolled_back.is_err());
    assert_eq!(
        hash_of(12),
        before,
        "rolled back with the caller's transaction"
    );
}

#[test]
fn a_row_changed_while_hashing_keeps_its_change_postgres() {
    a_row_changed_while_hashing_keeps_its_change(Backend::Postgres);
}

#[test]
fn a_row_changed_while_hashing_keeps_its_change_sqlite() {
    a_row_changed_while_hashing_keeps_its_change(Backend::Sqlite);
}
