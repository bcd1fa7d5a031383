//! Start-up: the settings, the shared state, and the migrations run at start.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use migrator::backfill::Workers;
use migrator::password::Hasher;
use migrator::{report::StartupOutcome, Config, Database, Error, Migrator};

use super::hashing::{queue_limit, HashPool, HASHING_QUEUE_LIMIT};
use super::logging::init_logging;
use super::metrics::OUTCOMES;
use super::operator::{
    AdminToken, Sessions, DEFAULT_LIFETIME, MIGRATION_ADMIN_COOKIE_SECURE,
    MIGRATION_ADMIN_SESSION_SECS, MIGRATION_ADMIN_TOKEN, MIGRATION_ADMIN_TOKEN_LABEL,
};
use super::server::serve;

const DEFAULT_DATABASE_URL: &str = "sqlite://smart-meal-planner.db";
const DEFAULT_ENVIRONMENT: &str = "development";

const HOST: &str = "HOST";
const PORT: &str = "PORT";
const LOG_FILE: &str = "LOG_FILE";

/// The variables the demo server reads itself, beside the library's ([`migrator::config::vars::ALL`],
/// with `DATABASE_URL`) and the Argon2 parameters ([`migrator::password::vars::ALL`]).
pub const VARS: [&str; 8] = [
    HOST,
    HASHING_QUEUE_LIMIT,
    PORT,
    LOG_FILE,
    MIGRATION_ADMIN_TOKEN,
    MIGRATION_ADMIN_TOKEN_LABEL,
    MIGRATION_ADMIN_SESSION_SECS,
    MIGRATION_ADMIN_COOKIE_SECURE,
];

/// Where start-up is.
#[derive(Clone, Debug)]
pub(super) enum Phase {
    Migrating,
    Done,
    Skipped(String),
    Failed {
        migration: Option<String>,
        error: String,
    },
}

