//! `wait`, the init-container command: ready once someone else has applied every migration,
//! exit 1 after `MIGRATION_LOCK_TIMEOUT_SECS` otherwise; never applies anything itself.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pending, users, TestDb};
use migrator::connection::Backend;
// Links migration 001 into this binary, so that `pending` sees it.
use smart_meal_planner as _;

fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::kroger_cli::command(url, args);
    cmd.env("ENVIRONMENT", "production")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn wait_times_out_then_succeeds_after_a_job(backend: Backend) {
    let t = TestDb::new(backend);
    users::seed(&t.connect(), backend, 20);

    // Nobody migrates: exit 1 after the timeout, naming what is pending, nothing applied.
    let out = cli(&t.url, &["wait"], &[("MIGRATION_LOCK_TIMEOUT_SECS", "2")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("001_hash_kroger_passwords"), "{err}");
    assert!(err.contains("MIGRATION_LOCK_TIMEOUT_SECS"), "{err}");
    assert_eq!(pending(&t), 1);

    // A waiter started first becomes ready once a Job has run `up --yes`.
    let waiter = cli(&t.url, &["wait"], &[("MIGRATION_LOCK_TIMEOUT_SECS", "120")])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let job = cli(
        &t.url,
        &["up", "--yes"],
        &[
            ("ENABLE_PROD_MIGRATIONS", "true"),
            ("MIGRATION_BACKUP_BEFORE", "false"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        job.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&job.stderr)
    );
    let started = Instant::now();
    let out = waiter.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("ready"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the waiter noticed within its poll interval"
    );

    // Nothing pending: ready at once.
    let out = cli(&t.url, &["wait"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}
both!(wait_times_out_then_succeeds_after_a_job);

#[test]
fn wait_refuses_a_bad_configuration() {
    let t = TestDb::new(Backend::Sqlite);
    let out = cli(
        &t.url,
        &["wait"],
        &[("MIGRATION_LOCK_TIMEOUT_SECS", "soon")],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MIGRATION_LOCK_TIMEOUT_SECS"), "{err}");
}
