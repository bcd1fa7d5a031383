//! [`Config`]'s accessors and setters, one `impl` block per concern, in the order of the
//! concern files (which hold the settings, their defaults and their parsing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::environment::setting;
use super::inline::BackfillMode;
use super::{Config, Environment, Setting, Source};

/// The policy: the environment, what it allows, and how a run is confirmed (`policy.rs`).
impl Config {
    /// The environment.
    pub fn environment(&self) -> Environment {
        self.policy.environment
    }

    fn production(&self) -> bool {
        self.policy.environment == Environment::Production
    }

    /// Effective `AUTO_MIGRATE_ON_STARTUP` and where it came from.
    pub fn auto_migrate_on_startup(&self) -> Setting<bool> {
        setting(self.policy.auto_migrate_on_startup, !self.production())
    }

    /// Effective `ENABLE_PROD_MIGRATIONS` and where it came from.
    pub fn enable_prod_migrations(&self) -> Setting<bool> {
        setting(self.policy.enable_prod_migrations, false)
    }

    /// Effective `MIGRATION_REQUIRE_CONFIRMATION` and where it came from.
    pub fn require_confirmation(&self) -> Setting<bool> {
        setting(self.policy.require_confirmation, self.production())
    }

    /// Effective `MIGRATION_BACKUP_BEFORE` and where it came from.
    pub fn backup_before(&self) -> Setting<bool> {
        setting(self.policy.backup_before, self.production())
    }

    /// Sets `ENABLE_PROD_MIGRATIONS`.
    pub fn set_enable_prod_migrations(&mut self, value: bool) -> &mut Config {
        self.policy.enable_prod_migrations = Some(value);
        self
    }

    /// Sets `MIGRATION_REQUIRE_CONFIRMATION`.
    pub fn set_require_confirmation(&mut self, value: bool) -> &mut Config {
        self.policy.require_confirmation = Some(value);
        self
    }

    /// Sets `MIGRATION_BACKUP_BEFORE`.
    pub fn set_backup_before(&mut self, value: bool) -> &mut Config {
        self.policy.backup_before = Some(value);
        self
    }

    /// Sets the pinned plan (`MIGRATION_CONFIRM`): the pending IDs, comma-separated.
    pub fn set_confirm(&mut self, ids: impl Into<String>) -> &mut Config {
        self.policy.confirm = Some(ids.into());
        self
    }

    /// The pinned plan, if set.
    pub(crate) fn confirm(&self) -> Option<&str> {
        self.policy.confirm.as_deref()
    }

    /// Confirms whatever is pending without asking (the CLI's `up --yes`: an operator at the
    /// command confirms by running it). Named plainly: it disables the safety question.
    pub fn dangerous_assume_yes(&mut self, yes: bool) -> &mut Config {
        self.policy.assume_yes = yes;
        self
    }

    /// Whether confirmation is given up front (`--yes`).
    pub(crate) fn assume_yes(&self) -> bool {
        self.policy.assume_yes
    }

    /// Forces (or forbids) the interactive question instead of detecting a terminal on stdin
    /// and stderr.
    pub fn set_interactive(&mut self, interactive: bool) -> &mut Config {
        self.policy.interactive = Some(interactive);
        self
    }

    /// Whether to ask on the terminal: as set, else whether stdin and stderr are terminals.
    pub(crate) fn interactive(&self) -> bool {
        use std::io::IsTerminal;
        self.policy
            .interactive
            .unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
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
                match self.policy.enable_prod_migrations {
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
                self.policy.environment
            )),
            _ => reasons.push("AUTO_MIGRATE_ON_STARTUP is false".into()),
        }
        reasons.extend(self.run_refusal());
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// The migration lock, table-lock timeouts and retries, progress logs (`lock.rs`).
impl Config {
    /// The lock wait timeout.
    pub fn lock_timeout(&self) -> Duration {
        self.lock.lock_timeout
    }

    /// Sets how long to wait for another runner's lock (`MIGRATION_LOCK_TIMEOUT_SECS`).
    pub fn set_lock_timeout(&mut self, value: Duration) -> &mut Config {
        self.lock.lock_timeout = value;
        self
    }

    /// PostgreSQL: how long a migration's statement waits for a table lock before it is
    /// cancelled (and the migration retried).
    pub fn ddl_lock_timeout(&self) -> Duration {
        self.lock.ddl_lock.timeout
    }

    /// Sets the `lock_timeout` of every migration on PostgreSQL (`MIGRATION_DDL_LOCK_TIMEOUT_MS`,
    /// at least 1 ms).
    pub fn set_ddl_lock_timeout(&mut self, value: Duration) -> &mut Config {
        self.lock.ddl_lock.timeout = value.max(Duration::from_millis(1));
        self
    }

    /// PostgreSQL: how often a migration that hit its lock timeout is retried.
    pub fn ddl_lock_retries(&self) -> u32 {
        self.lock.ddl_lock.retries
    }

    /// Sets how often a migration that hit its `lock_timeout` is retried
    /// (`MIGRATION_DDL_LOCK_RETRIES`).
    pub fn set_ddl_lock_retries(&mut self, retries: u32) -> &mut Config {
        self.lock.ddl_lock.retries = retries;
        self
    }

    /// The progress log interval.
    pub fn progress_interval(&self) -> Duration {
        self.lock.progress_interval
    }
}

/// Backups before a run (`backup.rs`).
impl Config {
    /// The backup directory.
    pub(crate) fn backup_dir(&self) -> &Path {
        &self.backup.backup_dir
    }

