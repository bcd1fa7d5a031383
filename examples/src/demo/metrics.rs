//! `/metrics`: the Prometheus exporter of the `metrics` facade. The library records its own
//! metrics (`migrator_*`: migration outcomes and durations, attempts, pending migrations, lock
//! wait, backfill progress; background backfills' gauges are refreshed from
//! `migrator::backfill::list` at each scrape); the demo adds its start-up timings and outcomes and its
//! verification counters (`smart_meal_planner_*`), set from its state at each scrape.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use super::startup::{phase, Phase, Shared};

/// Verification outcomes counted for `/metrics`.
pub(super) const OUTCOMES: [&str; 6] = [
    "verified",
    "mismatch",
    "no_password",
    "unknown_user",
    "error",
    "busy",
];

/// Histogram buckets (seconds) for the `_seconds` histograms: migrations and lock waits run
/// from milliseconds to many minutes.
const BUCKETS: [f64; 12] = [
    0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Installs the process-wide Prometheus recorder (before anything records) and describes the
/// demo's own metrics.
pub(super) fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    describe_gauge!(
        "smart_meal_planner_migration_duration_seconds",
        "Duration of each migration attempted by this process at start-up."
    );
    describe_gauge!(
        "smart_meal_planner_migration_outcome",
        "Outcome of each migration at start-up (1 for the outcome it had)."
    );
    describe_gauge!(
        "smart_meal_planner_startup_duration_seconds",
        "Seconds from process start to the end of start-up migrations."
    );
    describe_gauge!(
        "smart_meal_planner_migrating",
        "Whether start-up migrations are running."
    );
    describe_counter!(
        "smart_meal_planner_kroger_password_verifications_total",
        "Kroger password verifications by outcome."
    );
    Ok(handle)
}

pub(super) async fn metrics(State(state): State<Shared>) -> Response {
    let migrations = state
        .migrations
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    for (id, outcome, secs) in migrations {
        gauge!("smart_meal_planner_migration_duration_seconds", "migration" => id.clone())
            .set(secs);
        gauge!("smart_meal_planner_migration_outcome", "migration" => id, "outcome" => outcome)
            .set(1.0);
    }
    if let Some(secs) = state.startup_seconds.lock().ok().and_then(|s| *s) {
        gauge!("smart_meal_planner_startup_duration_seconds").set(secs);
    }
    let migrating = matches!(phase(&state), Phase::Migrating);
    gauge!("smart_meal_planner_migrating").set(f64::from(u8::from(migrating)));
    for (outcome, count) in OUTCOMES.iter().zip(&state.verifications) {
        counter!("smart_meal_planner_kroger_password_verifications_total", "outcome" => *outcome)
            .absolute(count.load(Ordering::Relaxed));
    }
    // Reading the backfills records the library's gauges of each (rows done and total, rate).
    let db = state.db.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || migrator::backfill::list(&db)).await {
        log::warn!("Metrics: cannot read the backfills: {e}");
    }
    state.prometheus.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
        .into_response()
}
