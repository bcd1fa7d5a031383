//! The demo server's guards: `/health` stays responsive while Argon2 verifications saturate the
//! cores; anonymous clients get no raw database error; and a database named by `DATABASE_URL`
//! needs an explicit `ENVIRONMENT` and is never seeded with demo users.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http;
use common::server::start;
use common::users;
use common::{cluster, count, exec, TestDb};
use migrator::password::Params;
use migrator::{config::Environment, connection::Backend, Config, Migrator};
use smart_meal_planner::kroger;

/// What `/health` and `/check-db-connection` say when the database is unavailable.
const DATABASE_UNAVAILABLE: &str = "the database is unavailable (details in the server log)";

/// The worst case: m=64 MiB, t=3, p=4.
const HEAVY: [(&str, &str); 3] = [
    ("ARGON2_MEMORY_KIB", "65536"),
    ("ARGON2_ITERATIONS", "3"),
    ("ARGON2_PARALLELISM", "4"),
];

/// One `/health` probe: how long it took and what it answered.
struct Probe {
    took: Duration,
    answer: Option<(u16, String)>,
    /// Verifications were in flight when it was sent and when it was answered.
    under_load: bool,
}

#[test]
fn health_answers_within_a_second_during_50_verifications() {
    const VERIFICATIONS: usize = 50;
    // Users 1 to 10 hashed at the heavy parameters, then their plaintexts cleared: every
    // verification runs Argon2 on the hash.
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    users::seed(&db, Backend::Sqlite, 10);
    kroger::set_hash_params(Params {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 4,
    });
    Migrator::from_registry()
        .unwrap()
        .run(&db, &Config::new(Environment::Development))
        .unwrap();
    exec(&db, "UPDATE user_profiles SET kroger_password = NULL");
    drop(db);
    let passwords: Vec<(i64, String)> = users::expected(10)
        .into_iter()
        .filter_map(|(id, p)| p.map(|p| (id, p)))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("DATABASE_URL", t.url.as_str()),
        ("ENVIRONMENT", "development"),
    ];
    env.extend(HEAVY);
    let mut server = start(dir.path(), &env);
    server.wait_for("ok");
    let port = server.port;

    let in_flight = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let probed = AtomicBool::new(false);
    let (answers, probes) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut probes = Vec::new();
            // Bounded: the verifications end (or time out) within minutes.
            while !done.load(Ordering::SeqCst) && probes.len() < 10_000 {
                let loaded = in_flight.load(Ordering::SeqCst) > 0;
                let sent = Instant::now();
                let answer =
                    http::request_within(port, "GET", "/health", None, "", Duration::from_secs(30))
                        .map(|r| {
                            (
                                r.status,
                                r.json()["status"].as_str().unwrap_or("").to_owned(),
                            )
                        });
                probes.push(Probe {
                    took: sent.elapsed(),
                    answer,
                    under_load: loaded && in_flight.load(Ordering::SeqCst) > 0,
                });
                probed.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
            probes
        });
        while !probed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let verifiers: Vec<_> = (0..VERIFICATIONS)
            .map(|i| {
                let (id, password) = &passwords[i % passwords.len()];
                let (in_flight, body) = (&in_flight, serde_json::json!({ "password": password }));
                in_flight.fetch_add(1, Ordering::SeqCst);
                scope.spawn(move || {
                    let answer = http::request_within(
                        port,
                        "POST",
                        &format!("/users/{id}/kroger-password/verify"),
                        Some("application/json"),
                        &body.to_string(),
                        Duration::from_secs(300),
                    );
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    answer.map(|r| (r.status, r.json()))
                })
            })
            .collect();
        let answers: Vec<_> = verifiers.into_iter().map(|v| v.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        (answers, prober.join().unwrap())
    });

    for answer in &answers {
        let (status, body) = answer.as_ref().expect("every verification is answered");
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["verified"], true, "{body}");
        assert_eq!(body["rehashed"], false, "{body}");
    }
    let loaded = probes.iter().filter(|p| p.under_load).count();
    assert!(loaded >= 1, "no /health probe ran during the verifications");
    let slow: Vec<String> = probes
        .iter()
        .filter(|p| p.took > Duration::from_secs(1) || p.answer.as_ref().map(|a| a.0) != Some(200))
        .map(|p| format!("{:?} after {} ms", p.answer, p.took.as_millis()))
        .collect();
    assert!(
        slow.is_empty(),
        "{} of {} /health probes ({loaded} under load) were slow or failed: {slow:?}",
        slow.len(),
        probes.len()
    );
    assert!(probes
        .iter()
        .all(|p| p.answer.as_ref().is_some_and(|a| a.1 == "ok")));
    let log = server.log();
    users::assert_no_plaintext(&log, 10);
    assert_eq!(server.terminate(), 0);
}

