//! Four runners at once through PgBouncer (issue 12, item 3): in transaction pooling mode the
//! migration lock's session advisory lock cannot hold, so without `MIGRATION_DATABASE_URL`
//! every runner refuses (exit 2, naming PgBouncer and `MIGRATION_DATABASE_URL`) before taking
//! it, and with `MIGRATION_DATABASE_URL` pointing at PostgreSQL directly the run is correct.
//! In session pooling mode nothing special is needed. Every wait is bounded.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg_password;
use common::pgbouncer::{PgBouncer, PoolMode};
use common::users::{self, assert_all_hashed, assert_no_plaintext};
use common::{count, TestDb};
use migrator::connection::Backend;

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");
const ROWS: i64 = 400;
const RUNNERS: usize = 4;
/// The first key of migrator's advisory lock (ASCII "migr", see
/// migrator/src/records/lock/postgres.rs).
const LOCK_CLASS: i64 = 1_835_624_306;

/// `migrate_kroger_passwords up --yes` in production, through `url`.
fn runner(url: &str, migration_url: Option<&str>, out: &std::path::Path) -> Child {
    let stdout = std::fs::File::create(out.with_extension("out")).unwrap();
    let stderr = std::fs::File::create(out.with_extension("err")).unwrap();
    let mut cmd: Command = common::isolated(CLI);
    cmd.args(["up", "--yes"])
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "production")
        .env("ENABLE_PROD_MIGRATIONS", "true")
        .env("MIGRATION_BACKUP_BEFORE", "false")
        .env("MIGRATION_BATCH_SIZE", "16")
        .env("MIGRATION_WORKER_THREADS", "2")
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(migration_url) = migration_url {
        cmd.env("MIGRATION_DATABASE_URL", migration_url);
    }
    cmd.spawn().expect("run migrate_kroger_passwords")
}

/// Starts the runners at once and waits for all of them, at most `limit`; on timeout kills
/// them and fails. Returns (exit code, stdout, stderr) of each.
fn run_all(url: &str, migration_url: Option<&str>, limit: Duration) -> Vec<(i32, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..RUNNERS)
        .map(|i| dir.path().join(format!("runner{i}")))
        .collect();
    let mut children: Vec<Child> = paths
        .iter()
        .map(|path| runner(url, migration_url, path))
        .collect();
    let deadline = Instant::now() + limit;
    let mut codes = vec![None; RUNNERS];
    while codes.iter().any(Option::is_none) && Instant::now() < deadline {
        for (child, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                if let Some(status) = child.try_wait().unwrap() {
                    *code = Some(status.code().unwrap_or(-1));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let hung = codes.iter().filter(|c| c.is_none()).count();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let results: Vec<(i32, String, String)> = paths
        .iter()
        .zip(codes)
        .map(|(path, code)| {
            (
                code.unwrap_or(-1),
                std::fs::read_to_string(path.with_extension("out")).unwrap_or_default(),
                std::fs::read_to_string(path.with_extension("err")).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        hung, 0,
        "{hung} runner(s) still running after {limit:?}: {results:#?}"
    );
    for (_, out, err) in &results {
        for text in [out, err] {
            assert!(
                !text.contains(pg_password()),
                "a password was printed: {text}"
            );
            assert_no_plaintext(text, ROWS);
        }
    }
    results
}

/// Session advisory locks of migrator held anywhere on the test database.
fn migration_locks(t: &TestDb) -> i64 {
    count(
        &t.connect(),
        &format!(
            "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = CAST({} AS oid) \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            LOCK_CLASS
        ),
    )
}

/// The rows of 001 in `applied_migrations` (none when the table does not exist).
fn rows_of_001(t: &TestDb) -> i64 {
    let db = t.connect();
    if count(
        &db,
        "SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'applied_migrations'",
    ) == 0
    {
        return 0;
    }
    count(
        &db,
        "SELECT COUNT(*) AS n FROM applied_migrations \
         WHERE migration_name = '001_hash_kroger_passwords'",
    )
}

/// No server process complained about unlocking a lock it does not hold. (The cluster's log
/// is shared by the tests of this binary: only the refusing test asserts it, the others would
/// fail for its warnings.)
fn assert_no_foreign_unlock() {
    let log = common::cluster().log();
    assert!(
        !log.contains("you don't own a lock"),
        "an unlock landed on another server connection:\n{log}"
    );
}

/// Checks that 001 was applied once and every row hashed once.
fn assert_applied_once(t: &TestDb, results: &[(i32, String, String)]) {
    for (code, _, err) in results {
        assert_eq!(*code, 0, "a runner failed: {err}");
    }
    let db = t.connect();
    assert_eq!(rows_of_001(t), 1);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM applied_migrations \
             WHERE migration_name = '001_hash_kroger_passwords' AND status = 'success'"
        ),
        1
    );
    assert_all_hashed(&db, ROWS);
    users::assert_each_updated_once(&db, ROWS);
    assert_eq!(migration_locks(t), 0, "a lock outlived its runner");
}

#[test]
fn transaction_pooling_without_a_direct_url_refuses_clearly() {
    let t = TestDb::new(Backend::Postgres);
    users::seed(&t.connect(), Backend::Postgres, ROWS);
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let results = run_all(&bouncer.url(&t.url), None, Duration::from_secs(30));
    for (code, _, err) in &results {
        assert_eq!(*code, 2, "expected a configuration error (exit 2): {err}");
        for needle in ["PgBouncer", "transaction pooling", "MIGRATION_DATABASE_URL"] {
            assert!(err.contains(needle), "the message names {needle}: {err}");
        }
    }
    // Nothing applied, nothing written, and no lock left on a pooled server connection.
    assert_eq!(rows_of_001(&t), 0);
    let db = t.connect();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM information_schema.columns \
             WHERE table_name = 'user_profiles' AND column_name = 'kroger_password_hash'"
        ),
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM update_log"), 0);
    assert_eq!(
        migration_locks(&t),
        0,
        "a lock was left on a server connection"
    );
    assert_no_foreign_unlock();
    drop(bouncer);
}

#[test]
fn transaction_pooling_with_a_direct_migration_url_migrates_once() {
    let t = TestDb::new(Backend::Postgres);
    users::seed(&t.connect(), Backend::Postgres, ROWS);
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let results = run_all(&bouncer.url(&t.url), Some(&t.url), Duration::from_secs(180));
    assert_applied_once(&t, &results);
    let said = results
        .iter()
        .filter(|(_, _, err)| err.contains("Migrations run through MIGRATION_DATABASE_URL"))
        .count();
    assert_eq!(
        said, RUNNERS,
        "each runner says where it migrates: {results:#?}"
    );
    drop(bouncer);
}

#[test]
fn session_pooling_needs_no_direct_url() {
    let t = TestDb::new(Backend::Postgres);
    users::seed(&t.connect(), Backend::Postgres, ROWS);
    let bouncer = PgBouncer::start(PoolMode::Session);
    let results = run_all(&bouncer.url(&t.url), None, Duration::from_secs(180));
    assert_applied_once(&t, &results);
    drop(bouncer);
}
