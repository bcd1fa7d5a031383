//! `/metrics`: start-up migration timings and outcomes, and verification counters
//! (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::startup::{phase, Phase, Shared};

/// Verification outcomes counted for `/metrics`.
pub(super) const OUTCOMES: [&str; 5] = [
    "verified",
    "mismatch",
    "no_password",
    "unknown_user",
    "error",
];

pub(super) async fn metrics(State(state): State<Shared>) -> Response {
    let mut out = String::new();
    let migrations = state
        .migrations
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    out.push_str(
        "# HELP smart_meal_planner_migration_duration_seconds Duration of each migration \
         attempted by this process at start-up.\n\
         # TYPE smart_meal_planner_migration_duration_seconds gauge\n",
    );
    for (id, _, secs) in &migrations {
        let _ = writeln!(
            out,
            "smart_meal_planner_migration_duration_seconds{{migration=\"{id}\"}} {secs}"
        );
    }
    out.push_str(
        "# HELP smart_meal_planner_migration_outcome Outcome of each migration at start-up \
         (1 for the outcome it had).\n\
         # TYPE smart_meal_planner_migration_outcome gauge\n",
    );
    for (id, outcome, _) in &migrations {
        let _ = writeln!(
            out,
            "smart_meal_planner_migration_outcome{{migration=\"{id}\",outcome=\"{outcome}\"}} 1"
        );
    }
    let startup = state.startup_seconds.lock().ok().and_then(|s| *s);
    out.push_str(
        "# HELP smart_meal_planner_startup_duration_seconds Seconds from process start to the \
         end of start-up migrations.\n\
         # TYPE smart_meal_planner_startup_duration_seconds gauge\n",
    );
    if let Some(secs) = startup {
        let _ = writeln!(out, "smart_meal_planner_startup_duration_seconds {secs}");
    }
    out.push_str(
        "# HELP smart_meal_planner_migrating Whether start-up migrations are running.\n\
         # TYPE smart_meal_planner_migrating gauge\n",
    );
    let migrating = u8::from(matches!(phase(&state), Phase::Migrating));
    let _ = writeln!(out, "smart_meal_planner_migrating {migrating}");
    out.push_str(
        "# HELP smart_meal_planner_kroger_password_verifications_total Kroger password \
         verifications by outcome.\n\
         # TYPE smart_meal_planner_kroger_password_verifications_total counter\n",
    );
    for (outcome, counter) in OUTCOMES.iter().zip(&state.verifications) {
        let _ = writeln!(
            out,
            "smart_meal_planner_kroger_password_verifications_total{{outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
