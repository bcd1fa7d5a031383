//! The environment policy: which environment this is, and what it allows.

mod background;
mod environment;
mod parse;
pub mod vars;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

pub use background::{BackfillMode, DEFAULT_BATCH_TARGET, DEFAULT_INLINE_BACKFILL};
use environment::setting;
pub use environment::{Environment, Setting, Source};
use parse::{invalid, parse_mb, parse_seconds, ENVIRONMENTS};
pub(crate) use parse::{parse_bool, parse_u32};

/// The tracking table's name.
pub const TABLE: &str = "applied_migrations";

/// Default of `MIGRATION_LOCK_TIMEOUT_SECS`: one hour, so that replicas started during a long
/// migration wait for it instead of failing.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Default of `MIGRATION_PROGRESS_INTERVAL_SECS`.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Default of `MIGRATION_DDL_LOCK_TIMEOUT_MS`: a migration's statement waits at most this long
/// for a table lock (PostgreSQL `lock_timeout`), so that the application's queries never queue
/// behind it for longer.
pub const DEFAULT_DDL_LOCK_TIMEOUT: Duration = Duration::from_millis(5000);

/// Default of `MIGRATION_MAX_REPLICA_LAG_SECS`.
pub const DEFAULT_MAX_REPLICA_LAG_TIME: Duration = Duration::from_secs(30);

/// Default of `MIGRATION_MAX_REPLICA_LAG_MB`.
pub const DEFAULT_MAX_REPLICA_LAG_MB: u64 = 256;

/// Default of `MIGRATION_DDL_LOCK_RETRIES`.
pub const DEFAULT_DDL_LOCK_RETRIES: u32 = 10;

/// The migration policy of one process.
///
/// | setting | development | staging | production |
/// |---|---|---|---|
/// | `AUTO_MIGRATE_ON_STARTUP` | true | true | false |
/// | `ENABLE_PROD_MIGRATIONS` | ignored | ignored | must be true |
/// | `MIGRATION_REQUIRE_CONFIRMATION` | false | false | true |
/// | `MIGRATION_BACKUP_BEFORE` | false | false | true |
/// | on a failed migration | log, start | log, start | error |
///
/// Booleans accept true/false, 1/0, yes/no, on/off in any case; anything else is an error that
/// names the variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    environment: Environment,
    auto_migrate_on_startup: Option<bool>,
    enable_prod_migrations: Option<bool>,
    require_confirmation: Option<bool>,
    backup_before: Option<bool>,
    lock_timeout: Duration,
    progress_interval: Duration,
    batch_size: Option<u32>,
    worker_threads: Option<u32>,
    backup_dir: PathBuf,
    pg_dump: PathBuf,
    confirm: Option<String>,
    assume_yes: bool,
    interactive: Option<bool>,
    ddl_lock: DdlLock,
    max_replica_lag_time: Duration,
    max_replica_lag_mb: u64,
    replica_lag_include: Vec<String>,
    replica_lag_exclude: Vec<String>,
    background: background::Background,
}

/// A comma-separated list of names, trimmed, empty items dropped.
fn name_list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `MIGRATION_INLINE_BACKFILL_THREADS`, else its old name `MIGRATION_WORKER_THREADS` with a
/// deprecation warning (once per process).
fn inline_threads(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<u32>> {
    static DEPRECATED: std::sync::Once = std::sync::Once::new();
    let (name, value) = match lookup(vars::MIGRATION_INLINE_BACKFILL_THREADS) {
        Some(value) => (vars::MIGRATION_INLINE_BACKFILL_THREADS, value),
        None => match lookup(vars::MIGRATION_WORKER_THREADS) {
            Some(value) => {
                DEPRECATED.call_once(|| {
                    log::warn!(
                        "{} is deprecated: set {} instead (threads computing an inline backfill; \
                         the background workers' count is {})",
                        vars::MIGRATION_WORKER_THREADS,
                        vars::MIGRATION_INLINE_BACKFILL_THREADS,
                        vars::MIGRATION_BACKFILL_THREADS
                    );
                });
                (vars::MIGRATION_WORKER_THREADS, value)
            }
            None => return Ok(None),
        },
    };
    parse_u32(name, &value).map(Some)
}

/// `MIGRATION_DDL_LOCK_TIMEOUT_MS` and `MIGRATION_DDL_LOCK_RETRIES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DdlLock {
    timeout: Duration,
    retries: u32,
}

