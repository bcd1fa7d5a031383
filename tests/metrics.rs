//! `/metrics` of the demo server, scraped and parsed as Prometheus text: the library's
//! `migrator_*` metrics after a start-up migration, and the demo's own.

mod common;

use common::http;
use common::server::start;
use prometheus_parse::{Scrape, Value};

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Value> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| &s.value)
        .collect();
    match found.as_slice() {
        [Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)] => *v,
        other => panic!("{metric}{labels:?}: expected one sample, found {other:?}"),
    }
}

#[test]
fn metrics_of_the_library_and_the_demo_after_a_start_up_migration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let (health, _) = server.wait_for("ok");
    assert_eq!(health.status, 200);
    let port = server.port;
    for password in ["kroger-demo-4", "kroger-demo-5"] {
        let body = format!(r#"{{"password":"{password}"}}"#);
        let r = http::json(port, "POST", "/users/4/kroger-password/verify", &body);
        assert_eq!(r.status, 200);
    }

    let metrics = http::get(port, "/metrics").unwrap();
    assert!(metrics.content_type.starts_with("text/plain"));
    let lines = metrics.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).unwrap();
    let id = [("migration", "001_hash_kroger_passwords")];
    let applied = [
        ("migration", "001_hash_kroger_passwords"),
        ("outcome", "applied"),
    ];
    let body = &metrics.body;

    // The library's.
    assert_eq!(
        value(&scrape, "migrator_migrations_total", &applied),
        1.0,
        "{body}"
    );
    assert!(!body.contains("outcome=\"failed\""), "{body}");
    assert_eq!(
        value(&scrape, "migrator_migration_duration_seconds_count", &id),
        1.0,
        "{body}"
    );
    assert!(value(&scrape, "migrator_migration_duration_seconds_sum", &id) > 0.0);
    assert_eq!(
        value(&scrape, "migrator_migration_attempts", &id),
        1.0,
        "{body}"
    );
    // `/health` read the status after the run: nothing is pending.
    assert_eq!(
        value(&scrape, "migrator_pending_migrations", &[]),
        0.0,
        "{body}"
    );
    assert!(
        value(&scrape, "migrator_lock_wait_seconds_count", &[]) >= 1.0,
        "{body}"
    );
    assert!(value(&scrape, "migrator_lock_wait_seconds_sum", &[]) >= 0.0);
    let total = value(&scrape, "migrator_backfill_rows_total", &id);
    assert!(total > 0.0, "{body}");
    assert_eq!(
        value(&scrape, "migrator_backfill_rows_done", &id),
        total,
        "{body}"
    );
    // Histograms with buckets, not summaries.
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "migrator_migration_duration_seconds"
                && matches!(&s.value, Value::Histogram(b) if !b.is_empty())),
        "{body}"
    );

    // The demo's own.
    let verifications = "smart_meal_planner_kroger_password_verifications_total";
    assert_eq!(
        value(&scrape, verifications, &[("outcome", "verified")]),
        1.0
    );
    assert_eq!(
        value(&scrape, verifications, &[("outcome", "mismatch")]),
        1.0
    );
    assert_eq!(value(&scrape, verifications, &[("outcome", "error")]), 0.0);
    assert_eq!(
        value(&scrape, "smart_meal_planner_migration_outcome", &applied),
        1.0
    );
    assert_eq!(value(&scrape, "smart_meal_planner_migrating", &[]), 0.0);
    assert!(value(&scrape, "smart_meal_planner_startup_duration_seconds", &[]) > 0.0);

    assert_eq!(server.terminate(), 0);
}
