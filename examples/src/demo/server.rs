//! The server: the listener, the router, the start-up migrations in the background, and the
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use migrator::connection::DEFAULT_POOL_SIZE;
use migrator::{Config, Database, Migrator};

use super::hashing::HashPool;
use super::health::{api_test, check_db, health, livez};
use super::metrics::{self, metrics};
use super::operator::{self, AdminToken, Sessions};
use super::passwords::{set_password, verify_password};
use super::startup::{migrate, stop_workers, AppState, Phase, Shared, WorkerSlot};
use super::{error, DEMO_SQL};
use crate::kroger;

/// How long a request (and `/health`, a readiness probe) waits for a connection of the pool
/// before it answers 503: when the database is down or refuses the app's role, an answer in
/// seconds, not r2d2's default 30 s per connection asked for (a probe has long given up by
/// then, and its handler would hold a blocking thread meanwhile).
const CONNECTION_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    url: String,
    demo_database: bool,
    config: Config,
    (host, port): (String, u16),
    (admin_token, sessions): (Option<AdminToken>, Sessions),
    (hashing, started): (HashPool, Instant),
) -> u8 {
    // Before anything records: the library's metrics of the start-up run go to it too.
    let prometheus = match metrics::install() {
        Ok(handle) => handle,
        Err(e) => {
            log::error!("Cannot install the Prometheus recorder: {e}");
            return 1;
        }
    };
    let db = match tokio::task::spawn_blocking(move || {
        // Migrations on start-up run on MIGRATION_DATABASE_URL when it is set.
        let pool = r2d2::Pool::builder()
            .max_size(DEFAULT_POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(CONNECTION_WAIT);
        Database::connect_with(&url, pool)?.with_migration_url_from_env()
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
    if demo_database && config.environment() != migrator::config::Environment::Production {
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
        hashing,
        phase: Mutex::new(Phase::Migrating),
        migrations: Mutex::new(Vec::new()),
        startup_seconds: Mutex::new(None),
        verifications: Default::default(),
        started,
        prometheus,
        admin_token,
        sessions,
        workers: Mutex::new(WorkerSlot::NotStarted),
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
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    // The batch in flight of each worker commits or rolls back, never half.
    let stopping = Arc::clone(&state);
    let _ = tokio::task::spawn_blocking(move || stop_workers(&stopping)).await;
    if let Err(e) = served {
        log::error!("Server error: {e}");
        return 1;
    }
    exit.load(Ordering::SeqCst)
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
        .route("/livez", get(livez))
        .route("/health", get(health))
        .route("/check-db-connection", get(check_db))
        .route("/api-test", get(api_test))
        .route("/metrics", get(metrics))
        .route("/migrations", get(operator::page))
        .route("/migrations/login", post(operator::login))
        .route("/migrations/logout", post(operator::logout))
        .route(
            "/migrations/backfills/{name}/{action}",
            post(operator::control),
        )
        .route("/users/{id}/kroger-password", put(set_password))
        .route("/users/{id}/kroger-password/verify", post(verify_password))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}