impl Default for DdlLock {
    fn default() -> DdlLock {
        DdlLock {
            timeout: DEFAULT_DDL_LOCK_TIMEOUT,
            retries: DEFAULT_DDL_LOCK_RETRIES,
        }
    }
}

impl DdlLock {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<DdlLock> {
        let mut ddl = DdlLock::default();
        if let Some(v) = lookup(vars::MIGRATION_DDL_LOCK_TIMEOUT_MS) {
            ddl.timeout = match v.trim().parse::<u32>() {
                Ok(ms) if ms > 0 => Duration::from_millis(u64::from(ms)),
                _ => {
                    return Err(invalid(
                        vars::MIGRATION_DDL_LOCK_TIMEOUT_MS,
                        &v,
                        "a whole number of milliseconds greater than 0",
                    ))
                }
            };
        }
        if let Some(v) = lookup(vars::MIGRATION_DDL_LOCK_RETRIES) {
            ddl.retries = v.trim().parse::<u32>().map_err(|_| {
                invalid(
                    vars::MIGRATION_DDL_LOCK_RETRIES,
                    &v,
                    "a whole number of retries (0 or more)",
                )
            })?;
        }
        Ok(ddl)
    }
}

/// Default of `MIGRATION_BACKUP_DIR`.
pub(crate) const DEFAULT_BACKUP_DIR: &str = "backups";

/// Default of `MIGRATION_PG_DUMP`: `pg_dump` found on `PATH`.
pub(crate) const DEFAULT_PG_DUMP: &str = "pg_dump";

