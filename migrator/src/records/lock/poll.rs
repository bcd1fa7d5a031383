//! Waiting for a lock that another runner holds: polling with backoff, and saying who holds it.

use std::time::{Duration, Instant};

use crate::foundation::backoff::{Backoff, Waits};
use crate::foundation::error::{Error, Result};

/// The polls of a lock another runner holds: 20 ms, doubling up to 500 ms.
const POLL: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));

/// How often a waiting runner logs who holds the lock.
pub(crate) const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Polls `try_take` until it succeeds or `timeout` passes, logging the holder meanwhile.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut try_take: impl FnMut() -> Result<Option<T>>,
    mut holder: impl FnMut() -> Option<String>,
) -> Result<T> {
    let start = Instant::now();
    let mut pauses = Waits::new(POLL);
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
        std::thread::sleep(pauses.next().min(timeout.saturating_sub(waited)));
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
