//! Edges of the operator commands: `work` with a lock timeout too large to add to the clock,
//! the production refusal of `mark` (its message as written), and backups taken within one
//! second (none replaces another).

use crate::common;

use std::process::{Command, Stdio};

use common::users::{self, assert_all_hashed};
use common::{exec, TestDb};
use migrator::{config::Environment, connection::Backend, Config, Migrator};

fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::kroger_cli::command(url, args);
    cmd.env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

#[test]
fn work_accepts_the_largest_lock_timeout() {
    const ROWS: i64 = 20;
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    users::seed(&db, Backend::Sqlite, ROWS);
    // 001 hands its backfill to the workers; `work` with a timeout too large for the clock.
    let out = cli(
        &t.url,
        &["up"],
        &[
            ("ENVIRONMENT", "development"),
            ("MIGRATION_BACKFILL", "background"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &t.url,
        &["work"],
        &[
            ("ENVIRONMENT", "development"),
            ("MIGRATION_LOCK_TIMEOUT_SECS", &u64::MAX.to_string()),
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "rows written by this process: 19");
    assert_all_hashed(&db, ROWS);
}

#[test]
fn the_production_refusal_of_mark_reads_as_written() {
    let t = TestDb::new(Backend::Sqlite);
    let out = cli(
        &t.url,
        &["mark", "001_hash_kroger_passwords", "success"],
        &[("ENVIRONMENT", "production")],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "error: refused by policy: marking a migration in production needs confirmation: \
             answer y at the prompt, or pass --yes\n"
        ),
        "{stderr:?}"
    );
}

#[test]
fn backups_within_one_second_never_replace_each_other() {
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    exec(
        &db,
        "CREATE TABLE kept (x INTEGER); INSERT INTO kept VALUES (1);",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(Environment::Development);
    config.set_backup_dir(dir.path());
    let migrator = Migrator::from_migrations([]).unwrap();
    // Until two land in one second (a few milliseconds apart, that is at once).
    let mut paths = Vec::new();
    while paths.len() < 10
        && !paths
            .iter()
            .any(|p: &std::path::PathBuf| p.to_string_lossy().ends_with("-manual-2.sqlite3"))
    {
        paths.push(migrator.backup(&db, &config).unwrap().path);
    }
    let mut distinct = paths.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), paths.len(), "a name was reused: {paths:?}");
    assert!(
        paths
            .iter()
            .any(|p| p.to_string_lossy().ends_with("-manual-2.sqlite3")),
        "the second backup of a second gets -2: {paths:?}"
    );
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        files,
        paths.len(),
        "every backup is kept, nothing else is left"
    );
    for path in &paths {
        assert!(
            std::fs::metadata(path).unwrap().len() > 0,
            "{}",
            path.display()
        );
    }
}