impl Config {
    /// Reads the policy from the process environment (see [`vars`]).
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the policy through `lookup` (a variable name to its value), e.g. from a map in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let environment = match lookup(vars::ENVIRONMENT) {
            Some(value) => value.parse()?,
            None => {
                return Err(Error::MissingVariable {
                    variable: vars::ENVIRONMENT,
                    expected: ENVIRONMENTS,
                })
            }
        };
        let flag = |name: &'static str| lookup(name).map(|v| parse_bool(name, &v)).transpose();
        let count = |name: &'static str| lookup(name).map(|v| parse_u32(name, &v)).transpose();
        let seconds = |name: &'static str, default: Duration| {
            lookup(name)
                .map(|v| parse_seconds(name, &v))
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        Ok(Config {
            environment,
            auto_migrate_on_startup: flag(vars::AUTO_MIGRATE_ON_STARTUP)?,
            enable_prod_migrations: flag(vars::ENABLE_PROD_MIGRATIONS)?,
            require_confirmation: flag(vars::MIGRATION_REQUIRE_CONFIRMATION)?,
            backup_before: flag(vars::MIGRATION_BACKUP_BEFORE)?,
            lock_timeout: seconds(vars::MIGRATION_LOCK_TIMEOUT_SECS, DEFAULT_LOCK_TIMEOUT)?,
            progress_interval: seconds(
                vars::MIGRATION_PROGRESS_INTERVAL_SECS,
                DEFAULT_PROGRESS_INTERVAL,
            )?,
            batch_size: count(vars::MIGRATION_BATCH_SIZE)?,
            worker_threads: inline_threads(&lookup)?,
            backup_dir: lookup(vars::MIGRATION_BACKUP_DIR)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_BACKUP_DIR), PathBuf::from),
            pg_dump: lookup(vars::MIGRATION_PG_DUMP)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_PG_DUMP), PathBuf::from),
            confirm: lookup(vars::MIGRATION_CONFIRM),
            assume_yes: false,
            interactive: None,
            ddl_lock: DdlLock::from_lookup(&lookup)?,
            max_replica_lag_time: seconds(
                vars::MIGRATION_MAX_REPLICA_LAG_SECS,
                DEFAULT_MAX_REPLICA_LAG_TIME,
            )?,
            max_replica_lag_mb: lookup(vars::MIGRATION_MAX_REPLICA_LAG_MB)
                .map(|v| parse_mb(vars::MIGRATION_MAX_REPLICA_LAG_MB, &v))
                .transpose()?
                .unwrap_or(DEFAULT_MAX_REPLICA_LAG_MB),
            replica_lag_include: name_list(lookup(vars::MIGRATION_REPLICA_LAG_INCLUDE)),
            replica_lag_exclude: name_list(lookup(vars::MIGRATION_REPLICA_LAG_EXCLUDE)),
            background: background::Background::from_lookup(&lookup)?,
        })
    }

    /// A policy for `environment` with its defaults; adjust it with the setters.
    ///
    /// ```
    /// use migrator::{Config, config::Environment};
    /// let mut config = Config::new(Environment::Production);
    /// config.set_enable_prod_migrations(true).set_require_confirmation(false).set_backup_before(false);
    /// assert!(!config.auto_migrate_on_startup().value); // production default
    /// ```
    pub fn new(environment: Environment) -> Config {
        Config {
            environment,
            auto_migrate_on_startup: None,
            enable_prod_migrations: None,
            require_confirmation: None,
            backup_before: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            batch_size: None,
            worker_threads: None,
            backup_dir: PathBuf::from(DEFAULT_BACKUP_DIR),
            pg_dump: PathBuf::from(DEFAULT_PG_DUMP),
            confirm: None,
            assume_yes: false,
            interactive: None,
            ddl_lock: DdlLock::default(),
            max_replica_lag_time: DEFAULT_MAX_REPLICA_LAG_TIME,
            max_replica_lag_mb: DEFAULT_MAX_REPLICA_LAG_MB,
            replica_lag_include: Vec::new(),
            replica_lag_exclude: Vec::new(),
            background: background::Background::default(),
        }
    }

    /// Sets how far behind (in time) a PostgreSQL replica may be before background backfills
    /// hold their batches (`MIGRATION_MAX_REPLICA_LAG_SECS`).
    pub fn set_max_replica_lag_time(&mut self, value: Duration) -> &mut Config {
        self.max_replica_lag_time = value;
        self
    }

    /// Sets how many MB (MiB) of WAL a PostgreSQL replica may be behind before background
    /// backfills hold their batches (`MIGRATION_MAX_REPLICA_LAG_MB`; 0: any lag holds them).
    pub fn set_max_replica_lag_mb(&mut self, mb: u64) -> &mut Config {
        self.max_replica_lag_mb = mb;
        self
    }

    /// The `application_name`s whose lag counts although they are not physical standbys that
    /// replay (`MIGRATION_REPLICA_LAG_INCLUDE`).
    pub fn replica_lag_include(&self) -> &[String] {
        &self.replica_lag_include
    }

    /// The `application_name`s whose lag never counts (`MIGRATION_REPLICA_LAG_EXCLUDE`).
    pub fn replica_lag_exclude(&self) -> &[String] {
        &self.replica_lag_exclude
    }

    /// How far behind (in time) a replica may be before background backfills hold.
    pub fn max_replica_lag_time(&self) -> Duration {
        self.max_replica_lag_time
    }

    /// How many MB (MiB) of WAL a replica may be behind before background backfills hold.
    pub fn max_replica_lag_mb(&self) -> u64 {
        self.max_replica_lag_mb
    }

    /// How a migration's backfill runs (`MIGRATION_BACKFILL`, default `auto`).
    pub fn backfill_mode(&self) -> BackfillMode {
        self.background.mode
    }

    /// Sets how a migration's backfill runs.
    pub fn set_backfill_mode(&mut self, mode: BackfillMode) -> &mut Config {
        self.background.mode = mode;
        self
    }

    /// `auto`: how long a backfill works inline before handing off
    /// (`MIGRATION_INLINE_BACKFILL_SECS`, default 30 s).
    pub fn inline_backfill_budget(&self) -> Duration {
        self.background.inline_budget
    }

    /// Sets how long `auto` works inline.
    pub fn set_inline_backfill_budget(&mut self, budget: Duration) -> &mut Config {
        self.background.inline_budget = budget;
        self
    }

    /// Background worker threads per process (`MIGRATION_BACKFILL_THREADS`; default half the
    /// cores, at least 1; 0 disables the workers of an app).
    pub fn backfill_threads(&self) -> usize {
        match self.background.threads {
            Some(n) => n as usize,
            None => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
        }
    }

    /// Whether `MIGRATION_BACKFILL_THREADS` was set (the CLI's `work` uses all cores otherwise).
    pub fn backfill_threads_set(&self) -> bool {
        self.background.threads.is_some()
    }

    /// Sets the background worker threads per process (0 disables them).
    pub fn set_backfill_threads(&mut self, threads: u32) -> &mut Config {
        self.background.threads = Some(threads);
        self
    }

    /// How long every background worker sleeps between batches (`MIGRATION_BACKFILL_PAUSE_MS`).
    pub fn backfill_pause(&self) -> Duration {
        self.background.pause
    }

    /// Sets the sleep between background batches.
    pub fn set_backfill_pause(&mut self, pause: Duration) -> &mut Config {
        self.background.pause = pause;
        self
    }

    /// The duration a background batch aims at (`MIGRATION_BATCH_TARGET_MS`, default 1 s).
    pub fn batch_target(&self) -> Duration {
        self.background.batch_target
    }

    /// Sets the duration a background batch aims at (at least 1 ms).
    pub fn set_batch_target(&mut self, target: Duration) -> &mut Config {
        self.background.batch_target = target.max(Duration::from_millis(1));
        self
    }

    /// Sets the `lock_timeout` of every migration on PostgreSQL (`MIGRATION_DDL_LOCK_TIMEOUT_MS`,
    /// at least 1 ms).
    pub fn set_ddl_lock_timeout(&mut self, value: Duration) -> &mut Config {
        self.ddl_lock.timeout = value.max(Duration::from_millis(1));
        self
    }

    /// Sets how often a migration that hit its `lock_timeout` is retried
    /// (`MIGRATION_DDL_LOCK_RETRIES`).
    pub fn set_ddl_lock_retries(&mut self, retries: u32) -> &mut Config {
        self.ddl_lock.retries = retries;
        self
    }

    /// PostgreSQL: how long a migration's statement waits for a table lock before it is
    /// cancelled (and the migration retried).
    pub fn ddl_lock_timeout(&self) -> Duration {
        self.ddl_lock.timeout
    }

    /// PostgreSQL: how often a migration that hit its lock timeout is retried.
    pub fn ddl_lock_retries(&self) -> u32 {
        self.ddl_lock.retries
    }

    /// Sets where backups go (`MIGRATION_BACKUP_DIR`).
    pub fn set_backup_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Config {
        self.backup_dir = dir.into();
        self
    }

    /// Sets the `pg_dump` program (`MIGRATION_PG_DUMP`).
    pub fn set_pg_dump(&mut self, program: impl Into<PathBuf>) -> &mut Config {
        self.pg_dump = program.into();
        self
    }

    /// Sets the pinned plan (`MIGRATION_CONFIRM`): the pending IDs, comma-separated.
    pub fn set_confirm(&mut self, ids: impl Into<String>) -> &mut Config {
        self.confirm = Some(ids.into());
        self
    }

    /// Confirms whatever is pending without asking (the CLI's `up --yes`: an operator at the
    /// command confirms by running it). Named plainly: it disables the safety question.
    pub fn dangerous_assume_yes(&mut self, yes: bool) -> &mut Config {
        self.assume_yes = yes;
        self
    }

    /// Forces (or forbids) the interactive question instead of detecting a terminal on stdin
    /// and stderr.
    pub fn set_interactive(&mut self, interactive: bool) -> &mut Config {
        self.interactive = Some(interactive);
        self
    }

    /// The backup directory.
    pub fn backup_dir(&self) -> &Path {
        &self.backup_dir
    }

    /// The `pg_dump` program.
    pub fn pg_dump(&self) -> &Path {
        &self.pg_dump
    }

    /// The pinned plan, if set.
    pub fn confirm(&self) -> Option<&str> {
        self.confirm.as_deref()
    }

    /// Whether confirmation is given up front (`--yes`).
    pub fn assume_yes(&self) -> bool {
        self.assume_yes
    }

    /// Whether to ask on the terminal: as set, else whether stdin and stderr are terminals.
    pub fn interactive(&self) -> bool {
        use std::io::IsTerminal;
        self.interactive
            .unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
    }

    /// Sets the rows per backfill batch (`MIGRATION_BATCH_SIZE`).
    pub fn set_batch_size(&mut self, rows: u32) -> &mut Config {
        self.batch_size = Some(rows.max(1));
        self
    }

    /// Sets the threads computing an inline backfill (`MIGRATION_INLINE_BACKFILL_THREADS`).
    pub fn set_worker_threads(&mut self, threads: u32) -> &mut Config {
        self.worker_threads = Some(threads.max(1));
        self
    }

    /// Rows per backfill batch, if set (else the backfill's default).
    pub fn batch_size(&self) -> Option<usize> {
        self.batch_size.map(|n| n as usize)
    }

    /// Threads computing an inline backfill (`MIGRATION_INLINE_BACKFILL_THREADS`), if set (else
    /// all cores).
    pub fn worker_threads(&self) -> Option<usize> {
        self.worker_threads.map(|n| n as usize)
    }

    /// Sets `AUTO_MIGRATE_ON_STARTUP`.
    pub fn set_auto_migrate_on_startup(&mut self, value: bool) -> &mut Config {
        self.auto_migrate_on_startup = Some(value);
        self
    }

    /// Sets `ENABLE_PROD_MIGRATIONS`.
    pub fn set_enable_prod_migrations(&mut self, value: bool) -> &mut Config {
        self.enable_prod_migrations = Some(value);
        self
    }

    /// Sets `MIGRATION_REQUIRE_CONFIRMATION`.
    pub fn set_require_confirmation(&mut self, value: bool) -> &mut Config {
        self.require_confirmation = Some(value);
        self
    }

    /// Sets `MIGRATION_BACKUP_BEFORE`.
    pub fn set_backup_before(&mut self, value: bool) -> &mut Config {
        self.backup_before = Some(value);
        self
    }

    /// Sets how long to wait for another runner's lock (`MIGRATION_LOCK_TIMEOUT_SECS`).
    pub fn set_lock_timeout(&mut self, value: Duration) -> &mut Config {
        self.lock_timeout = value;
        self
    }

    /// Sets how often long migrations log progress (`MIGRATION_PROGRESS_INTERVAL_SECS`).
    pub fn set_progress_interval(&mut self, value: Duration) -> &mut Config {
        self.progress_interval = value;
        self
    }

    /// The environment.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    fn production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Effective `AUTO_MIGRATE_ON_STARTUP` and where it came from.
    pub fn auto_migrate_on_startup(&self) -> Setting<bool> {
        setting(self.auto_migrate_on_startup, !self.production())
    }

    /// Effective `ENABLE_PROD_MIGRATIONS` and where it came from.
    pub fn enable_prod_migrations(&self) -> Setting<bool> {
        setting(self.enable_prod_migrations, false)
    }

    /// Effective `MIGRATION_REQUIRE_CONFIRMATION` and where it came from.
    pub fn require_confirmation(&self) -> Setting<bool> {
        setting(self.require_confirmation, self.production())
    }

    /// Effective `MIGRATION_BACKUP_BEFORE` and where it came from.
    pub fn backup_before(&self) -> Setting<bool> {
        setting(self.backup_before, self.production())
    }

    /// The lock wait timeout.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// The progress log interval.
    pub fn progress_interval(&self) -> Duration {
        self.progress_interval
    }

    /// Whether a failed migration should stop the application (production only).
    pub fn failure_stops_startup(&self) -> bool {
        self.production()
    }

    /// Why this policy forbids an explicit run (`up`) at all, if it does:
    /// production without `ENABLE_PROD_MIGRATIONS=true`.
    pub fn run_refusal(&self) -> Option<String> {
        (self.production() && !self.enable_prod_migrations().value).then(|| {
            format!(
                "ENVIRONMENT is production and ENABLE_PROD_MIGRATIONS is {}; set \
                 ENABLE_PROD_MIGRATIONS=true to allow migrations in production",
                match self.enable_prod_migrations {
                    Some(_) => "false",
                    None => "not set",
                }
            )
        })
    }

    /// Why start-up should skip migrating, if it should: `AUTO_MIGRATE_ON_STARTUP` is false,
    /// or production is not enabled. Every reason that applies is listed.
    pub fn startup_skip_reason(&self) -> Option<String> {
        let mut reasons = Vec::new();
        match self.auto_migrate_on_startup() {
            Setting { value: true, .. } => {}
            Setting {
                source: Source::Default,
                ..
            } => reasons.push(format!(
                "AUTO_MIGRATE_ON_STARTUP is not set and defaults to false in {}",
                self.environment
            )),
            _ => reasons.push("AUTO_MIGRATE_ON_STARTUP is false".into()),
        }
        reasons.extend(self.run_refusal());
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}
