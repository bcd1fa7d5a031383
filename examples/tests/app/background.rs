//! Background backfills through the `migrate_kroger_passwords` command on real PostgreSQL and
//! SQLite: `up` hands 001's hashing to the workers at once (`MIGRATION_BACKFILL=background`) or
//! after its inline budget (`auto`); `work` processes share it and each row is hashed once;
//! pause, resume and cancel reach every worker process; a killed worker loses and doubles
//! nothing; progress is counted in each batch's own transaction.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kroger_cli::{cli, hashed, run, scheduled};
use common::users::{self, assert_all_hashed, assert_each_updated_once, assert_no_plaintext};
use common::{count, TestDb};
use migrator::connection::Backend;
use migrator::password::{Params, Password};
use serde_json::Value;
use smart_meal_planner::kroger::{self, Verification};

const NAME: &str = "hash_kroger_passwords";

/// The backfill's object in `backfills --json`.
fn state(url: &str) -> Value {
    let (code, out, err) = run(&mut cli(url, &["backfills", "--json"], &[]));
    assert_eq!(code, 0, "backfills --json: {err}");
    let all: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    all.as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == NAME))
        .cloned()
        .unwrap_or_else(|| panic!("no {NAME} in {out}"))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `work` processes, one per `(name, threads)`, on `url` with `env`.
fn spawn_workers(
    url: &str,
    threads: &[(&'static str, &str)],
    env: &[(&str, &str)],
) -> Vec<(&'static str, Child)> {
    threads
        .iter()
        .map(|&(name, n)| {
            (
                name,
                cli(url, &["work", "--threads", n], env).spawn().unwrap(),
            )
        })
        .collect()
}

fn finish(children: Vec<(&'static str, Child)>, rows: i64) -> u64 {
    let mut written = 0;
    for (name, child) in children {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert_no_plaintext(&stdout, rows);
        assert_no_plaintext(&stderr, rows);
        if let Some(n) = stdout.trim().strip_prefix("rows written by this process: ") {
            written += n.parse::<u64>().unwrap();
        }
    }
    written
}

fn background_then_three_workers(backend: Backend) {
    const ROWS: i64 = 3_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let pending = count(&db, "SELECT COUNT(kroger_password) AS n FROM user_profiles");
    let (code, _, err) = run(&mut cli(
        &t.url,
        &["up"],
        &[("MIGRATION_BACKFILL", "background")],
    ));
    assert_eq!(code, 0, "{err}");
    assert_no_plaintext(&err, ROWS);
    assert!(
        err.contains("Backfill hash_kroger_passwords scheduled"),
        "{err}"
    );
    assert_eq!(hashed(&db), 0, "background: up hashes nothing itself");
    let scheduled = state(&t.url);
    assert_eq!(scheduled["status"], "active");
    assert_eq!(scheduled["rows_total"], pending);
    assert_eq!(scheduled["rows_done"], 0);
    assert_eq!(scheduled["migration"], "001_hash_kroger_passwords");
    // The migration itself is done.
    let (_, status, _) = run(&mut cli(&t.url, &["status", "--json"], &[]));
    assert!(status.contains("\"success\""), "{status}");
    let workers = [
        ("MIGRATION_BATCH_SIZE", "16"),
        ("ARGON2_MEMORY_KIB", "1024"),
    ];
    let children = spawn_workers(
        &t.url,
        &[("work-a", "2"), ("work-b", "1"), ("work-c", "1")],
        &workers,
    );
    let written = finish(children, ROWS);
    assert_eq!(
        written as i64, pending,
        "the workers wrote every row once between them"
    );
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
    let done = state(&t.url);
    assert_eq!(done["status"], "finished");
    assert_eq!(
        done["rows_done"], pending,
        "rows_done counts committed batches only"
    );
    assert!(done["finished_at"].is_string());
}

#[test]
fn background_then_three_workers_postgres() {
    background_then_three_workers(Backend::Postgres);
}

#[test]
fn background_then_three_workers_sqlite() {
    background_then_three_workers(Backend::Sqlite);
}

fn auto_mode(backend: Backend) {
    // Small: done inline, as before.
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, 200);
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &[]));
    assert_eq!(code, 0, "{err}");
    assert_all_hashed(&db, 200);
    assert_eq!(state(&t.url)["status"], "finished");

    // Large for a 1 s budget: handed off with rows done, finished by a worker.
    const ROWS: i64 = 3_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let slow = [
        ("MIGRATION_INLINE_BACKFILL_SECS", "1"),
        ("ARGON2_MEMORY_KIB", "4096"),
        ("MIGRATION_WORKER_THREADS", "1"),
        ("MIGRATION_BATCH_SIZE", "16"),
    ];
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &slow));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the rest goes to the background workers"),
        "{err}"
    );
    let handed = state(&t.url);
    assert_eq!(handed["status"], "active");
    let inline = handed["rows_done"].as_i64().unwrap();
    assert!(
        inline > 0 && inline < handed["rows_total"].as_i64().unwrap(),
        "{handed}"
    );
    assert_eq!(hashed(&db), inline, "rows_done is what was committed");
    let children = vec![("work", cli(&t.url, &["work"], &[]).spawn().unwrap())];
    finish(children, ROWS);
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
    assert_eq!(state(&t.url)["status"], "finished");
}

