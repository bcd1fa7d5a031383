//! Background backfills: `MIGRATION_BACKFILL` and the knobs of the workers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::parse::{invalid, parse_seconds};
use super::vars;
use crate::error::{Error, Result};

/// Default of `MIGRATION_INLINE_BACKFILL_SECS`: how long `auto` works inline before handing off.
pub const DEFAULT_INLINE_BACKFILL: Duration = Duration::from_secs(30);

/// Default of `MIGRATION_BATCH_TARGET_MS`: the batch size adapts so that a batch takes about this.
pub const DEFAULT_BATCH_TARGET: Duration = Duration::from_millis(1000);

/// `MIGRATION_BACKFILL`: how a migration's backfill runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackfillMode {
    /// The migration does all the work before it is recorded (start-up waits for it).
    Inline,
    /// The migration schedules the work and is recorded at once; workers do it after start-up.
    Background,
    /// Inline for at most `MIGRATION_INLINE_BACKFILL_SECS`, then the rest in the background.
    #[default]
    Auto,
}

impl BackfillMode {
    /// The value of `MIGRATION_BACKFILL`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillMode::Inline => "inline",
            BackfillMode::Background => "background",
            BackfillMode::Auto => "auto",
        }
    }
}

impl fmt::Display for BackfillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackfillMode {
    type Err = Error;

    fn from_str(value: &str) -> Result<BackfillMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "inline" => Ok(BackfillMode::Inline),
            "background" => Ok(BackfillMode::Background),
            "auto" => Ok(BackfillMode::Auto),
            _ => Err(invalid(
                vars::MIGRATION_BACKFILL,
                value,
                "one of inline, background, auto",
            )),
        }
    }
}

/// The background-backfill settings of a [`Config`](super::Config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Background {
    pub(super) mode: BackfillMode,
    pub(super) inline_budget: Duration,
    pub(super) threads: Option<u32>,
    pub(super) pause: Duration,
    pub(super) batch_target: Duration,
}

impl Default for Background {
    fn default() -> Background {
        Background {
            mode: BackfillMode::Auto,
            inline_budget: DEFAULT_INLINE_BACKFILL,
            threads: None,
            pause: Duration::ZERO,
            batch_target: DEFAULT_BATCH_TARGET,
        }
    }
}

fn millis(variable: &'static str, value: &str, allow_zero: bool) -> Result<Duration> {
    match value.trim().parse::<u32>() {
        Ok(ms) if allow_zero || ms > 0 => Ok(Duration::from_millis(u64::from(ms))),
        _ if allow_zero => Err(invalid(
            variable,
            value,
            "a whole number of milliseconds (0 or more)",
        )),
        _ => Err(invalid(
            variable,
            value,
            "a whole number of milliseconds greater than 0",
        )),
    }
}

impl Background {
    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Background> {
        let mut settings = Background::default();
        if let Some(v) = lookup(vars::MIGRATION_BACKFILL) {
            settings.mode = v.parse()?;
        }
        if let Some(v) = lookup(vars::MIGRATION_INLINE_BACKFILL_SECS) {
            settings.inline_budget = parse_seconds(vars::MIGRATION_INLINE_BACKFILL_SECS, &v)?;
        }
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
            settings.pause = millis(vars::MIGRATION_BACKFILL_PAUSE_MS, &v, true)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_BATCH_TARGET_MS) {
            settings.batch_target = millis(vars::MIGRATION_BATCH_TARGET_MS, &v, false)?;
        }
        Ok(settings)
    }
}
