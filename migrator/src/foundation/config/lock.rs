//! The run's lock and timing: how long to wait for another runner's lock
//! (`MIGRATION_LOCK_TIMEOUT_SECS`), how long a migration's statement may wait for a table lock
//! and how often it is retried (`MIGRATION_DDL_LOCK_TIMEOUT_MS`, `MIGRATION_DDL_LOCK_RETRIES`),
//! and how often long migrations log progress (`MIGRATION_PROGRESS_INTERVAL_SECS`).

use std::time::Duration;

use super::parse::{invalid, parse_millis, parse_seconds};
use super::vars;
use crate::foundation::error::Result;

/// Default of `MIGRATION_LOCK_TIMEOUT_SECS`: one hour, so that replicas started during a long
/// migration wait for it instead of failing.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// Default of `MIGRATION_PROGRESS_INTERVAL_SECS`.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Default of `MIGRATION_DDL_LOCK_TIMEOUT_MS`: a migration's statement waits at most this long
/// for a table lock (PostgreSQL `lock_timeout`), so that the application's queries never queue
/// behind it for longer.
pub const DEFAULT_DDL_LOCK_TIMEOUT: Duration = Duration::from_millis(5000);

/// Default of `MIGRATION_DDL_LOCK_RETRIES`.
pub const DEFAULT_DDL_LOCK_RETRIES: u32 = 10;

/// The lock settings of a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lock {
    pub(super) lock_timeout: Duration,
    pub(super) progress_interval: Duration,
    pub(super) ddl_lock: DdlLock,
}

/// `MIGRATION_DDL_LOCK_TIMEOUT_MS` and `MIGRATION_DDL_LOCK_RETRIES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DdlLock {
    pub(super) timeout: Duration,
    pub(super) retries: u32,
}

impl Default for Lock {
    fn default() -> Lock {
        Lock {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            ddl_lock: DdlLock {
                timeout: DEFAULT_DDL_LOCK_TIMEOUT,
                retries: DEFAULT_DDL_LOCK_RETRIES,
            },
        }
    }
}

impl Lock {
    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Lock> {
        let mut lock = Lock::default();
        if let Some(v) = lookup(vars::MIGRATION_LOCK_TIMEOUT_SECS) {
            lock.lock_timeout = parse_seconds(vars::MIGRATION_LOCK_TIMEOUT_SECS, &v)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_PROGRESS_INTERVAL_SECS) {
            lock.progress_interval = parse_seconds(vars::MIGRATION_PROGRESS_INTERVAL_SECS, &v)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_DDL_LOCK_TIMEOUT_MS) {
            lock.ddl_lock.timeout = parse_millis(vars::MIGRATION_DDL_LOCK_TIMEOUT_MS, &v, false)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_DDL_LOCK_RETRIES) {
            lock.ddl_lock.retries = v.trim().parse::<u32>().map_err(|_| {
                invalid(
                    vars::MIGRATION_DDL_LOCK_RETRIES,
                    &v,
                    "a whole number of retries (0 or more)",
                )
            })?;
        }
        Ok(lock)
    }
}
