//! The demo HTTP service: migrations at start-up behind a `/health` that tells the truth.
//!
//! Start-up order: read the settings, open the pool, start listening, run the migrations under
//! the environment policy (while `/health` answers 503 `migrating`, so that probes neither kill
//! the process nor route traffic to it), start the background backfill workers
//! (`MIGRATION_BACKFILL_THREADS`), then serve normally. SIGTERM or Ctrl-C stops the server,
//! then the workers (each finishes the batch in flight). A failed migration leaves the
//! server up and `degraded` in development and staging; in production the process exits 1.
//!
//! | variable | default |
//! |---|---|
//! | `DATABASE_URL` | `sqlite://smart-meal-planner.db` (the embedded demo database) |
//! | `ENVIRONMENT` | `development` with the default `DATABASE_URL`; required with any other |
//! | `HOST`, `PORT` | `127.0.0.1`, `8000` |
//! | `LOG_FILE` | none (logs go to stderr, and to this file too when set) |
//! | `MIGRATION_PROGRESS_INTERVAL_SECS` | 2 (the library's default is 10) |
//! | `MIGRATION_ADMIN_TOKEN` | none (the operator page `/migrations` is read-only and every control is refused) |
//! | `MIGRATION_ADMIN_TOKEN_LABEL` | `admin` (names the token's holder in `migrator_audit`: `token:admin`) |
//! | `MIGRATION_ADMIN_SESSION_SECS` | 3600 (an admin session's lifetime after login, 1 to 86400) |
//! | `MIGRATION_ADMIN_COOKIE_SECURE` | true in production, else false (`Secure` on the session cookie) |
//! | `HASHING_QUEUE_LIMIT` | 64 per core (Argon2 jobs that may wait for a hashing thread; beyond: 429) |
//! | `MIGRATION_DATABASE_URL` | none (start-up migrations use `DATABASE_URL`; set it to a direct URL when `DATABASE_URL` goes through a transaction-pooling PgBouncer) |
//!
//! On the default demo database outside production, a Diesel SQL migration creates
//! `user_profiles` if it is missing and seeds 1,000 demo users with plaintext Kroger passwords
//! (only into an empty table). A database named by `DATABASE_URL` is never seeded: its table
//! must exist, and only the code migrations run.
//!
//! Argon2 runs with no pooled connection held (read, release, hash, guarded write), on a fixed
//! pool of one thread per core (each reusing its one Argon2 block) behind a queue of
//! `HASHING_QUEUE_LIMIT` (default 64 per core); queued requests hold neither a thread, a
//! connection nor Argon2 memory, and beyond the queue the answer is 429 with `Retry-After`.
//! Peak memory is thus about (cores + 2) x `ARGON2_MEMORY_KIB` at most, whatever the load. `/health` and `/check-db-connection` tell
//! anonymous clients only that the database is unavailable; the error goes to the log.
//!
//! Endpoints: `GET /livez` (200 while the process serves, for liveness probes), `GET /health`
//! (readiness), `GET /check-db-connection`, `GET /api-test`, `GET /metrics`
//! (Prometheus text), `GET /migrations` (the operator page, HTML),
//! `POST /migrations/login` (the token, once, from the page's form),
//! `POST /migrations/logout`, `POST /migrations/backfills/{name}/{pause|resume|cancel}` (an
//! admin session with its CSRF token, or `Authorization: Bearer`),
//! `PUT /users/{id}/kroger-password` and
//! `POST /users/{id}/kroger-password/verify` (JSON `{"password": "..."}`).
//!
//! Files by concern: `startup` (settings, state, the start-up migrations), `logging`,
//! `server` (router, shutdown), `health`, `metrics`, `operator` (the operator page and its
//! controls), `passwords` (the set and verify handlers).

mod hashing;
mod health;
mod logging;
mod metrics;
mod operator;
mod passwords;
mod server;
mod startup;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use serde_json::json;

pub use startup::{main, VARS};

/// The demo's schema: `user_profiles` (if missing) and its demo users.
pub const DEMO_SQL: EmbeddedMigrations = embed_migrations!("demo_migrations");

/// What anonymous clients learn of a database error (its details, such as host and user, go
/// to the log).
const DATABASE_UNAVAILABLE: &str = "the database is unavailable (details in the server log)";

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
