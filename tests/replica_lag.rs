//! Replica lag, measured on a real streaming standby of the test cluster (`pg_basebackup -R`,
//! tests/support/src/standby.rs): about zero when it has caught up; bytes and seconds that grow
//! while its replay is paused (`pg_wal_replay_pause()`); `over_limit` names it;
//! `wait_for_replicas` holds while it is behind, says why in the log, and lets go after
//! `pg_wal_replay_resume()` (the background workers holding their batches meanwhile are the
//! app's test, examples/tests/replica_lag_workers.rs). A role without `pg_monitor` gets a
//! warning, not an error. The limits' variables are parsed strictly.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::standby::Standby;
use common::{exec, logs, pg_password, role_database, TestDb};
use migrator::backfill::{over_limit, replica_lag, wait_for_replicas, LagLimits};
use migrator::{connection::Backend, Config, Database};

const MIB: u64 = 1024 * 1024;

/// Runs `wait_for_replicas` on a thread of its own; returns how long it held and what it logged.
fn waiting(
    db: &Database,
    limits: LagLimits,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(migrator::Result<Duration>, Vec<String>)> {
    let db = db.clone();
    std::thread::spawn(move || {
        let mut conn = db.get().expect("pooled connection");
        let held = wait_for_replicas(&mut conn, &limits, &|| stop.load(Ordering::Relaxed));
        (held, logs::take())
    })
}

fn join_within<T>(handle: JoinHandle<T>, limit: Duration, what: &str) -> T {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < limit,
            "{what}: still waiting after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.join().expect("the waiting thread panicked")
}

#[test]
fn a_standby_with_replay_paused_is_measured_and_holds_the_wait() {
    logs::init();
    let standby = Standby::start();
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let mut conn = db.get().expect("pooled connection");

    // Caught up: about nothing behind, under the default limits, no hold.
    standby.wait_caught_up();
    let caught_up = standby
        .lag(&mut conn)
        .expect("the standby in pg_stat_replication");
    assert!(caught_up.bytes < MIB, "{caught_up:?}");
    assert!(caught_up.seconds.unwrap_or(0.0) < 5.0, "{caught_up:?}");
    let defaults = LagLimits::from_config(&Config::new(migrator::config::Environment::Production));
    assert_eq!(over_limit(&[caught_up], &defaults), None);
    let held = wait_for_replicas(&mut conn, &defaults, &|| false).expect("wait");
    assert_eq!(held, Duration::ZERO);

    // Replay paused, then ~5 MB of WAL written: the standby receives it and applies none.
    standby.pause_replay();
    exec(
        &t.connect(),
        "CREATE TABLE filler (id bigserial PRIMARY KEY, v text);
         INSERT INTO filler (v) SELECT md5(g::text) FROM generate_series(1, 50000) g;",
    );
    std::thread::sleep(Duration::from_secs(2));
    let behind = standby
        .lag(&mut conn)
        .expect("the standby in pg_stat_replication");
    assert!(behind.bytes > MIB, "{behind:?}");
    // PostgreSQL's replay_lag stays at its last report while replay is stuck; the measured
    // seconds still grow with the time it has been stuck (2 s here).
    let seconds = behind.seconds.expect("seconds while behind");
    assert!(seconds >= 1.5, "{behind:?}");

    let by_bytes = LagLimits {
        max_seconds: 3600.0,
        max_bytes: MIB,
    };
    let by_seconds = LagLimits {
        max_seconds: 1.0,
        max_bytes: u64::MAX,
    };
    let lags = replica_lag(&mut conn).expect("replica_lag");
    for limits in [by_bytes, by_seconds] {
        let worst = over_limit(&lags, &limits).expect("a replica over the limits");
        assert_eq!(worst.name, standby.name, "{limits:?}");
    }
    // A standby named in MIGRATION_REPLICA_LAG_EXCLUDE (e.g. a delayed one) never counts;
    // naming it in _INCLUDE changes nothing for a physical standby, which counts anyway.
    let excluded =
        migrator::backfill::replica_lag_for(&mut conn, &[], std::slice::from_ref(&standby.name))
            .expect("replica_lag_for");
    assert!(
        excluded.iter().all(|lag| lag.name != standby.name),
        "{excluded:?}"
    );
    let included =
        migrator::backfill::replica_lag_for(&mut conn, std::slice::from_ref(&standby.name), &[])
            .expect("replica_lag_for");
    assert!(
        included.iter().any(|lag| lag.name == standby.name),
        "{included:?}"
    );

    // should_stop ends the wait early, replay still paused.
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = waiting(&db, by_bytes, stop.clone());
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !stopped.is_finished(),
        "the wait returned while the standby was behind"
    );
    stop.store(true, Ordering::Relaxed);
    let (held, _) = join_within(stopped, Duration::from_secs(5), "wait after should_stop");
    assert!(held.expect("wait") >= Duration::from_secs(1));

    // Holds while paused, with a log line naming the standby and the limits; goes on after
    // resume.
    let holding = waiting(&db, by_bytes, Arc::new(AtomicBool::new(false)));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !holding.is_finished(),
        "wait_for_replicas returned while the standby's replay was paused"
    );
    standby.resume_replay();
    let (held, lines) = join_within(holding, Duration::from_secs(60), "wait after resume");
    let held = held.expect("wait");
    assert!(held >= Duration::from_secs(2), "held {held:?}");
    let log = lines.join("\n");
    let why = format!("WARN Backfill held: replica {} is ", standby.name);
    assert!(log.contains(&why), "{log}");
    assert!(log.contains("behind (limits 1 MB / 3600 s)"), "{log}");
    assert!(log.contains("INFO Backfill resumed"), "{log}");
    assert!(!log.contains(pg_password()), "{log}");

    standby.wait_caught_up();
    let after = standby
        .lag(&mut conn)
        .expect("the standby in pg_stat_replication");
    assert_eq!(over_limit(&[after], &by_bytes), None);
}