pub(super) struct AppState {
    pub(super) db: Database,
    pub(super) migrator: Migrator,
    pub(super) config: Config,
    pub(super) hasher: Hasher,
    /// Argon2 runs only here: one thread per core, a bounded queue.
    pub(super) hashing: HashPool,
    pub(super) phase: Mutex<Phase>,
    /// (migration, outcome, seconds) of the start-up run.
    pub(super) migrations: Mutex<Vec<(String, &'static str, f64)>>,
    pub(super) startup_seconds: Mutex<Option<f64>>,
    pub(super) verifications: [AtomicU64; OUTCOMES.len()],
    pub(super) started: Instant,
    /// The Prometheus recorder of the `metrics` facade, rendered by `/metrics`.
    pub(super) prometheus: metrics_exporter_prometheus::PrometheusHandle,
    /// `MIGRATION_ADMIN_TOKEN` (its digest): the operator page's controls need it.
    pub(super) admin_token: Option<AdminToken>,
    /// The operator page's admin sessions (after a login with the token).
    pub(super) sessions: Sessions,
    /// The background backfill workers, started after the start-up migrations and stopped
    /// at shutdown.
    pub(super) workers: Mutex<WorkerSlot>,
}

pub(super) type Shared = Arc<AppState>;

/// Where the background workers are: a shutdown that comes first keeps them from starting.
#[derive(Debug, Default)]
pub(super) enum WorkerSlot {
    #[default]
    NotStarted,
    Running(Workers),
    Stopped,
}

/// Runs the demo server; returns the process exit code.
pub fn main() -> ExitCode {
    let started = Instant::now();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Err(e) = init_logging(env(LOG_FILE)) {
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
    let shown_url = migrator::connection::DatabaseUrl::parse(&url)
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
    let host = env(HOST).unwrap_or_else(|| "127.0.0.1".into());
    let port = match env(PORT).map(|p| p.parse::<u16>()) {
        None => 8000,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            log::error!("Configuration error: PORT must be a number from 0 to 65535");
            return ExitCode::from(2);
        }
    };
    let admin_token = AdminToken::new(env(MIGRATION_ADMIN_TOKEN), env(MIGRATION_ADMIN_TOKEN_LABEL));
    let sessions = match session_settings(&env, &config) {
        Ok((lifetime, secure)) => Sessions::new(lifetime, secure),
        Err(e) => {
            log::error!("Configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if admin_token.is_none() {
        log::info!("Operator page /migrations is read-only: {MIGRATION_ADMIN_TOKEN} is not set");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hashing = match queue_limit(env(HASHING_QUEUE_LIMIT), cores) {
        Ok(queue) => match HashPool::start(cores, queue) {
            Ok(pool) => pool,
            Err(e) => {
                log::error!("Cannot start the hashing threads: {e}");
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            log::error!("Configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    log::info!(
        "Argon2 runs on {} thread(s) with a queue of {} (beyond it: 429)",
        hashing.threads(),
        queue_limit(env(HASHING_QUEUE_LIMIT), cores).unwrap_or_default()
    );
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
    let code = runtime.block_on(serve(
        url,
        url_default,
        config,
        (host, port),
        (admin_token, sessions),
        (hashing, started),
    ));
    // Do not wait for a start-up migration still running on a blocking thread: an interrupted
    // migration is resumed by the next start.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

/// `MIGRATION_ADMIN_SESSION_SECS` (1 to 86400, default 3600) and
/// `MIGRATION_ADMIN_COOKIE_SECURE` (a boolean; default true in production, where the page is
/// served over HTTPS, else false).
fn session_settings(
    env: &dyn Fn(&str) -> Option<String>,
    config: &Config,
) -> Result<(Duration, bool), String> {
    let lifetime = match env(MIGRATION_ADMIN_SESSION_SECS) {
        None => DEFAULT_LIFETIME,
        Some(v) => match v.parse::<u64>() {
            Ok(secs @ 1..=86_400) => Duration::from_secs(secs),
            _ => {
                return Err(format!(
                    "invalid {MIGRATION_ADMIN_SESSION_SECS} value {v:?}: expected a whole \
                     number of seconds from 1 to 86400"
                ))
            }
        },
    };
    let secure = match env(MIGRATION_ADMIN_COOKIE_SECURE).map(|v| v.to_ascii_lowercase()) {
        None => config.environment() == migrator::config::Environment::Production,
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => true,
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => false,
        Some(v) => {
            return Err(format!(
                "invalid {MIGRATION_ADMIN_COOKIE_SECURE} value {v:?}: expected true or false"
            ))
        }
    };
    Ok((lifetime, secure))
}

/// How many times start-up migrations that lost their connection are run again.
const STARTUP_RETRIES: u32 = 3;

/// Runs the start-up migrations and records the outcome for `/health` and `/metrics`.
pub(super) fn migrate(state: &AppState, exit: &AtomicU8, stop: &tokio::sync::Notify) {
    // A session terminated under the run (an operator's pg_terminate_backend, a failover) is
    // not a failed migration: run again on fresh connections, a few times, before saying so.
    let mut outcome = state.migrator.run_on_startup(&state.db, &state.config);
    for attempt in 1..=STARTUP_RETRIES {
        let lost = match &outcome {
            Ok(StartupOutcome::Failed(e)) | Err(e) => e.is_connection_lost(),
            _ => false,
        };
        if !lost {
            break;
        }
        let pause = Duration::from_secs(1 << (attempt - 1));
        if let Ok(StartupOutcome::Failed(e)) | Err(e) = &outcome {
            log::warn!(
                "Start-up migrations lost their database connection ({e}); running them again \
                 in {} s (attempt {} of {})",
                pause.as_secs(),
                attempt + 1,
                STARTUP_RETRIES + 1
            );
        }
        std::thread::sleep(pause);
        outcome = state.migrator.run_on_startup(&state.db, &state.config);
    }
    let record = |report: Option<&migrator::report::Report>| {
        let rows = report.map_or_else(Vec::new, |r| {
            r.migrations
                .iter()
                .map(|m| {
                    let secs = m.duration.map_or(0.0, |d| d.as_secs_f64());
                    (m.id.clone(), m.outcome.as_str(), secs)
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
    if exit.load(Ordering::SeqCst) == 0 {
        start_workers(state);
    }
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

/// Starts the background backfill workers (`MIGRATION_BACKFILL_THREADS`); a failure is logged
/// and the server keeps serving.
fn start_workers(state: &AppState) {
    let Ok(mut slot) = state.workers.lock() else {
        return;
    };
    if !matches!(*slot, WorkerSlot::NotStarted) {
        return;
    }
    match Workers::start(state.db.clone(), &state.config) {
        Ok(workers) => *slot = WorkerSlot::Running(workers),
        Err(e) => log::error!("Cannot start the backfill workers: {e}"),
    }
}

/// Stops the background backfill workers, if they run: each finishes (commits or rolls back)
/// the batch in flight. Workers not started yet never will be.
pub(super) fn stop_workers(state: &AppState) {
    let previous = match state.workers.lock() {
        Ok(mut slot) => std::mem::replace(&mut *slot, WorkerSlot::Stopped),
        Err(_) => return,
    };
    if let WorkerSlot::Running(workers) = previous {
        log::info!("Stopping the backfill workers");
        workers.stop();
    }
}

fn failed_phase(e: &Error) -> Phase {
    Phase::Failed {
        migration: e.migration_id().map(str::to_owned),
        error: e.to_string(),
    }
}

pub(super) fn phase(state: &AppState) -> Phase {
    state
        .phase
        .lock()
        .map(|p| p.clone())
        .unwrap_or(Phase::Migrating)
}
