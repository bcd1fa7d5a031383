//! The `migrate_kroger_passwords` command as a child process, with cheap Argon2 parameters, and
//! a database whose migration 001 handed its backfill to the workers.

use std::process::{Command, Stdio};

use migrator::{connection::Backend, Database};

use super::{count, users, TestDb};

/// The command under test.
pub const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

/// `migrate_kroger_passwords ARGS` on `url` with cheap Argon2 and nothing else of the policy
/// (the parent's policy variables removed); stdout and stderr piped. Callers add their
/// variables, then their test's.
pub fn command(url: &str, args: &[&str]) -> Command {
    let mut cmd = super::isolated(CLI);
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// [`command`] in development, logging at info, `env` on top.
pub fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = command(url, args);
    cmd.env("ENVIRONMENT", "development")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// Runs it: exit code, stdout, stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run migrate_kroger_passwords");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows with a hash.
pub fn hashed(db: &Database) -> i64 {
    count(
        db,
        "SELECT COUNT(kroger_password_hash) AS n FROM user_profiles",
    )
}

/// A database with `rows` users on which `up` ran with `MIGRATION_BACKFILL=background`: 001's
/// backfill is scheduled, nothing is hashed yet.
pub fn scheduled(backend: Backend, rows: i64) -> (TestDb, Database) {
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, rows);
    let (code, _, err) = run(&mut cli(
        &t.url,
        &["up"],
        &[("MIGRATION_BACKFILL", "background")],
    ));
    assert_eq!(code, 0, "up: {err}");
    (t, db)
}
