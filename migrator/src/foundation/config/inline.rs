//! How a migration's backfill runs in the migration itself: inline, in the background, or
//! inline for a while (`MIGRATION_BACKFILL`, `MIGRATION_INLINE_BACKFILL_SECS`), in batches of
//! how many rows (`MIGRATION_BATCH_SIZE`) on how many threads
//! (`MIGRATION_INLINE_BACKFILL_THREADS`, formerly `MIGRATION_WORKER_THREADS`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::parse::{invalid, parse_seconds, parse_u32};
use super::vars;
use crate::foundation::error::{Error, Result};

/// Default of `MIGRATION_INLINE_BACKFILL_SECS`: how long `auto` works inline before handing off.
pub const DEFAULT_INLINE_BACKFILL: Duration = Duration::from_secs(30);

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

/// The inline-backfill settings of a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Inline {
    pub(super) mode: BackfillMode,
    pub(super) budget: Duration,
    pub(super) batch_size: Option<u32>,
    pub(super) worker_threads: Option<u32>,
}

impl Default for Inline {
    fn default() -> Inline {
        Inline {
            mode: BackfillMode::Auto,
            budget: DEFAULT_INLINE_BACKFILL,
            batch_size: None,
            worker_threads: None,
        }
    }
}

impl Inline {
    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Inline> {
        let mut inline = Inline::default();
        if let Some(v) = lookup(vars::MIGRATION_BACKFILL) {
            inline.mode = v.parse()?;
        }
        if let Some(v) = lookup(vars::MIGRATION_INLINE_BACKFILL_SECS) {
            inline.budget = parse_seconds(vars::MIGRATION_INLINE_BACKFILL_SECS, &v)?;
        }
        if let Some(v) = lookup(vars::MIGRATION_BATCH_SIZE) {
            inline.batch_size = Some(parse_u32(vars::MIGRATION_BATCH_SIZE, &v)?);
        }
        inline.worker_threads = inline_threads(lookup)?;
        Ok(inline)
    }
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
