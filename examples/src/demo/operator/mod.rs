//! The operator page: `GET /migrations` shows every migration (status, duration, attempts) and
//! the background backfills; `POST /migrations/backfills/{name}/{pause|resume|cancel}` controls
//! a backfill, only for the admin (else 403, and with `MIGRATION_ADMIN_TOKEN` unset always 403).
//!
//! Who is the admin: a request with `Authorization: Bearer TOKEN` (scripts), or a browser
//! session started by `POST /migrations/login` (the page's login form, the token in the body)
//! and carried by an `HttpOnly`, `SameSite=Strict` cookie scoped to `/migrations` (see
//! [`session`]); its forms carry a per-session CSRF token, and `POST /migrations/logout` ends it.
//! The token is never accepted in a URL (`?token=` is ignored) and never written into a page or
//! a redirect. Anonymous requests get states, names, counts and times; error texts, hosts, pids
//! and worker identities need the admin. Every control is recorded in `migrator_audit` (who:
//! `token:LABEL`). Responses are not cached, send no referrer and may not be framed.

mod auth;
mod backfills;
mod html;
mod session;

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use migrator::backfill::{self, Control};
use migrator::Error;
use serde::Deserialize;

pub(super) use auth::AdminToken;
pub(super) use auth::{MIGRATION_ADMIN_TOKEN, MIGRATION_ADMIN_TOKEN_LABEL};
pub(super) use session::Sessions;
pub(super) use session::DEFAULT_LIFETIME;
pub(super) use session::{MIGRATION_ADMIN_COOKIE_SECURE, MIGRATION_ADMIN_SESSION_SECS};

use super::startup::{phase, AppState, Shared};
use super::{error, DATABASE_UNAVAILABLE};

/// The fields of the page's forms: the token (login only) and the session's CSRF token.
#[derive(Default, Deserialize)]
pub(super) struct FormFields {
    token: Option<String>,
    csrf: Option<String>,
}

/// Who a request is.
pub(super) enum Viewer {
    /// No admin: states, names, counts and times only.
    Anonymous,
    /// The admin by `Authorization: Bearer`: every detail, no forms.
    Bearer,
    /// The admin by a session cookie: every detail and the forms.
    Session(session::Current),
}

impl Viewer {
    /// Whether the request may see error texts, hosts and workers.
    pub(super) fn is_admin(&self) -> bool {
        !matches!(self, Viewer::Anonymous)
    }
}

/// Who the request is (a wrong Bearer token is anonymous).
pub(super) fn viewer(state: &AppState, headers: &HeaderMap) -> Viewer {
    if auth::authorized(state.admin_token.as_ref(), auth::bearer(headers)) {
        return Viewer::Bearer;
    }
    if state.admin_token.is_none() {
        return Viewer::Anonymous;
    }
    match state.sessions.current(headers) {
        Some(current) => Viewer::Session(current),
        None => Viewer::Anonymous,
    }
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

/// `GET /migrations` (a `?token=` in the URL is ignored: the page stays read-only).
pub(super) async fn page(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let viewer = viewer(&state, &headers);
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
        viewer: &viewer,
        login: state.admin_token.is_some(),
    });
    guarded(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// A 303 back to the page, with `cookie` set when given.
fn back_to_page(cookie: Option<String>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/migrations"))],
    )
        .into_response();
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /migrations/login`: the form's `token`; the right one starts a session (cookie) and
/// goes back to the page, a wrong one is 403 after half a second (logged, without the token).
pub(super) async fn login(
    State(state): State<Shared>,
    form: Result<axum::Form<FormFields>, FormRejection>,
) -> Response {
    let form = form.map(|axum::Form(f)| f).unwrap_or_default();
    let Some(token) = state.admin_token.as_ref() else {
        return guarded(error(
            StatusCode::FORBIDDEN,
            format!("operator controls are disabled: {MIGRATION_ADMIN_TOKEN} is not set"),
        ));
    };
    if !auth::authorized(Some(token), form.token.as_deref()) {
        log::warn!("Operator page: a login with a wrong admin token was refused");
        // Slows guessing down (per connection; the token's length is what makes it hopeless).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return guarded(error(StatusCode::FORBIDDEN, "wrong admin token"));
    }
    match state.sessions.start() {
        Some((cookie, _)) => {
            log::info!("Operator page: admin session started ({})", token.actor());
            guarded(back_to_page(Some(cookie)))
        }
        None => guarded(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot start a session (no randomness)",
        )),
    }
}

/// `POST /migrations/logout`: ends the session (its CSRF token required) and clears the cookie.
pub(super) async fn logout(
    State(state): State<Shared>,
    headers: HeaderMap,
    form: Result<axum::Form<FormFields>, FormRejection>,
) -> Response {
    let form = form.map(|axum::Form(f)| f).unwrap_or_default();
    match state.sessions.current(&headers) {
        Some(current) if current.csrf_matches(form.csrf.as_deref()) => {
            log::info!("Operator page: admin session ended by logout");
            guarded(back_to_page(Some(state.sessions.end(&current))))
        }
        Some(_) => guarded(error(StatusCode::FORBIDDEN, "missing or wrong CSRF token")),
        None => guarded(back_to_page(Some(state.sessions.clearing_cookie()))),
    }
}

/// `POST /migrations/backfills/{name}/{action}`: 403 unless the request is the admin (the
/// Bearer header, or the session cookie with the session's CSRF token in the form). Then
/// [`migrator::audit::control_backfill`] (recorded); a form is redirected (303) back to the
/// page, a Bearer request gets the new state as JSON. 404 for an unknown backfill or action,
/// 409 when the backfill's state does not allow it.
pub(super) async fn control(
    State(state): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<axum::Form<FormFields>, FormRejection>,
) -> Response {
    let form = form.map(|axum::Form(f)| f).unwrap_or_default();
    let Some(token) = state.admin_token.as_ref() else {
        return guarded(error(
            StatusCode::FORBIDDEN,
            format!("operator controls are disabled: {MIGRATION_ADMIN_TOKEN} is not set"),
        ));
    };
    let by_form = match viewer(&state, &headers) {
        Viewer::Bearer => false,
        Viewer::Session(current) if current.csrf_matches(form.csrf.as_deref()) => true,
        Viewer::Session(_) => {
            return guarded(error(StatusCode::FORBIDDEN, "missing or wrong CSRF token"))
        }
        Viewer::Anonymous => {
            return guarded(error(
                StatusCode::FORBIDDEN,
                "operator controls need the admin token: log in on the page, or send it \
                 as Authorization: Bearer",
            ))
        }
    };
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
    let actor = token.actor();
    let result = tokio::task::spawn_blocking(move || match backfill::get(&db, &target)? {
        Some(_) => migrator::audit::control_backfill(&db, &actor, &target, action).map(Some),
        None => Ok(None),
    })
    .await;
    let response = match result {
        Ok(Ok(Some(_))) if by_form => back_to_page(None),
        Ok(Ok(Some(changed))) => Json(changed).into_response(),
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
