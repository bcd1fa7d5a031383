//! Waiting for someone else's migrations: the `wait` command of init containers, which start the
//! app's pods only once a Job (or another replica) has applied every migration.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::access::connection::Database;
use crate::foundation::error::Result;
use crate::running::migrations::Migrator;

/// How often a waiter logs that it is still waiting.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Polls the tracking table every `poll` until nothing is pending (true), or `timeout` passes
/// (false). A database that cannot be reached yet is waited for too; a configuration error is
/// returned at once.
pub(crate) fn until_applied(
    migrator: &Migrator,
    db: &Database,
    timeout: Duration,
    poll: Duration,
) -> Result<bool> {
    let start = Instant::now();
    let deadline = start.checked_add(timeout);
    let mut logged: Option<Instant> = None;
    loop {
        let waiting_for = match migrator.status(db) {
            Ok(status) if status.pending_count() == 0 => {
                log::info!(
                    "Nothing pending: ready after {} s",
                    start.elapsed().as_secs()
                );
                return Ok(true);
            }
            Ok(status) => {
                let ids: Vec<&str> = status
                    .pending_sql
                    .iter()
                    .map(String::as_str)
                    .chain(status.pending().map(|m| m.id.as_str()))
                    .collect();
                format!("{} pending migration(s): {}", ids.len(), ids.join(", "))
            }
            Err(e) if e.is_configuration() => return Err(e),
            Err(e) => format!("the database ({e})"),
        };
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            log::error!(
                "Gave up after {} s (MIGRATION_LOCK_TIMEOUT_SECS) waiting for {waiting_for}",
                timeout.as_secs()
            );
            return Ok(false);
        }
        if logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            log::info!("Waiting for {waiting_for}");
            logged = Some(now);
        }
        let left = deadline.map_or(poll, |d| d.saturating_duration_since(now));
        sleep(poll.min(left));
    }
}

impl Migrator {
    /// Blocks until nothing is pending (every SQL and code migration applied by someone else: a
    /// Job, another replica), polling the tracking table every `poll`, for at most `timeout`
    /// (the CLI's `wait`, for init containers, with `MIGRATION_LOCK_TIMEOUT_SECS`). Returns
    /// whether it became ready. Takes no lock and changes nothing; a database that cannot be
    /// reached yet is waited for too.
    pub fn wait_until_applied(
        &self,
        db: &Database,
        timeout: std::time::Duration,
        poll: std::time::Duration,
    ) -> Result<bool> {
        let db = db.for_migrations();
        crate::running::wait::until_applied(self, db, timeout, poll)
    }
}
