//! The HTTP handlers of the Kroger password paths: `PUT /users/{id}/kroger-password` and
//! `POST /users/{id}/kroger-password/verify`. The user is looked up first (an unknown user
//! costs no hash); Argon2 runs on the server's [`HashPool`](super::hashing::HashPool) with no
//! pooled connection held, and a full queue is answered 429 with `Retry-After`.

use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use migrator::password::Password;
use migrator::{AnyConnection, Error, Result};
use serde::Deserialize;
use serde_json::json;

use super::error;
use super::metrics::OUTCOMES;
use super::startup::{phase, AppState, Phase, Shared};
use crate::kroger::{self, Verification};

/// The body of both password requests.
#[derive(Deserialize)]
pub(super) struct PasswordBody {
    password: String,
}

/// Parses the request: the user id and the password, with JSON errors that never echo the body.
fn request(
    state: &AppState,
    id: &str,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<(i64, Password), (StatusCode, &'static str)> {
    if matches!(phase(state), Phase::Migrating) {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "start-up migrations are running; retry shortly",
        ));
    }
    let id: i64 = id
        .parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, "the user id must be an integer"))?;
    let Json(body) = body.map_err(|rejection| match rejection {
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            (StatusCode::BAD_REQUEST, "the body is not valid JSON")
        }
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be a JSON object with a string field \"password\"",
        ),
    })?;
    Ok((id, Password::new(body.password)))
}

pub(super) async fn set_password(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Response {
    let (id, password) = match request(&state, &id, body) {
        Ok(parsed) => parsed,
        Err((status, message)) => return error(status, message),
    };
    if password.expose().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the password must not be empty",
        );
    }
    let known = reading(&state, move |conn| kroger::read_kroger_password(conn, id)).await;
    let result = match known {
        Ok(None) => Ok(false),
        Ok(Some(_)) => {
            let hasher = state.hasher.clone();
            match hashing(&state, move || hasher.hash(&password)).await {
                Err(Busy) => return busy(),
                Ok(Ok(hashed)) => {
                    with_connection(&state, move |conn| {
                        kroger::store_kroger_password_hash(conn, id, &hashed)
                    })
                    .await
                }
                Ok(Err(e)) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => Json(json!({ "updated": true })).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("user {id} not found")),
        Err(e) => {
            log::error!("Setting the Kroger password of user {id} failed: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the password",
            )
        }
    }
}

pub(super) async fn verify_password(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Response {
    let (id, password) = match request(&state, &id, body) {
        Ok(parsed) => parsed,
        Err((status, message)) => return error(status, message),
    };
    let result = match verify(&state, id, password).await {
        Err(Busy) => {
            state.verifications[busy_outcome()].fetch_add(1, Ordering::Relaxed);
            return busy();
        }
        Ok(result) => result,
    };
    let count = |outcome: &str| {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            state.verifications[i].fetch_add(1, Ordering::Relaxed);
        }
    };
    match result {
        Ok(Verification::Verified { upgraded, rehashed }) => {
            count("verified");
            Json(json!({ "verified": true, "upgraded": upgraded, "rehashed": rehashed }))
                .into_response()
        }
        Ok(Verification::Mismatch) => {
            count("mismatch");
            Json(json!({ "verified": false })).into_response()
        }
        Ok(Verification::NoPassword) => {
            count("no_password");
            error(
                StatusCode::NOT_FOUND,
                format!("user {id} has no Kroger password"),
            )
        }
        Ok(Verification::UnknownUser) => {
            count("unknown_user");
            error(StatusCode::NOT_FOUND, format!("user {id} not found"))
        }
        Err(e) => {
            count("error");
            log::error!("Verifying the Kroger password of user {id} failed: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not verify the password",
            )
        }
    }
}

/// The hashing queue was full: the request was not served (429).
struct Busy;

/// The index of the `busy` outcome (429) in the verification counters.
fn busy_outcome() -> usize {
    OUTCOMES.len() - 1
}

/// 429 with `Retry-After: 1`: every hashing thread is busy and the queue is full.
fn busy() -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "the server is busy hashing passwords; retry shortly",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A verification in three steps, holding a pooled connection only for the read and the
/// guarded write, never while Argon2 runs; the user is read before any hash.
async fn verify(state: &Shared, id: i64, password: Password) -> Result<Result<Verification>, Busy> {
    let stored = match reading(state, move |conn| kroger::read_kroger_password(conn, id)).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(Ok(Verification::UnknownUser)),
        Err(e) => return Ok(Err(e)),
    };
    let hasher = state.hasher.clone();
    let checked = hashing(state, move || {
        let checked = stored.check(&hasher, &password);
        checked.map(|checked| (checked, password))
    })
    .await?;
    let (checked, password) = match checked {
        Ok(checked) => checked,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(outcome) = checked.outcome() {
        return Ok(Ok(outcome));
    }
    Ok(with_connection(state, move |conn| checked.finish(conn, id, &password)).await)
}

/// Runs `work` (Argon2) on the server's hashing pool; `Busy` when its queue is full. Waiting
/// requests hold no thread and no connection, and no Argon2 memory: only the pool's threads
/// hash, each reusing its own block.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<Result<T>, Busy> {
    state.hashing.run(work).await.ok_or(Busy)
}

/// Runs a read-only `work` like [`with_connection`], once more on a fresh connection if its
/// connection was lost meanwhile (a session terminated by an operator, a failover): a read
/// repeated changes nothing, and the user gets an answer instead of a 500.
async fn reading<T: Send + 'static>(
    state: &AppState,
    work: impl Fn(&mut AnyConnection) -> Result<T> + Send + Sync + 'static,
) -> Result<T> {
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || {
        let first = db.get().and_then(|mut conn| work(&mut conn));
        match first {
            Err(e) if e.is_connection_lost() => {
                log::warn!("A read lost its database connection ({e}); trying once more");
                work(&mut *db.get()?)
            }
            other => other,
        }
    })
    .await
    .map_err(|e| Error::msg(format!("the database task failed: {e}")))?
}

/// Runs `work` on a blocking thread with a pooled connection, returned to the pool at once.
async fn with_connection<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || work(&mut *db.get()?))
        .await
        .map_err(|e| Error::msg(format!("the database task failed: {e}")))?
}
