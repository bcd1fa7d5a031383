//! `/livez` (the process serves HTTP), `/health` (start-up phase, database and migration
//! status), `/check-db-connection` and `/api-test`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use migrator::Error;
use serde_json::{json, Value};

use super::startup::{phase, Phase, Shared};
use super::{error, DATABASE_UNAVAILABLE};

/// `GET /livez`: 200 for as long as the process serves HTTP. It reads neither the database
/// nor the start-up phase, so a liveness probe never kills a process that is migrating or
/// waiting on another process's lock (readiness belongs to `/health`).
pub(super) async fn livez() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /health`: 503 `migrating` during start-up; then the library's status of every
/// migration, with `ok` or `degraded`, and the background backfills with their progress (which
/// never make it `degraded`).
///
/// Anonymous callers get states, names, counts and times; error texts (`error_message`, the
/// start-up error, `last_error`) and worker identities (host, pid) only come with
/// `Authorization: Bearer MIGRATION_ADMIN_TOKEN`.
pub(super) async fn health(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let admin = super::operator::viewer(&state, &headers).is_admin();
    let phase = phase(&state);
    if matches!(phase, Phase::Migrating) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "migrating",
                "message": "start-up migrations are running",
                "environment": state.config.environment().as_str(),
            })),
        )
            .into_response();
    }
    let checked = Arc::clone(&state);
    let result = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let status = checked.migrator.status(&checked.db);
        let elapsed = start.elapsed();
        (status, elapsed, migrator::backfill::list(&checked.db))
    })
    .await;
    let (status, elapsed, backfills) = match result {
        Ok((Ok(status), elapsed, backfills)) => (status, elapsed, backfills),
        Ok((Err(e), _, _)) => {
            log::error!("Health check: cannot read the migration status: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "database": { "reachable": false, "error": DATABASE_UNAVAILABLE },
                })),
            )
                .into_response();
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "health check failed"),
    };
    let pending = status.pending_count();
    let failed = status.migrations.iter().any(|m| {
        m.row
            .as_ref()
            .is_some_and(|r| r.status == migrator::report::Status::Failed)
    });
    // The library's JSON form of the status (as `status --json`), with the server's view added.
    let mut body = match serde_json::to_value(&status) {
        Ok(body) => body,
        Err(e) => {
            log::error!("Health check: cannot render the migration status: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "health check failed");
        }
    };
    if !admin {
        for list in ["migrations", "unknown_applied"] {
            if let Some(rows) = body[list].as_array_mut() {
                for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                    row.remove("error_message");
                }
            }
        }
    }
    body["environment"] = json!(state.config.environment().as_str());
    // Background backfills do not make the service unhealthy: listed with their progress.
    body["backfills"] = match backfills {
        Ok(backfills) => backfills
            .iter()
            .map(|b| {
                let mut entry = json!({
                    "name": b.name,
                    "migration": b.migration,
                    "status": b.status.as_str(),
                    "rows_done": b.rows_done,
                    "rows_total": b.rows_total,
                    "rate_per_sec": b.rate_per_sec,
                    "eta_secs": b.eta_secs,
                    "workers": b.workers.len(),
                });
                if admin {
                    entry["last_error"] = json!(b.last_error);
                    entry["worker_identities"] = b
                        .workers
                        .iter()
                        .map(|w| json!({ "host": w.host, "pid": w.pid }))
                        .collect();
                }
                entry
            })
            .collect(),
        Err(e) => {
            log::warn!("Health check: cannot read the backfills: {e}");
            Value::Null
        }
    };
    body["database"] = json!({
        "reachable": true,
        "backend": state.db.backend().to_string(),
        "round_trip_ms": elapsed.as_secs_f64() * 1000.0,
    });
    let overall = match &phase {
        Phase::Failed { migration, error } => {
            body["error"] = if admin {
                json!({ "migration": migration, "message": error })
            } else {
                json!({ "migration": migration })
            };
            "degraded"
        }
        Phase::Skipped(reason) if pending > 0 => {
            body["error"] = json!({ "message": format!("migrations skipped: {reason}") });
            "degraded"
        }
        _ if pending > 0 || failed => "degraded",
        _ => "ok",
    };
    body["status"] = json!(overall);
    (StatusCode::OK, Json(body)).into_response()
}

pub(super) async fn check_db(State(state): State<Shared>) -> Response {
    let db = state.db.clone();
    let result = tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        let start = Instant::now();
        let mut conn = db.get()?;
        conn.batch_execute("SELECT 1")?;
        Ok::<_, Error>(start.elapsed())
    })
    .await;
    match result {
        Ok(Ok(elapsed)) => Json(json!({
            "connected": true,
            "backend": state.db.backend().to_string(),
            "round_trip_ms": elapsed.as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Ok(Err(e)) => {
            log::error!("Database check failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "connected": false, "error": DATABASE_UNAVAILABLE })),
            )
                .into_response()
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "database check failed"),
    }
}

pub(super) async fn api_test() -> Json<Value> {
    Json(json!({ "status": "ok", "message": "the Smart Meal Planner API is working" }))
}
