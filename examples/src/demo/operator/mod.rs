//! The operator page: `GET /migrations` shows every migration (status, duration, attempts) and
//! the background backfills; `POST /migrations/backfills/{name}/{pause|resume|cancel}` controls
//! a backfill, only for a request presenting `MIGRATION_ADMIN_TOKEN` (else 403, and with the
//! variable unset always 403).
//!
//! The page shows its buttons only to a request that presents the token (`?token=` or
//! `Authorization: Bearer`); its forms carry it as a hidden field. Responses are not cached,
//! send no referrer (the token may be in the URL) and may not be framed.

mod auth;
mod html;

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub(super) use auth::AdminToken;
pub use auth::MIGRATION_ADMIN_TOKEN;

use super::error;
use super::startup::{phase, Shared};

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
    let status = tokio::task::spawn_blocking(move || read.migrator.status(&read.db)).await;
    let status = match status {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            log::error!("Operator page: cannot read the migration status: {e}");
            None
        }
        Err(_) => None,
    };
    let phase = phase(&state);
    let body = html::render(&html::Page {
        environment: state.config.environment().as_str(),
        backend: state.db.backend().to_string(),
        phase: &phase,
        status: status.as_ref(),
        token,
    });
    guarded(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// `POST /migrations/backfills/{name}/{action}`: 403 unless the request presents the admin
/// token (form field `token` or `Authorization: Bearer`).
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
    if !matches!(action.as_str(), "pause" | "resume" | "cancel") {
        return guarded(error(
            StatusCode::NOT_FOUND,
            "no such action: expected pause, resume or cancel",
        ));
    }
    guarded(error(
        StatusCode::NOT_FOUND,
        format!("no backfill named {name:?}"),
    ))
}
