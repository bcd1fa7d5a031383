//! The migration lock: one runner migrates, the others wait.
//!
//! - PostgreSQL: a session-level advisory lock, taken on a dedicated connection outside the pool
//!   (never a pooled one, never a transaction-level lock), so that `CREATE INDEX CONCURRENTLY`
//!   in a non-transactional migration does not wait on it, and a killed runner's lock dies with
//!   its session. See [`postgres`] for the key.
//! - SQLite: an exclusive `flock` on `PATH.migrator-lock` beside the database file, released
//!   by the kernel when the process dies.
//!
//! Both wait up to the configured timeout, polling, and log who holds the lock every
//! [`WAIT_LOG_INTERVAL`]. The guard releases the lock on every path, including panics.
//! While a migration runs, the runner checks that the lock is still held at most every
//! [`CHECK_INTERVAL`], between the migration's units of work (see `watch.rs`).

pub mod postgres;
pub mod sqlite;
mod watch;

pub(crate) use watch::LockWatch;
pub use watch::CHECK_INTERVAL;

use std::time::{Duration, Instant};

use crate::connection::Database;
use crate::error::{Error, Result};
use crate::url::Backend;

/// How often a waiting runner logs who holds the lock.
pub const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Held while migrating; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Postgres(postgres::PgLock),
    Sqlite(sqlite::FileLock),
}

impl LockGuard {
    /// Takes the migration lock of `db`, waiting up to `timeout`.
    pub fn acquire(db: &Database, timeout: Duration) -> Result<LockGuard> {
        let start = std::time::Instant::now();
        let inner = match db.backend() {
            Backend::Postgres => Inner::Postgres(postgres::PgLock::acquire(db, timeout)?),
            Backend::Sqlite => Inner::Sqlite(sqlite::FileLock::acquire(db, timeout)?),
        };
        crate::metrics::lock_acquired(start.elapsed());
        Ok(LockGuard { inner })
    }

    /// Checks that the lock is still held: on PostgreSQL its session can be terminated (by an
    /// administrator, a failover, a network cut) while the run goes on, and then another runner
    /// may take it. The runner checks before each migration, before recording an outcome, and
    /// while a migration runs (at most every 2 seconds, between its units of work).
    pub fn ensure_held(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Postgres(lock) => lock.ensure_held(),
            // The kernel keeps a flock for as long as the file is open.
            Inner::Sqlite(_) => Ok(()),
        }
    }

    /// The tracking table this lock guards: every query of the locked run names it.
    pub(crate) fn tracking_table(&self) -> crate::tracking::Table {
        match &self.inner {
            Inner::Postgres(lock) => lock.table(),
            Inner::Sqlite(_) => crate::tracking::Table::sqlite(),
        }
    }

    /// A description of the lock (key or file), for logs.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Postgres(lock) => lock.describe(),
            Inner::Sqlite(lock) => lock.describe(),
        }
    }
}

/// Polls `try_take` until it succeeds or `timeout` passes, logging the holder meanwhile.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut try_take: impl FnMut() -> Result<Option<T>>,
    mut holder: impl FnMut() -> Option<String>,
) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut next_log = start;
    loop {
        if let Some(taken) = try_take()? {
            if start.elapsed() >= Duration::from_secs(1) {
                log::info!(
                    "Took the migration lock {what} after waiting {:.1}s",
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(taken);
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(Error::LockTimeout {
                waited,
                holder: holder(),
            });
        }
        if Instant::now() >= next_log {
            let who = holder().unwrap_or_else(|| "another runner".into());
            log::info!(
                "Waiting for the migration lock {what}: held by {who}; waited {}s of {}s",
                waited.as_secs(),
                timeout.as_secs()
            );
            next_log = Instant::now() + WAIT_LOG_INTERVAL;
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Formats a UNIX time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub(crate) fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
