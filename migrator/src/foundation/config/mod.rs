//! Configuration on one page: everything the library reads from the environment, grouped by
//! concern, one file each, each default written once (in the concern's `Default`, which
//! [`Config::new`] and [`Config::from_lookup`] both start from):
//!
//! - `policy.rs`: the environment policy and confirmation;
//! - `lock.rs`: the migration lock, table-lock timeouts and retries, progress logs;
//! - `backup.rs`: backups before a run;
//! - `inline.rs`: how a migration's backfill runs in the migration;
//! - `background.rs`: the background workers and the replica lag that holds them;
//! - `methods.rs`: [`Config`]'s accessors and setters, one `impl` block per concern.
//!
//! The Argon2 parameters are the hasher's (`migrator::password::Params::from_env`). Every
//! variable's name is in [`vars`]; `migrator::config::variables` lists them all with their defaults.

mod background;
mod backup;
mod environment;
mod inline;
mod lock;
mod methods;
mod parse;
mod policy;
pub mod vars;

use crate::foundation::error::Result;

pub use background::{
    DEFAULT_BATCH_TARGET, DEFAULT_MAX_REPLICA_LAG_MB, DEFAULT_MAX_REPLICA_LAG_TIME,
};
pub(crate) use backup::{DEFAULT_BACKUP_DIR, DEFAULT_PG_DUMP};
pub use environment::{Environment, Setting, Source};
pub use inline::{BackfillMode, DEFAULT_INLINE_BACKFILL};
pub use lock::{
    DEFAULT_DDL_LOCK_RETRIES, DEFAULT_DDL_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_PROGRESS_INTERVAL,
};
#[cfg(feature = "password")]
pub(crate) use parse::parse_u32;

/// The tracking table's name.
pub const TABLE: &str = "applied_migrations";

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
    policy: policy::Policy,
    lock: lock::Lock,
    backup: backup::Backup,
    inline: inline::Inline,
    background: background::Background,
}

impl Config {
    /// Reads the configuration from the process environment (see [`vars`]).
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the configuration through `lookup` (a variable name to its value), e.g. from a map
    /// in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        Ok(Config {
            policy: policy::Policy::from_lookup(&lookup)?,
            lock: lock::Lock::from_lookup(&lookup)?,
            backup: backup::Backup::from_lookup(&lookup),
            inline: inline::Inline::from_lookup(&lookup)?,
            background: background::Background::from_lookup(&lookup)?,
        })
    }

    /// A configuration for `environment` with its defaults; adjust it with the setters.
    ///
    /// ```
    /// use migrator::{Config, config::Environment};
    /// let mut config = Config::new(Environment::Production);
    /// config.set_enable_prod_migrations(true).set_require_confirmation(false).set_backup_before(false);
    /// assert!(!config.auto_migrate_on_startup().value); // production default
    /// ```
    pub fn new(environment: Environment) -> Config {
        Config {
            policy: policy::Policy::new(environment),
            lock: lock::Lock::default(),
            backup: backup::Backup::default(),
            inline: inline::Inline::default(),
            background: background::Background::default(),
        }
    }
}