    /// Sets where backups go (`MIGRATION_BACKUP_DIR`).
    pub fn set_backup_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Config {
        self.backup.backup_dir = dir.into();
        self
    }

    /// The `pg_dump` program.
    pub(crate) fn pg_dump(&self) -> &Path {
        &self.backup.pg_dump
    }
}

/// How a migration's backfill runs in the migration (`inline.rs`).
impl Config {
    /// How a migration's backfill runs (`MIGRATION_BACKFILL`, default `auto`).
    #[cfg(feature = "backfill")]
    pub(crate) fn backfill_mode(&self) -> BackfillMode {
        self.inline.mode
    }

    /// Sets how a migration's backfill runs.
    pub fn set_backfill_mode(&mut self, mode: BackfillMode) -> &mut Config {
        self.inline.mode = mode;
        self
    }

    /// `auto`: how long a backfill works inline before handing off
    /// (`MIGRATION_INLINE_BACKFILL_SECS`, default 30 s).
    #[cfg(feature = "backfill")]
    pub(crate) fn inline_backfill_budget(&self) -> Duration {
        self.inline.budget
    }

    /// Rows per backfill batch, if set (else the backfill's default).
    pub fn batch_size(&self) -> Option<usize> {
        self.inline.batch_size.map(|n| n as usize)
    }

    /// Sets the rows per backfill batch (`MIGRATION_BATCH_SIZE`).
    pub fn set_batch_size(&mut self, rows: u32) -> &mut Config {
        self.inline.batch_size = Some(rows.max(1));
        self
    }

    /// Threads computing an inline backfill (`MIGRATION_INLINE_BACKFILL_THREADS`), if set (else
    /// all cores).
    pub fn worker_threads(&self) -> Option<usize> {
        self.inline.worker_threads.map(|n| n as usize)
    }

    /// Sets the threads computing an inline backfill (`MIGRATION_INLINE_BACKFILL_THREADS`).
    pub fn set_worker_threads(&mut self, threads: u32) -> &mut Config {
        self.inline.worker_threads = Some(threads.max(1));
        self
    }
}

/// The background workers and the replica lag that holds them (`background.rs`).
impl Config {
    /// Background worker threads per process (`MIGRATION_BACKFILL_THREADS`; default half the
    /// cores, at least 1; 0 disables the workers of an app).
    #[cfg(feature = "backfill")]
    pub(crate) fn backfill_threads(&self) -> usize {
        match self.background.threads {
            Some(n) => n as usize,
            None => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
        }
    }

    /// Whether `MIGRATION_BACKFILL_THREADS` was set (the CLI's `work` uses all cores otherwise).
    #[cfg(all(feature = "backfill", feature = "cli"))]
    pub(crate) fn backfill_threads_set(&self) -> bool {
        self.background.threads.is_some()
    }

    /// Sets the background worker threads per process (0 disables them).
    pub fn set_backfill_threads(&mut self, threads: u32) -> &mut Config {
        self.background.threads = Some(threads);
        self
    }

    /// How long every background worker sleeps between batches (`MIGRATION_BACKFILL_PAUSE_MS`).
    #[cfg(feature = "backfill")]
    pub(crate) fn backfill_pause(&self) -> Duration {
        self.background.pause
    }

    /// The duration a background batch aims at (`MIGRATION_BATCH_TARGET_MS`, default 1 s).
    #[cfg(feature = "backfill")]
    pub(crate) fn batch_target(&self) -> Duration {
        self.background.batch_target
    }

    /// Sets the duration a background batch aims at (at least 1 ms).
    pub fn set_batch_target(&mut self, target: Duration) -> &mut Config {
        self.background.batch_target = target.max(Duration::from_millis(1));
        self
    }

    /// How far behind (in time) a replica may be before background backfills hold.
    pub fn max_replica_lag_time(&self) -> Duration {
        self.background.max_replica_lag_time
    }

    /// Sets how far behind (in time) a PostgreSQL replica may be before background backfills
    /// hold their batches (`MIGRATION_MAX_REPLICA_LAG_SECS`).
    pub fn set_max_replica_lag_time(&mut self, value: Duration) -> &mut Config {
        self.background.max_replica_lag_time = value;
        self
    }

    /// How many MB (MiB) of WAL a replica may be behind before background backfills hold.
    pub fn max_replica_lag_mb(&self) -> u64 {
        self.background.max_replica_lag_mb
    }

    /// Sets how many MB (MiB) of WAL a PostgreSQL replica may be behind before background
    /// backfills hold their batches (`MIGRATION_MAX_REPLICA_LAG_MB`; 0: any lag holds them).
    pub fn set_max_replica_lag_mb(&mut self, mb: u64) -> &mut Config {
        self.background.max_replica_lag_mb = mb;
        self
    }

    /// The `application_name`s whose lag counts although they are not physical standbys that
    /// replay (`MIGRATION_REPLICA_LAG_INCLUDE`).
    #[cfg(feature = "backfill")]
    pub(crate) fn replica_lag_include(&self) -> &[String] {
        &self.background.replica_lag_include
    }

    /// The `application_name`s whose lag never counts (`MIGRATION_REPLICA_LAG_EXCLUDE`).
    #[cfg(feature = "backfill")]
    pub(crate) fn replica_lag_exclude(&self) -> &[String] {
        &self.background.replica_lag_exclude
    }
}