#[test]
fn auto_mode_postgres() {
    auto_mode(Backend::Postgres);
}

#[test]
fn auto_mode_sqlite() {
    auto_mode(Backend::Sqlite);
}

fn pause_resume_cancel(backend: Backend) {
    const ROWS: i64 = 3_000;
    let (t, db) = scheduled(backend, ROWS);
    let slow = [
        ("ARGON2_MEMORY_KIB", "2048"),
        ("MIGRATION_BATCH_SIZE", "8"),
        ("MIGRATION_BATCH_TARGET_MS", "100"),
    ];
    let start = || {
        spawn_workers(
            &t.url,
            &[("work-a", "1"), ("work-b", "1"), ("work-c", "1")],
            &slow,
        )
    };
    let children = start();
    wait_until("the workers to start", Duration::from_secs(60), || {
        hashed(&db) > 100
    });
    let (code, out, err) = run(&mut cli(&t.url, &["backfill", "pause", NAME], &[]));
    assert_eq!(
        (code, out.trim()),
        (0, "hash_kroger_passwords is paused"),
        "{err}"
    );
    // Every worker process sees it within a batch: they all stop (nothing active is left).
    finish(children, ROWS);
    let held = hashed(&db);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(hashed(&db), held, "paused: the hashed count holds still");
    assert!(held < ROWS - 10, "paused before the end: {held}");
    assert_eq!(state(&t.url)["status"], "paused");
    // Paused survives a restart: a new worker leaves it alone.
    let (code, out, _) = run(&mut cli(&t.url, &["work"], &[]));
    assert_eq!((code, out.trim()), (0, "rows written by this process: 0"));
    assert_eq!(hashed(&db), held);

    let (code, _, err) = run(&mut cli(&t.url, &["backfill", "resume", NAME], &[]));
    assert_eq!(code, 0, "{err}");
    let children = start();
    wait_until("resumed workers", Duration::from_secs(60), || {
        hashed(&db) > held + 50
    });
    let (code, _, err) = run(&mut cli(&t.url, &["backfill", "cancel", NAME], &[]));
    assert_eq!(code, 0, "{err}");
    finish(children, ROWS);
    let cancelled = hashed(&db);
    assert!(
        cancelled < ROWS - 10,
        "cancelled before the end: {cancelled}"
    );
    assert_eq!(state(&t.url)["status"], "cancelled");
    let (code, out, _) = run(&mut cli(&t.url, &["work"], &[]));
    assert_eq!((code, out.trim()), (0, "rows written by this process: 0"));
    assert_eq!(hashed(&db), cancelled, "cancelled for good");
    // A cancelled backfill cannot be resumed... by pause; and unknown names are errors (exit 2).
    let (code, _, err) = run(&mut cli(&t.url, &["backfill", "pause", NAME], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("it is cancelled and cannot be paused"),
        "{err}"
    );
    let (code, _, err) = run(&mut cli(&t.url, &["backfill", "pause", "nope"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("backfill nope: no such backfill was scheduled"),
        "{err}"
    );
    assert_each_updated_once_so_far(&db);
}

/// No row was updated twice (the count of updates is whatever was hashed).
fn assert_each_updated_once_so_far(db: &migrator::Database) {
    let (twice, all) = users::updates(db);
    assert_eq!(twice, 0);
    assert_eq!(all, hashed(db));
}

#[test]
fn pause_resume_cancel_postgres() {
    pause_resume_cancel(Backend::Postgres);
}

#[test]
fn pause_resume_cancel_sqlite() {
    pause_resume_cancel(Backend::Sqlite);
}

fn killed_worker(backend: Backend) {
    const ROWS: i64 = 3_000;
    let (t, db) = scheduled(backend, ROWS);
    let slow = [
        ("ARGON2_MEMORY_KIB", "2048"),
        ("MIGRATION_BATCH_SIZE", "16"),
    ];
    let mut victim = cli(&t.url, &["work", "--threads", "2"], &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the victim to start", Duration::from_secs(60), || {
        hashed(&db) > 50
    });
    let children = spawn_workers(&t.url, &[("work-b", "1"), ("work-c", "1")], &slow);
    std::thread::sleep(Duration::from_millis(300));
    victim.kill().unwrap(); // SIGKILL, mid-batch
    victim.wait().unwrap();
    finish(children, ROWS);
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
    let done = state(&t.url);
    assert_eq!(done["status"], "finished");
    assert_eq!(done["rows_done"].as_i64(), Some(hashed(&db)), "{done}");
}

#[test]
fn killed_worker_postgres() {
    killed_worker(Backend::Postgres);
}

#[test]
fn killed_worker_sqlite() {
    killed_worker(Backend::Sqlite);
}

fn twenty_thousand_rows_start_at_once(backend: Backend) {
    const ROWS: i64 = 20_000;
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let started = Instant::now();
    let (code, _, err) = run(&mut cli(
        &t.url,
        &["up"],
        &[("MIGRATION_BACKFILL", "background")],
    ));
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    // The bound for start-up, whatever the table size (the hashing is elsewhere).
    assert!(took < Duration::from_secs(3), "up took {took:?}");
    assert_eq!(hashed(&db), 0);
    let workers = [("MIGRATION_BATCH_SIZE", "64")];
    let children = spawn_workers(
        &t.url,
        &[("work-a", "1"), ("work-b", "1"), ("work-c", "1")],
        &workers,
    );
    // Meanwhile the app verifies users, hashed or not yet: always right.
    kroger::set_hash_params(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    let hasher = kroger::hasher().unwrap();
    let mut checked = 0;
    let expected: std::collections::HashMap<i64, Option<String>> =
        users::expected(ROWS).into_iter().collect();
    for id in (1..=ROWS).step_by(397) {
        let mut conn = db.get().unwrap();
        let right = expected[&id].clone();
        let wrong = Password::new("not-the-password");
        let got = kroger::verify_kroger_password(&mut conn, &hasher, id, &wrong).unwrap();
        match &right {
            None => assert_eq!(got, Verification::NoPassword, "user {id}"),
            Some(right) => {
                assert_eq!(got, Verification::Mismatch, "user {id}");
                let got = kroger::verify_kroger_password(
                    &mut conn,
                    &hasher,
                    id,
                    &Password::new(right.as_str()),
                )
                .unwrap();
                assert!(
                    matches!(got, Verification::Verified { .. }),
                    "user {id}: {got:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40);
    finish(children, ROWS);
    assert_eq!(state(&t.url)["status"], "finished");
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
}

#[test]
fn twenty_thousand_rows_start_at_once_postgres() {
    twenty_thousand_rows_start_at_once(Backend::Postgres);
}

#[test]
fn twenty_thousand_rows_start_at_once_sqlite() {
    twenty_thousand_rows_start_at_once(Backend::Sqlite);
}

fn sigterm_stops_work_cleanly(backend: Backend) {
    const ROWS: i64 = 3_000;
    let (t, db) = scheduled(backend, ROWS);
    let slow = [
        ("ARGON2_MEMORY_KIB", "2048"),
        ("MIGRATION_BATCH_SIZE", "16"),
    ];
    let child = cli(&t.url, &["work", "--threads", "2"], &slow)
        .spawn()
        .unwrap();
    wait_until("the worker to start", Duration::from_secs(60), || {
        hashed(&db) > 50
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // It finishes the batches in flight (commit, never half) and reports what it wrote.
    let written = finish(vec![("work", child)], ROWS);
    let stopped = hashed(&db);
    assert!(stopped < ROWS - 10, "stopped before the end: {stopped}");
    assert_eq!(written as i64, stopped, "every committed row is reported");
    let state = state(&t.url);
    assert_eq!(
        state["status"], "active",
        "a stopped worker does not pause the backfill"
    );
    assert_eq!(state["rows_done"].as_i64(), Some(stopped));
    assert!(
        state["workers"].as_array().is_some_and(Vec::is_empty),
        "a clean stop removes the worker's row: {state}"
    );
}

#[test]
fn sigterm_stops_work_cleanly_postgres() {
    sigterm_stops_work_cleanly(Backend::Postgres);
}

#[test]
fn sigterm_stops_work_cleanly_sqlite() {
    sigterm_stops_work_cleanly(Backend::Sqlite);
}
