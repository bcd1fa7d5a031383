//! Many runners at once: 8 threads of one process, and 4 OS processes, each apply every
//! migration exactly once (counted by side effects in the database); a runner killed with
//! SIGKILL inside a non-transactional migration leaves a `running` row that the next run resumes.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{count, TestDb};
use migrator::{
    config::Environment, connection::Backend, report::Outcome, report::Status, Config, Migrator,
};
use migrator_tests::fixtures;

use crate::RUNNER;

fn assert_each_applied_once(t: &TestDb) {
    let db = t.connect();
    for id in fixtures::IDS {
        let n = count(
            &db,
            &format!("SELECT COUNT(*) AS n FROM run_effects WHERE migration = '{id}'"),
        );
        assert_eq!(n, 1, "{id} ran {n} times");
    }
    let status = Migrator::from_registry().unwrap().status(&db).unwrap();
    for m in status.migrations {
        let row = m.row.unwrap();
        assert_eq!((row.status, row.attempts), (Status::Success, 1), "{}", m.id);
    }
}

fn eight_threads(backend: Backend) {
    let t = Arc::new(TestDb::new(backend));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (t, barrier) = (Arc::clone(&t), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let db = t.connect();
                let mut config = Config::new(Environment::Development);
                config.set_lock_timeout(Duration::from_secs(120));
                let migrator = Migrator::from_registry().unwrap();
                barrier.wait();
                let report = migrator.run(&db, &config).unwrap();
                report.applied().count()
            })
        })
        .collect();
    let applied: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        applied,
        fixtures::IDS.len(),
        "each migration applied by one thread"
    );
    assert_each_applied_once(&t);
}

#[test]
fn eight_threads_postgres() {
    eight_threads(Backend::Postgres);
}

#[test]
fn eight_threads_sqlite() {
    eight_threads(Backend::Sqlite);
}

fn four_processes(backend: Backend) {
    let t = TestDb::new(backend);
    let applied = crate::runners_at_once([t.url.as_str(); 4]);
    assert_eq!(
        applied,
        fixtures::IDS,
        "each migration applied by one process"
    );
    assert_each_applied_once(&t);
}

#[test]
fn four_processes_postgres() {
    four_processes(Backend::Postgres);
}

#[test]
fn four_processes_sqlite() {
    four_processes(Backend::Sqlite);
}

fn killed_mid_migration(backend: Backend) {
    let t = TestDb::new(backend);
    let mut child = Command::new(RUNNER)
        .env("DATABASE_URL", &t.url)
        .env(fixtures::HANG_VAR, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start migrator-test-runner");
    let db = t.connect();
    // Wait (bounded) until it is inside 004, holding the lock.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The table appears with 001: until then the query fails.
        if common::try_count(&db, "SELECT COUNT(*) AS n FROM hang_marker").unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the runner never reached 004");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no destructor, no unlock, no failed row.
    child.kill().unwrap();
    child.wait().unwrap();

    let migrator = Migrator::from_registry().unwrap();
    let status = migrator.status(&db).unwrap();
    let row = status.migrations[3].row.clone().unwrap();
    assert_eq!(row.status, Status::Running);
    assert!(status.migrations[3].pending);

    // The lock died with the process: a runner that will not wait gets it at once.
    let mut config = Config::new(Environment::Development);
    config.set_lock_timeout(Duration::ZERO);
    let report = migrator.run(&db, &config).unwrap();
    let outcomes: Vec<Outcome> = report.migrations.iter().map(|m| m.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            Outcome::Applied
        ]
    );
    let row = migrator.status(&db).unwrap().migrations[3]
        .row
        .clone()
        .unwrap();
    assert_eq!((row.status, row.attempts), (Status::Success, 2));
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM run_effects WHERE migration = '004_slow_nontx'"
        ),
        1
    );
}

#[test]
fn killed_mid_migration_postgres() {
    killed_mid_migration(Backend::Postgres);
}

#[test]
fn killed_mid_migration_sqlite() {
    killed_mid_migration(Backend::Sqlite);
}
