//! PostgreSQL: a migration never queues the application behind a table lock for long.
//!
//! Every attempt runs with `lock_timeout` = `MIGRATION_DDL_LOCK_TIMEOUT_MS` and with the
//! migration's own `statement_timeout` or none (overriding a role-, database- or server-level
//! one): `SET LOCAL` inside a transactional migration's transaction, `SET`/`RESET` on the
//! connection of a non-transactional one. While an attempt runs, another connection looks up
//! the sessions blocking it (`pg_blocking_pids`), so that an attempt cancelled by its lock
//! timeout can name them; the runner then retries it whole after a jittered backoff, up to
//! `MIGRATION_DDL_LOCK_RETRIES` times. SQLite has no such settings: its connections wait up to
//! their `busy_timeout` for another writer, and nothing is retried.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend::{self, pg_ddl};
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::backoff::Backoff;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::running::registry::Migration;

/// Sets the attempt's `lock_timeout` and `statement_timeout` on PostgreSQL (nothing on SQLite):
/// with `SET LOCAL` when `local` (inside the migration's transaction), else with `SET` (undone by
/// [`reset`]). `announce` logs the role-level `statement_timeout` being overridden (once per
/// migration, not per retry).
pub(crate) fn configure(
    conn: &mut AnyConnection,
    m: &Migration,
    config: &Config,
    local: bool,
    announce: bool,
) -> Result<()> {
    if !backend::of(conn.backend()).lock_timeouts() {
        return Ok(());
    }
    let context = || {
        format!(
            "cannot set lock_timeout and statement_timeout for migration {}",
            m.id()
        )
    };
    let statement_ms = match m.statement_timeout() {
        Some(timeout) => timeout.as_millis(),
        None => {
            if announce {
                #[derive(QueryableByName)]
                struct Current {
                    #[diesel(sql_type = Text)]
                    v: String,
                }
                let current: Current = diesel::sql_query(pg_ddl::STATEMENT_TIMEOUT)
                    .get_result(conn)
                    .map_err(Error::db(context()))?;
                if current.v != "0" {
                    log::info!(
                        "Migration {}: overriding the role-level statement_timeout of {} \
                         (set for the role, database or server) with 0 (no limit) for this \
                         migration; declare #[migration(\"{}\", statement_timeout = \"...\")] \
                         to limit it",
                        m.id(),
                        current.v,
                        m.id()
                    );
                }
            }
            0
        }
    };
    conn.batch_execute(&pg_ddl::set_timeouts(
        local,
        lock_timeout(m, config).as_millis(),
        statement_ms,
    ))
    .map_err(Error::db(context()))
}

/// The DDL `lock_timeout` of migration `m`: its own (`#[migration(..., lock_timeout =
/// "...")]`), else `MIGRATION_DDL_LOCK_TIMEOUT_MS`.
pub(crate) fn lock_timeout(m: &Migration, config: &Config) -> Duration {
    m.lock_timeout()
        .unwrap_or_else(|| config.ddl_lock_timeout())
}

/// Undoes [`configure`]'s session-level `SET`s, so that the connection goes back to the pool
/// with the role's settings. The caller has rolled back any open transaction first.
pub(crate) fn reset(conn: &mut AnyConnection, m: &Migration) {
    if backend::of(conn.backend()).lock_timeouts() {
        if let Err(e) = conn.batch_execute(pg_ddl::RESET_TIMEOUTS) {
            log::warn!(
                "Could not reset lock_timeout and statement_timeout after migration {}: {e}",
                m.id()
            );
        }
    }
}

/// Whether `error` is PostgreSQL's lock timeout (SQLSTATE 55P03, `lock_not_available`),
/// told by its SQLSTATE whatever the server's `lc_messages`: a statement timeout or an
/// operator's cancel (57014) or a terminated session (57P01) is not one, even while blockers
/// were seen.
pub(crate) fn is_lock_timeout(error: &Error) -> bool {
    error.is_lock_not_available()
}

/// The waits between retries of a statement that hit the DDL lock timeout: 250 ms doubling up
/// to 10 s, each a random 50–100 % of it, so that runners and the application do not fall
/// into step.
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10)).jittered();

/// How long to wait before retry number `retry` (0-based): see [`RETRY`].
pub(crate) fn backoff(retry: u32) -> Duration {
    RETRY.delay(retry)
}

/// A session that blocked a migration's statement: what an operator needs to find and end it,
/// and nothing the session wrote (never `pg_stat_activity.query`: another session's statement
/// can hold a password or a row's values).
#[derive(Clone, Debug, PartialEq, Eq, QueryableByName)]
pub(crate) struct Blocker {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    state: String,
    /// `wait_event_type:wait_event`, or empty when it waits on nothing.
    #[diesel(sql_type = Text)]
    wait_event: String,
    /// Seconds since its transaction (else its current state) began.
    #[diesel(sql_type = Nullable<Integer>)]
    age_secs: Option<i32>,
    #[diesel(sql_type = Text)]
    application_name: String,
    /// The modes it holds on the relation the migration waits for (else on any relation).
    #[diesel(sql_type = Text)]
    modes: String,
}

/// The longest `application_name` shown (PostgreSQL keeps 63 bytes).
const NAME_CHARS: usize = 63;

