//! The background workers: how many per process (`MIGRATION_BACKFILL_THREADS`), how long a batch
//! aims to take (`MIGRATION_BATCH_TARGET_MS`), a pause between batches
//! (`MIGRATION_BACKFILL_PAUSE_MS`), and the replica lag that holds them
//! (`MIGRATION_MAX_REPLICA_LAG_SECS`, `MIGRATION_MAX_REPLICA_LAG_MB`,
//! `MIGRATION_REPLICA_LAG_INCLUDE`, `MIGRATION_REPLICA_LAG_EXCLUDE`).

use std::time::Duration;

use super::parse::{invalid, parse_mb, parse_millis, parse_seconds};
use super::vars;
use crate::foundation::error::Result;

/// Default of `MIGRATION_BATCH_TARGET_MS`: the batch size adapts so that a batch takes about this.
pub const DEFAULT_BATCH_TARGET: Duration = Duration::from_millis(1000);

/// Default of `MIGRATION_MAX_REPLICA_LAG_SECS`.
pub const DEFAULT_MAX_REPLICA_LAG_TIME: Duration = Duration::from_secs(30);

/// Default of `MIGRATION_MAX_REPLICA_LAG_MB`.
pub const DEFAULT_MAX_REPLICA_LAG_MB: u64 = 256;

/// The background-worker settings of a [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Background {
    pub(super) threads: Option<u32>,
    pub(super) pause: Duration,
    pub(super) batch_target: Duration,
    pub(super) max_replica_lag_time: Duration,
    pub(super) max_replica_lag_mb: u64,
    pub(super) replica_lag_include: Vec<String>,
    pub(super) replica_lag_exclude: Vec<String>,
}

impl Default for Background {
    fn default() -> Background {
        Background {
            threads: None,
            pause: Duration::ZERO,
            batch_target: DEFAULT_BATCH_TARGET,
            max_replica_lag_time: DEFAULT_MAX_REPLICA_LAG_TIME,
            max_replica_lag_mb: DEFAULT_MAX_REPLICA_LAG_MB,
            replica_lag_include: Vec::new(),
            replica_lag_exclude: Vec::new(),
        }
    }
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

impl Background {
    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Background> {
        let mut settings = Background::default();
        if let Some(v) = lookup(vars::MIGRATION_BACKFILL_THREADS) {
            settings.threads = Some(v.trim().parse::<u32>().map_err(|_| {
                invalid(
                    vars::MIGRATION_BACKFILL_THREADS,
                    &v,
                    "a whole number of threads (0 disables the workers)",
                )
            })?);
        }
        if let Some(v) = lookup(vars::MIGRATION_BACKFILL_PAUSE_MS) {
            settings.pause = parse_millis(vars::MIGRATION_BACKFILL_PAUSE_MS, &v, true)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_BATCH_TARGET_MS) {
            settings.batch_target = parse_millis(vars::MIGRATION_BATCH_TARGET_MS, &v, false)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_MAX_REPLICA_LAG_SECS) {
            settings.max_replica_lag_time =
                parse_seconds(vars::MIGRATION_MAX_REPLICA_LAG_SECS, &v)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_MAX_REPLICA_LAG_MB) {
            settings.max_replica_lag_mb = parse_mb(vars::MIGRATION_MAX_REPLICA_LAG_MB, &v)?;
        }
        settings.replica_lag_include = name_list(lookup(vars::MIGRATION_REPLICA_LAG_INCLUDE));
        settings.replica_lag_exclude = name_list(lookup(vars::MIGRATION_REPLICA_LAG_EXCLUDE));
        Ok(settings)
    }
}
