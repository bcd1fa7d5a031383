//! The demo HTTP service: migrations at start-up behind a `/health` that tells the truth.
//!
//! Start-up order: read the settings, open the pool, start listening, run the migrations under
//! the environment policy (while `/health` answers 503 `migrating`, so that probes neither kill
//! the process nor route traffic to it), then serve normally. A failed migration leaves the
//! server up and `degraded` in development and staging; in production the process exits 1.
//!
//! | variable | default |
//! |---|---|
//! | `DATABASE_URL` | `sqlite://smart-meal-planner.db` (the embedded demo database) |
//! | `ENVIRONMENT` | `development` with the default `DATABASE_URL`; required with any other |
//! | `HOST`, `PORT` | `127.0.0.1`, `8000` |
//! | `LOG_FILE` | none (logs go to stderr, and to this file too when set) |
//! | `MIGRATION_PROGRESS_INTERVAL_SECS` | 2 (the library's default is 10) |
//! | `MIGRATION_DATABASE_URL` | none (start-up migrations use `DATABASE_URL`; set it to a direct URL when `DATABASE_URL` goes through a transaction-pooling PgBouncer) |
//!
//! On the default demo database outside production, a Diesel SQL migration creates
//! `user_profiles` if it is missing and seeds 1,000 demo users with plaintext Kroger passwords
//! (only into an empty table). A database named by `DATABASE_URL` is never seeded: its table
//! must exist, and only the code migrations run.
//!
//! Argon2 runs with no pooled connection held (read, release, hash, guarded write), at most
//! one hash per core at a time; further requests wait holding neither a thread nor a
//! connection, so `/health` always finds one. `/health` and `/check-db-connection` tell
//! anonymous clients only that the database is unavailable; the error goes to the log.
//!
//! Endpoints: `GET /health`, `GET /check-db-connection`, `GET /api-test`, `GET /metrics`
//! (Prometheus text), `PUT /users/{id}/kroger-password` and
//! `POST /users/{id}/kroger-password/verify` (JSON `{"password": "..."}`).

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use migrator::password::{Hasher, Password};
use migrator::{AnyConnection, Config, Database, Error, Migrator, Outcome, Result, StartupOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::kroger::{self, Verification};

/// The demo's schema: `user_profiles` (if missing) and its demo users.
pub const DEMO_SQL: EmbeddedMigrations = embed_migrations!("demo_migrations");

const DEFAULT_DATABASE_URL: &str = "sqlite://smart-meal-planner.db";
const DEFAULT_ENVIRONMENT: &str = "development";

/// Where start-up is.
#[derive(Clone, Debug)]
enum Phase {
    Migrating,
    Done,
    Skipped(String),
    Failed {
        migration: Option<String>,
        error: String,
    },
}

/// Verification outcomes counted for `/metrics`.
const OUTCOMES: [&str; 5] = [
    "verified",
    "mismatch",
    "no_password",
    "unknown_user",
    "error",
];

struct AppState {
    db: Database,
    migrator: Migrator,
    config: Config,
    hasher: Hasher,
    /// One permit per core: Argon2 runs only while holding one.
    hashing: Arc<tokio::sync::Semaphore>,
    phase: Mutex<Phase>,
    /// (migration, outcome, seconds) of the start-up run.
    migrations: Mutex<Vec<(String, &'static str, f64)>>,
    startup_seconds: Mutex<Option<f64>>,
    verifications: [AtomicU64; OUTCOMES.len()],
    started: Instant,
}

type Shared = Arc<AppState>;

/// Runs the demo server; returns the process exit code.
pub fn main() -> ExitCode {
    let started = Instant::now();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Err(e) = init_logging(env("LOG_FILE")) {
        eprintln!("smart-meal-planner: cannot open LOG_FILE: {e}");
        return ExitCode::from(2);
    }
    let environment_default = env("ENVIRONMENT").is_none();
    let url_default = env("DATABASE_URL").is_none();
    if environment_default && !url_default {
        log::error!(
            "Configuration error: ENVIRONMENT is not set: it is required with an explicit \
             DATABASE_URL (one of development, staging, production); only the default demo \
             database defaults to development"
        );
        return ExitCode::from(2);
    }
    let url = env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
    let lookup = |name: &str| {
        env(name).or_else(|| match name {
            "ENVIRONMENT" if url_default => Some(DEFAULT_ENVIRONMENT.into()),
            "MIGRATION_PROGRESS_INTERVAL_SECS" => Some("2".into()),
            _ => None,
        })
    };
    let config = match Config::from_lookup(lookup) {
        Ok(config) => config,
        Err(e) => {
            log::error!("Configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let shown_url = migrator::DatabaseUrl::parse(&url)
        .map(|u| u.redacted().to_owned())
        .unwrap_or_else(|_| "<invalid>".into());
    log::info!(
        "Smart Meal Planner demo starting: ENVIRONMENT={}{}, DATABASE_URL={}{}",
        config.environment(),
        if environment_default {
            " (default)"
        } else {
            ""
        },
        shown_url,
        if url_default { " (default)" } else { "" },
    );
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = match env("PORT").map(|p| p.parse::<u16>()) {
        None => 8000,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            log::error!("Configuration error: PORT must be a number from 0 to 65535");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("Cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(url, url_default, config, host, port, started));
    // Do not wait for a start-up migration still running on a blocking thread: an interrupted
    // migration is resumed by the next start.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

struct Tee(Option<std::fs::File>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        if let Some(file) = &mut self.0 {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()?;
        if let Some(file) = &mut self.0 {
            file.flush()?;
        }
        Ok(())
    }
}

fn init_logging(log_file: Option<String>) -> std::io::Result<()> {
    let file = match log_file {
        Some(path) => {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        }
        None => None,
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .target(env_logger::Target::Pipe(Box::new(Tee(file))))
        .try_init();
    Ok(())
}

async fn serve(
    url: String,
    demo_database: bool,
    config: Config,
    host: String,
    port: u16,
    started: Instant,
) -> u8 {
    let db = match tokio::task::spawn_blocking(move || {
        // Migrations on start-up run on MIGRATION_DATABASE_URL when it is set.
        Database::connect(&url)?.with_migration_url_from_env()
    })
    .await
    {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            log::error!("Cannot open the database: {e}");
            return if e.is_configuration() { 2 } else { 1 };
        }
        Err(e) => {
            log::error!("Cannot open the database: {e}");
            return 1;
        }
    };
    let mut migrator = match Migrator::from_registry() {
        Ok(migrator) => migrator,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    // The demo schema and its seeded users are for trying things out on the embedded demo
    // database: a database the operator named has its own user_profiles, and a pinned plan
    // must not meet demo migrations.
    if demo_database && config.environment() != migrator::Environment::Production {
        migrator.sql_migrations(&DEMO_SQL);
    }
    let hasher = match kroger::hasher() {
        Ok(hasher) => hasher,
        Err(e) => {
            log::error!("Configuration error: {e}");
            return 2;
        }
    };
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => listener,
        Err(e) => {
            log::error!("Cannot listen on {host}:{port}: {e}");
            return 1;
        }
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| format!("{host}:{port}"), |a: SocketAddr| a.to_string());
    log::info!("Listening on http://{address}");

    let state: Shared = Arc::new(AppState {
        db,
        migrator,
        config,
        hasher,
        hashing: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        phase: Mutex::new(Phase::Migrating),
        migrations: Mutex::new(Vec::new()),
        startup_seconds: Mutex::new(None),
        verifications: Default::default(),
        started,
    });
    let exit = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let (state, exit, stop) = (Arc::clone(&state), Arc::clone(&exit), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || migrate(&state, &exit, &stop));
    }
    let app = router(Arc::clone(&state));
    let shutdown = {
        let stop = Arc::clone(&stop);
        async move {
            tokio::select! {
                () = stop.notified() => {}
                () = termination() => log::info!("Shutting down"),
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        log::error!("Server error: {e}");
        return 1;
    }
    exit.load(Ordering::SeqCst)
}

/// Runs the start-up migrations and records the outcome for `/health` and `/metrics`.
fn migrate(state: &AppState, exit: &AtomicU8, stop: &tokio::sync::Notify) {
    let outcome = state.migrator.run_on_startup(&state.db, &state.config);
    let record = |report: Option<&migrator::Report>| {
        let rows = report.map_or_else(Vec::new, |r| {
            r.migrations
                .iter()
                .map(|m| {
                    let outcome = match m.outcome {
                        Outcome::Applied => "applied",
                        Outcome::Failed => "failed",
                        Outcome::AlreadyApplied => "already_applied",
                        Outcome::Skipped => "skipped",
                        _ => "not_run",
                    };
                    let secs = m.duration.map_or(0.0, |d| d.as_secs_f64());
                    (m.id.clone(), outcome, secs)
                })
                .collect()
        });
        if let Ok(mut all) = state.migrations.lock() {
            *all = rows;
        }
    };
    let phase = match outcome {
        Ok(StartupOutcome::Completed(report)) => {
            record(Some(&report));
            Phase::Done
        }
        Ok(StartupOutcome::Skipped { reason }) => Phase::Skipped(reason),
        Ok(StartupOutcome::Failed(e)) => {
            record(e.report());
            failed_phase(&e)
        }
        Ok(_) => Phase::Done,
        Err(e) => {
            record(e.report());
            log::error!("Stopping: start-up migrations failed in production: {e}");
            exit.store(1, Ordering::SeqCst);
            stop.notify_one();
            failed_phase(&e)
        }
    };
    if let Ok(mut seconds) = state.startup_seconds.lock() {
        *seconds = Some(state.started.elapsed().as_secs_f64());
    }
    if let Ok(mut current) = state.phase.lock() {
        *current = phase;
    }
    log::info!(
        "Start-up finished after {:.1}s",
        state.started.elapsed().as_secs_f64()
    );
}

fn failed_phase(e: &Error) -> Phase {
    Phase::Failed {
        migration: e.migration_id().map(str::to_owned),
        error: e.to_string(),
    }
}

async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/check-db-connection", get(check_db))
        .route("/api-test", get(api_test))
        .route("/metrics", get(metrics))
        .route("/users/{id}/kroger-password", put(set_password))
        .route("/users/{id}/kroger-password/verify", post(verify_password))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// What anonymous clients learn of a database error (its details, such as host and user, go
/// to the log).
const DATABASE_UNAVAILABLE: &str = "the database is unavailable (details in the server log)";

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn phase(state: &AppState) -> Phase {
    state
        .phase
        .lock()
        .map(|p| p.clone())
        .unwrap_or(Phase::Migrating)
}

async fn health(State(state): State<Shared>) -> Response {
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
        (status, start.elapsed())
    })
    .await;
    let (status, elapsed) = match result {
        Ok((Ok(status), elapsed)) => (status, elapsed),
        Ok((Err(e), _)) => {
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
    let migrations: Vec<Value> = status
        .migrations
        .iter()
        .map(|m| {
            let row = m.row.as_ref();
            json!({
                "id": m.id,
                "status": m.status_label(),
                "attempts": row.map_or(0, |r| r.attempts),
                "error": row.and_then(|r| r.error_message.clone()),
            })
        })
        .collect();
    let pending = status.pending().count();
    let failed = status.migrations.iter().any(|m| {
        m.row
            .as_ref()
            .is_some_and(|r| r.status == migrator::Status::Failed)
    });
    let mut body = json!({
        "environment": state.config.environment().as_str(),
        "database": {
            "reachable": true,
            "backend": state.db.backend().to_string(),
            "round_trip_ms": elapsed.as_secs_f64() * 1000.0,
        },
        "migrations": migrations,
        "pending": pending,
    });
    let overall = match &phase {
        Phase::Failed { migration, error } => {
            body["error"] = json!({ "migration": migration, "message": error });
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

async fn check_db(State(state): State<Shared>) -> Response {
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

async fn api_test() -> Json<Value> {
    Json(json!({ "status": "ok", "message": "the Smart Meal Planner API is working" }))
}

async fn metrics(State(state): State<Shared>) -> Response {
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

#[derive(Deserialize)]
struct PasswordBody {
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

async fn set_password(
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
    let hasher = state.hasher.clone();
    let result = match hashing(&state, move || hasher.hash(&password)).await {
        Ok(hashed) => {
            with_connection(&state, move |conn| {
                kroger::store_kroger_password_hash(conn, id, &hashed)
            })
            .await
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

async fn verify_password(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Response {
    let (id, password) = match request(&state, &id, body) {
        Ok(parsed) => parsed,
        Err((status, message)) => return error(status, message),
    };
    let result = verify(&state, id, password).await;
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

/// A verification in three steps, holding a pooled connection only for the read and the
/// guarded write, never while Argon2 runs.
async fn verify(state: &Shared, id: i64, password: Password) -> Result<Verification> {
    let Some(stored) =
        with_connection(state, move |conn| kroger::read_kroger_password(conn, id)).await?
    else {
        return Ok(Verification::UnknownUser);
    };
    let hasher = state.hasher.clone();
    let (checked, password) = hashing(state, move || {
        let checked = stored.check(&hasher, &password);
        checked.map(|checked| (checked, password))
    })
    .await?;
    if let Some(outcome) = checked.outcome() {
        return Ok(outcome);
    }
    with_connection(state, move |conn| checked.finish(conn, id, &password)).await
}

/// Runs `work` (Argon2) on a blocking thread once a hashing permit is free. Waiting requests
/// hold no thread and no connection; the permit goes with the work, so a client that hangs
/// up does not free it early.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let permit = Arc::clone(&state.hashing)
        .acquire_owned()
        .await
        .map_err(|e| Error::msg(format!("cannot hash: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
    .map_err(|e| Error::msg(format!("the hashing task failed: {e}")))?
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
