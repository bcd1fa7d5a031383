//! The `migrate_kroger_passwords` command as a child process, with cheap Argon2 parameters, and
//! a database whose migration 001 handed its backfill to the workers.

use std::process::{Command, Stdio};

use migrator::{Backend, Database};

use super::{count, users, TestDb};

/// `migrate_kroger_passwords ARGS` (`program`, the test package's build of it) on `url` in
/// development, cheap Argon2, `env` on top; stdout and stderr piped.
pub fn command(program: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = super::isolated(program);
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "development")
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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

/// A database with `rows` users on which `program up` ran with `MIGRATION_BACKFILL=background`:
/// 001's backfill is scheduled, nothing is hashed yet.
pub fn scheduled_with(program: &str, backend: Backend, rows: i64) -> (TestDb, Database) {
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, rows);
    let (code, _, err) = run(&mut command(
        program,
        &t.url,
        &["up"],
        &[("MIGRATION_BACKFILL", "background")],
    ));
    assert_eq!(code, 0, "up: {err}");
    (t, db)
}
