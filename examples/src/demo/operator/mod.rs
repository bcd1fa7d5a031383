//! The operator page: `GET /migrations` shows every migration (status, duration, attempts) and
//! the background backfills; `POST /migrations/backfills/{name}/{pause|resume|cancel}` controls
//! a backfill, only for a request presenting `MIGRATION_ADMIN_TOKEN` (else 403, and with the
//! variable unset always 403).
//!
//! The page shows its buttons only to a request that presents the token (`?token=` or
//! `Authorization: Bearer`); its forms carry it as a hidden field. Responses are not cached,
//! send no referrer (the token may be in the URL) and may not be framed.

mod auth;
mod backfills;
mod html;

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use migrator::backfill::{self, Control};
use migrator::Error;
use serde::Deserialize;

pub(super) use auth::AdminToken;
pub use auth::MIGRATION_ADMIN_TOKEN;

use super::startup::{phase, Shared};
use super::{error, DATABASE_UNAVAILABLE};

/// The `token` of a query string or a form.
#[derive(Default, Deserialize)]
pub(super) struct TokenField {
    token: Option<String>,
}

/// Headers of every operator response: no caching, no referrer, no framing, no scripts.
fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /migrations`.
pub(super) async fn page(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<TokenField>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let presented = auth::presented(&headers, query.token.as_deref());
    let token = presented.filter(|t| auth::authorized(state.admin_token.as_ref(), Some(t)));
    let read = Arc::clone(&state);
    let (status, backfills) = tokio::task::spawn_blocking(move || {
        let status = read.migrator.status(&read.db).map_err(|e| {
            log::error!("Operator page: cannot read the migration status: {e}");
        });
        let backfills = backfill::list(&read.db).map_err(|e| {
            log::error!("Operator page: cannot read the backfills: {e}");
        });
        (status.ok(), backfills.ok())
    })
    .await
    .unwrap_or((None, None));
    let phase = phase(&state);
    let body = html::render(&html::Page {
        environment: state.config.environment().as_str(),
        backend: state.db.backend().to_string(),
        phase: &phase,
        status: status.as_ref(),
        backfills: backfills.as_deref(),
        token,
    });
    guarded(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// `POST /migrations/backfills/{name}/{action}`: 403 unless the request presents the admin
/// token (form field `token` or `Authorization: Bearer`). Then [`backfill::control`]; a form
/// is redirected (303) back to the page, a request with the header gets the new state as JSON.
/// 404 for an unknown backfill or action, 409 when the backfill's state does not allow it.
pub(super) async fn control(
    State(state): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<axum::Form<TokenField>, FormRejection>,
) -> Response {
    let form = form.map(|axum::Form(f)| f).unwrap_or_default();
    let presented = auth::presented(&headers, form.token.as_deref());
    if state.admin_token.is_none() {
        return guarded(error(
            StatusCode::FORBIDDEN,
            format!("operator controls are disabled: {MIGRATION_ADMIN_TOKEN} is not set"),
        ));
    }
    if !auth::authorized(state.admin_token.as_ref(), presented) {
        return guarded(error(
            StatusCode::FORBIDDEN,
            "operator controls need the admin token",
        ));
    }
    let action = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "cancel" => Control::Cancel,
        _ => {
            return guarded(error(
                StatusCode::NOT_FOUND,
                "no such action: expected pause, resume or cancel",
            ))
        }
    };
    let db = state.db.clone();
    let target = name.clone();
    let result = tokio::task::spawn_blocking(move || match backfill::get(&db, &target)? {
        Some(_) => backfill::control(&db, &target, action).map(Some),
        None => Ok(None),
    })
    .await;
    let response = match result {
        Ok(Ok(Some(changed))) => match form.token {
            Some(token) if auth::bearer(&headers).is_none() => (
                StatusCode::SEE_OTHER,
                [(
                    header::LOCATION,
                    format!("/migrations?token={}", auth::query_encode(&token)),
                )],
            )
                .into_response(),
            _ => Json(changed).into_response(),
        },
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no backfill named {name:?}")),
        Ok(Err(e @ Error::BackgroundBackfill { .. })) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e)) => {
            log::error!("Operator page: cannot change backfill {name}: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE)
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the control failed"),
    };
    guarded(response)
}