#[test]
fn database_errors_are_not_shown_to_anonymous_clients() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, 20);
    let role = common::unique("demo_app");
    let role_password = "r0le-Secr3t-7c1e";
    exec(
        &db,
        &format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{role_password}'"),
    );
    let cluster = cluster();
    let database = t.url.rsplit('/').next().unwrap();
    let url = format!(
        "postgres://{role}:{role_password}@127.0.0.1:{}/{database}",
        cluster.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[("DATABASE_URL", &url), ("ENVIRONMENT", "staging")],
    );
    server.wait_for("ok");

    // The app's role can no longer log in, and its sessions are gone.
    exec(
        &db,
        &format!(
            "ALTER ROLE {role} NOLOGIN;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
        ),
    );
    let port = server.port;
    // Each waits out the pool's connection wait (5 s, the demo's CONNECTION_WAIT): both at once.
    let (health, check) = std::thread::scope(|scope| {
        let get = |path: &'static str| {
            scope.spawn(move || {
                http::request_within(port, "GET", path, None, "", Duration::from_secs(120))
                    .unwrap_or_else(|| panic!("GET {path}: no answer"))
            })
        };
        let (health, check) = (get("/health"), get("/check-db-connection"));
        (health.join().unwrap(), check.join().unwrap())
    });
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json()["status"], "unavailable");
    assert_eq!(health.json()["database"]["error"], DATABASE_UNAVAILABLE);
    assert_eq!(check.status, 503, "{check:?}");
    assert_eq!(check.json()["connected"], false);
    assert_eq!(check.json()["error"], DATABASE_UNAVAILABLE);
    for response in [&health, &check] {
        for detail in [
            role.as_str(),
            database,
            "127.0.0.1",
            &cluster.port().to_string(),
            "FATAL",
            role_password,
        ] {
            assert!(
                !response.body.contains(detail),
                "{detail:?} shown to an anonymous client: {}",
                response.body
            );
        }
    }
    // The details are in the log, and the password is not.
    let log = server.log();
    assert!(
        log.contains(&format!("role \"{role}\" is not permitted to log in")),
        "{log}"
    );
    assert!(!log.contains(role_password), "{log}");
    // SIGTERM ends it well within Kubernetes' default grace period (30 s), the database still
    // refusing: its backfill workers wait at most 2 s for a connection, then see the stop (they
    // used to wait out r2d2's 30 s per attempt: 20-50 s from SIGTERM to exit).
    assert_eq!(server.terminate_within(Duration::from_secs(15)), 0);
}

#[test]
fn a_named_database_needs_environment_and_gets_no_demo_users() {
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    exec(
        &db,
        "CREATE TABLE user_profiles (id INTEGER PRIMARY KEY, email TEXT, kroger_password TEXT)",
    );
    let dir = tempfile::tempdir().unwrap();

    // No ENVIRONMENT with an explicit DATABASE_URL: a configuration error naming it.
    let mut server = start(dir.path(), &[("DATABASE_URL", &t.url)]);
    let status = server.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{}", server.log());
    let log = server.log();
    assert!(log.contains("ENVIRONMENT is not set"), "{log}");
    assert!(log.contains("explicit DATABASE_URL"), "{log}");

    // With it, the server runs the code migrations only: the empty table stays empty.
    let mut server = start(
        dir.path(),
        &[("DATABASE_URL", &t.url), ("ENVIRONMENT", "development")],
    );
    let (health, _) = server.wait_for("ok");
    assert_eq!(health.json()["pending"], 0);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM user_profiles"), 0);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = '__diesel_schema_migrations'"
        ),
        0
    );
    assert_eq!(server.terminate(), 0);
}