#[test]
fn a_role_without_pg_monitor_gets_a_warning_not_an_error() {
    logs::init();
    let standby = Standby::start();
    let role = role_database();
    let as_role = Database::connect(&role.url).expect("connect as the role");
    let mut conn = as_role.get().expect("pooled connection");
    logs::take();

    for _ in 0..2 {
        let lags = replica_lag(&mut conn).expect("replica_lag without pg_monitor");
        assert!(lags.iter().all(|lag| lag.name != standby.name), "{lags:?}");
    }
    let held = wait_for_replicas(
        &mut conn,
        &LagLimits {
            max_seconds: 0.0,
            max_bytes: 0,
        },
        &|| false,
    )
    .expect("wait without pg_monitor");
    assert_eq!(held, Duration::ZERO);
    let lines = logs::take();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("WARN Replica lag unknown"))
        .collect();
    assert_eq!(warnings.len(), 1, "warned once: {lines:#?}");
    assert!(warnings[0].contains("grant it pg_monitor"), "{lines:#?}");
    assert!(!lines.join("\n").contains(pg_password()));

    // With pg_monitor the same role sees the standby.
    exec(
        &Database::connect(&role.admin_url).expect("connect as the superuser"),
        &format!("GRANT pg_monitor TO {}", role.role),
    );
    let mut fresh = Database::connect(&role.url)
        .and_then(|db| db.dedicated_connection())
        .expect("a new session of the role");
    assert!(standby.lag(&mut fresh).is_some());
}

#[test]
fn sqlite_has_no_replicas() {
    let t = TestDb::new(Backend::Sqlite);
    let mut conn = t.connect().get().expect("pooled connection");
    assert!(replica_lag(&mut conn).expect("replica_lag").is_empty());
    let zero = LagLimits {
        max_seconds: 0.0,
        max_bytes: 0,
    };
    assert_eq!(
        wait_for_replicas(&mut conn, &zero, &|| false).expect("wait"),
        Duration::ZERO
    );
}

fn config(vars: &[(&str, &str)]) -> migrator::Result<Config> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn the_lag_limits_are_parsed_strictly() {
    let defaults = config(&[("ENVIRONMENT", "production")]).expect("defaults");
    assert_eq!(defaults.max_replica_lag_time(), Duration::from_secs(30));
    assert_eq!(
        defaults.max_replica_lag_time(),
        migrator::config::DEFAULT_MAX_REPLICA_LAG_TIME
    );
    assert_eq!(defaults.max_replica_lag_mb(), 256);
    assert_eq!(
        LagLimits::from_config(&defaults),
        LagLimits {
            max_seconds: 30.0,
            max_bytes: 256 * MIB,
        }
    );

    let mut set = config(&[
        ("ENVIRONMENT", "production"),
        ("MIGRATION_MAX_REPLICA_LAG_SECS", " 5 "),
        ("MIGRATION_MAX_REPLICA_LAG_MB", "0"),
    ])
    .expect("set");
    assert_eq!(set.max_replica_lag_time(), Duration::from_secs(5));
    assert_eq!(set.max_replica_lag_mb(), 0);
    set.set_max_replica_lag_time(Duration::from_millis(1500))
        .set_max_replica_lag_mb(64);
    assert_eq!(
        LagLimits::from_config(&set),
        LagLimits {
            max_seconds: 1.5,
            max_bytes: 64 * MIB,
        }
    );

    for (variable, bad, expected) in [
        (
            "MIGRATION_MAX_REPLICA_LAG_SECS",
            "-1",
            "whole number of seconds",
        ),
        (
            "MIGRATION_MAX_REPLICA_LAG_SECS",
            "30s",
            "whole number of seconds",
        ),
        (
            "MIGRATION_MAX_REPLICA_LAG_MB",
            "1.5",
            "whole number of megabytes",
        ),
        (
            "MIGRATION_MAX_REPLICA_LAG_MB",
            "256MB",
            "whole number of megabytes",
        ),
    ] {
        let err = config(&[("ENVIRONMENT", "production"), (variable, bad)]).unwrap_err();
        assert!(err.is_configuration(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(variable) && message.contains(expected),
            "{message}"
        );
    }
    for variable in [
        "MIGRATION_MAX_REPLICA_LAG_SECS",
        "MIGRATION_MAX_REPLICA_LAG_MB",
    ] {
        assert!(
            migrator::config::vars::ALL.contains(&variable),
            "{variable}"
        );
    }
}
