//! The demo app with background backfills on real PostgreSQL: start-up with 20,000 pending rows
//! is `ok` in under 3 s with the backfill listed; the workers of three app processes finish
//! it, one of them killed with SIGKILL mid-backfill; each row is hashed once.

use crate::common;

use std::time::{Duration, Instant};

use common::kroger_cli::hashed;
use common::server::{start, Server};
use common::users::{self, assert_all_hashed, assert_each_updated_once};
use common::TestDb;
use migrator::connection::Backend;

const BACKFILL: &str = "hash_kroger_passwords";

fn app(dir: &std::path::Path, url: &str) -> Server {
    start(
        dir,
        &[
            ("DATABASE_URL", url),
            ("ENVIRONMENT", "staging"),
            ("MIGRATION_BACKFILL", "background"),
            ("MIGRATION_BACKFILL_THREADS", "1"),
            ("ARGON2_MEMORY_KIB", "512"),
        ],
    )
}

#[test]
fn three_apps_share_the_backfill_and_survive_a_sigkill() {
    const ROWS: i64 = 20_000;
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let dir = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let mut a = app(dir.path(), &t.url);
    let (health, _) = a.wait_for("ok");
    let took = started.elapsed();
    // The bound: start-up does the DDL, not the hashing.
    assert!(
        took < Duration::from_secs(3),
        "ok after {took:?}:\n{}",
        a.log()
    );
    let health = health.json();
    let listed = &health["backfills"][0];
    assert_eq!(listed["name"], BACKFILL, "{health}");
    assert_eq!(listed["status"], "active", "{health}");

    let mut b = app(dir.path(), &t.url);
    let mut c = app(dir.path(), &t.url);
    b.wait_for("ok");
    c.wait_for("ok");
    let deadline = Instant::now() + Duration::from_secs(120);
    while hashed(&db) < 2_000 {
        assert!(Instant::now() < deadline, "the workers never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL a whole app mid-backfill: its batch in flight rolls back, the others take it.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let at_kill = hashed(&db);
    assert!(
        at_kill < ROWS - 1_000,
        "killed too late to matter: {at_kill}"
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let health = a.wait_for("ok").0.json();
        if health["backfills"][0]["status"] == "finished" {
            let done = &health["backfills"][0];
            assert_eq!(done["rows_done"], done["rows_total"], "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "not finished: {health}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_all_hashed(&db, ROWS);
    assert_each_updated_once(&db, ROWS);
    for server in [a, c] {
        let log = server.log.clone();
        assert_eq!(server.terminate(), 0);
        users::assert_no_plaintext(&std::fs::read_to_string(log).unwrap(), ROWS);
    }
}
