//! `/metrics` of the demo server, scraped and parsed as Prometheus text: the library's
//! `migrator_*` metrics after a start-up migration (its progress and its backfill's), and the
//! demo's own. The scrape passes `promtool check metrics` (Prometheus's own linter of names,
//! types and help; `scripts/setup` installs it).

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::http;
use common::server::start;
use prometheus_parse::{Scrape, Value};

/// Fails with promtool's report unless `promtool check metrics` accepts `body` without a
/// problem. Without promtool the test fails too: a check that is skipped checks nothing.
fn promtool_check(body: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run promtool ({e}): run scripts/setup, which installs it \
             (Debian's `prometheus` package)"
        ),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(body.as_bytes())
        .expect("write the scrape to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}\non this scrape:\n{body}",
        out.status
    );
}

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
    let expected = value(&scrape, "migrator_migration_rows_expected", &id);
    assert!(expected > 0.0, "{body}");
    assert_eq!(
        value(&scrape, "migrator_migration_rows_done", &id),
        expected,
        "{body}"
    );
    // The migration's backfill, as `migrator_backfills` records it (finished inline).
    let backfill = [("backfill", "hash_kroger_passwords")];
    assert_eq!(
        value(
            &scrape,
            "migrator_background_backfill_rows_expected",
            &backfill
        ),
        expected,
        "{body}"
    );
    assert_eq!(
        value(&scrape, "migrator_background_backfill_rows_done", &backfill),
        expected,
        "{body}"
    );
    assert!(
        value(
            &scrape,
            "migrator_background_backfill_rows_per_second",
            &backfill
        ) >= 0.0
    );
    assert_eq!(
        value(&scrape, "migrator_background_backfill_active", &backfill),
        0.0,
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

    // Names, types and help as Prometheus's own linter wants them (no `_total` on a gauge).
    promtool_check(body);
    assert_eq!(server.terminate(), 0);
}
