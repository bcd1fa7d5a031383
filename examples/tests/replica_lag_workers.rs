//! Background workers (`migrate_kroger_passwords work`) hold their batches while a real
//! streaming standby of the test cluster is behind (its replay paused), say why, and finish
//! after `pg_wal_replay_resume()`, each row hashed once and no plaintext logged. Alone: a standby
//! with replay paused holds back every backfill on its cluster. (The library's measurement of
//! replica lag and `wait_for_replicas` are migrator-tests' `replica_lag`.)

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::kroger_cli::{cli, hashed};
use common::standby::Standby;
use common::users::{self, assert_all_hashed, assert_no_plaintext};
use common::{count, exec, logs, pg_password, TestDb};
use migrator::connection::Backend;

const MIB: u64 = 1024 * 1024;

#[test]
fn background_workers_hold_while_a_standby_is_behind() {
    const ROWS: i64 = 200;
    logs::init();
    let standby = Standby::start();
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let up = cli(&t.url, &["up"], &[("MIGRATION_BACKFILL", "background")])
        .output()
        .expect("run up");
    let err = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(0), "{err}");
    assert_eq!(hashed(&db), 0, "background: up hashes nothing itself");

    // ~5 MB of WAL the standby receives and does not replay.
    standby.pause_replay();
    exec(
        &db,
        "CREATE TABLE filler (id bigserial PRIMARY KEY, v text);
         INSERT INTO filler (v) SELECT md5(g::text) FROM generate_series(1, 50000) g;",
    );
    let mut conn = db.get().expect("pooled connection");
    let behind = standby
        .lag(&mut conn)
        .expect("the standby in pg_stat_replication");
    assert!(behind.bytes > MIB, "{behind:?}");

    let mut work = cli(
        &t.url,
        &["work", "--threads", "2"],
        &[
            ("MIGRATION_MAX_REPLICA_LAG_MB", "1"),
            ("MIGRATION_BATCH_SIZE", "16"),
        ],
    )
    .spawn()
    .expect("start work");
    let mut stderr = work.stderr.take().expect("work's stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_secs(3));
    let still = work.try_wait().expect("work's status");
    assert!(
        still.is_none(),
        "work ended while the standby was behind: {still:?}"
    );
    assert_eq!(
        hashed(&db),
        0,
        "the workers hashed rows while the standby was behind"
    );
    assert_eq!(
        count(
            &db,
            "SELECT CAST(rows_done AS BIGINT) AS n FROM migrator_backfills \
             WHERE name = 'hash_kroger_passwords'"
        ),
        0
    );

    standby.resume_replay();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = work.try_wait().expect("work's status") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = work.kill();
            panic!("work did not finish within 120 s of resume");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = reader.join().expect("stderr reader");
    assert!(status.success(), "work: {status:?}\n{err}");
    let why = format!("Backfill held: replica {} is ", standby.name);
    assert!(err.contains(&why), "{err}");
    assert!(err.contains("behind (limits 1 MB / 30 s)"), "{err}");
    assert!(err.contains("Backfill resumed"), "{err}");
    assert!(!err.contains(pg_password()), "{err}");
    assert_no_plaintext(&err, ROWS);
    assert_all_hashed(&db, ROWS);
}