/// `blocked by pid 123 (idle in transaction, wait Client:ClientRead, open 42 s,
/// application_name 'psql', holds RowExclusiveLock)`, or that no blocker was seen.
pub(crate) fn describe(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no blocking session was seen (it may have ended meanwhile)".into();
    }
    let each: Vec<String> = blockers
        .iter()
        .map(|b| {
            let name: String = b
                .application_name
                .chars()
                .filter(|c| !c.is_control() && *c != '\'')
                .take(NAME_CHARS)
                .collect();
            let mut parts = vec![if b.state.is_empty() {
                "state unknown".to_owned()
            } else {
                b.state.clone()
            }];
            if !b.wait_event.is_empty() {
                parts.push(format!("wait {}", b.wait_event));
            }
            if let Some(age) = b.age_secs {
                parts.push(format!("open {age} s"));
            }
            parts.push(format!("application_name '{name}'"));
            if !b.modes.is_empty() {
                parts.push(format!("holds {}", b.modes));
            }
            format!("pid {} ({})", b.pid, parts.join(", "))
        })
        .collect();
    format!("blocked by {}", each.join(", "))
}

/// What the blocker watch saw during one attempt.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The blockers found by the last look (empty: not blocked then).
    pub(crate) latest: Vec<Blocker>,
    /// The blockers of the last look that found any.
    pub(crate) ever: Vec<Blocker>,
}

struct Shared {
    stopped: Mutex<bool>,
    wake: Condvar,
    seen: Mutex<Seen>,
}

impl Shared {
    /// Waits up to `pause`; whether the watch was stopped.
    fn pause(&self, pause: Duration) -> bool {
        let Ok(stopped) = self.stopped.lock() else {
            return true;
        };
        match self.wake.wait_timeout_while(stopped, pause, |s| !*s) {
            Ok((stopped, _)) => *stopped,
            Err(_) => true,
        }
    }
}

/// Looks up, from a connection of its own, which sessions block the migration's connection.
pub(crate) struct BlockerWatch {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

impl BlockerWatch {
    /// Starts watching the migration's PostgreSQL connection `conn` (`None` on SQLite, or when
    /// its backend pid cannot be read or no thread started: the migration runs unwatched).
    pub(crate) fn start(db: &Database, conn: &mut AnyConnection, config: &Config) -> Option<Self> {
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        if !backend::of(conn.backend()).lock_timeouts() {
            return None;
        }
        let pid = diesel::sql_query(pg_ddl::BACKEND_PID)
            .get_result::<Pid>(conn)
            .ok()?
            .pid;
        let shared = Arc::new(Shared {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            seen: Mutex::new(Seen::default()),
        });
        let interval = (config.ddl_lock_timeout() / 5)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let db = db.clone();
        let watched = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("migrator-blockers".into())
            .spawn(move || watch(&db, pid, interval, &watched))
            .ok()?;
        Some(BlockerWatch { shared, thread })
    }

    /// Stops the watch and returns what it saw.
    pub(crate) fn stop(self) -> Seen {
        if let Ok(mut stopped) = self.shared.stopped.lock() {
            *stopped = true;
        }
        self.shared.wake.notify_all();
        let _ = self.thread.join();
        self.shared
            .seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }
}

/// The watch thread: no connection for attempts that end within the first interval; then a
/// look every `interval`.
fn watch(db: &Database, pid: i32, interval: Duration, shared: &Shared) {
    if shared.pause(interval) {
        return;
    }
    let mut conn = match db.dedicated_connection() {
        Ok(conn) => conn,
        Err(e) => {
            log::debug!("Cannot watch for sessions blocking the migration: {e}");
            return;
        }
    };
    loop {
        let found = diesel::sql_query(pg_ddl::BLOCKERS)
            .bind::<Integer, _>(pid)
            .load::<Blocker>(&mut conn);
        match found {
            Ok(found) => {
                if let Ok(mut seen) = shared.seen.lock() {
                    if !found.is_empty() {
                        seen.ever.clone_from(&found);
                    }
                    seen.latest = found;
                }
            }
            Err(e) => log::debug!("Cannot look up sessions blocking the migration: {e}"),
        }
        if shared.pause(interval) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for retry in 0..20 {
            let full = (250u64 << retry.min(6)).min(10_000);
            let pause = backoff(retry).as_millis() as u64;
            assert!(pause >= full / 2 && pause <= full, "{retry}: {pause}");
        }
    }

    #[test]
    fn blockers_are_described_by_identity_and_state_only() {
        let blocker = Blocker {
            pid: 7,
            state: "idle in transaction".into(),
            wait_event: "Client:ClientRead".into(),
            age_secs: Some(42),
            application_name: "psql'\n".to_owned() + &"x".repeat(100),
            modes: "RowExclusiveLock".into(),
        };
        let text = describe(&[blocker]);
        assert!(
            text.starts_with(
                "blocked by pid 7 (idle in transaction, wait Client:ClientRead, open 42 s, \
                 application_name 'psqlxxx"
            ),
            "{text}"
        );
        assert!(text.ends_with("', holds RowExclusiveLock)"), "{text}");
        assert!(text.len() < 200, "{text}");
        assert!(describe(&[]).contains("no blocking session"));
    }
}
