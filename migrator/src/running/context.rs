//! What a migration function receives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;

use crate::access::backend;
use crate::access::connection::{AnyConnection, Database, Pool};
use crate::access::url::Backend;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::records::lock::LockWatch;

/// The migration's view of the world: its connection, the pool, the policy, a progress reporter.
///
/// In a transactional migration, [`Context::conn`] is inside the transaction that also writes
/// the `success` row; other pool connections do not see its changes until it commits.
///
/// Work done through the pool would be **outside** that transaction: it would commit on its own,
/// survive a failure's rollback and `up --dry-run`, and could wait forever on the migration's
/// own locks (a backfill through the pool of a table the migration altered). So
/// [`Context::pool`] and [`Context::database`] are errors in a transactional migration: declare
/// `transaction = false` to use them (long backfills do).
///
/// While the migration runs, the runner watches the migration lock: once it is lost, the
/// context's statements and the backfill stop with [`Error::LockLost`] (see
/// [`Progress::ensure_lock_held`]).
pub struct Context<'a> {
    conn: &'a mut AnyConnection,
    db: &'a Database,
    config: &'a Config,
    id: &'static str,
    transactional: bool,
    progress: Progress,
}

/// The migration and how it runs; not the connection, the pool or the configuration.
impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("migration", &self.id)
            .field("transactional", &self.transactional)
            .field("backend", &self.db.backend())
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        conn: &'a mut AnyConnection,
        db: &'a Database,
        config: &'a Config,
        id: &'static str,
        transactional: bool,
        observer: Option<ProgressObserver>,
        lock: Option<Arc<LockWatch>>,
    ) -> Context<'a> {
        let progress = Progress::build(id, config.progress_interval(), observer, lock);
        Context {
            conn,
            db,
            config,
            id,
            transactional,
            progress,
        }
    }

    /// The migration's connection.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// Runs one or more SQL statements (no bind parameters) on the migration's connection.
    /// Fails with [`Error::LockLost`] instead once the migration lock is lost.
    ///
    /// On PostgreSQL, statements that do not queue the application (`CREATE/DROP INDEX
    /// CONCURRENTLY`, ...) run without the DDL `lock_timeout`: their waits for old snapshots
    /// (a long report, a `pg_dump`) are harmless, and cancelling them would leave an invalid
    /// index and a crash loop.
    pub fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.progress.ensure_lock_held()?;
        self.without_lock_timeout_if_concurrently(sql, |conn| {
            conn.batch_execute(sql).map_err(Error::from)
        })
    }

    /// Runs `f` with `lock_timeout = 0` when `sql` is a `CONCURRENTLY` statement on
    /// PostgreSQL outside a transaction, then restores the session's value.
    fn without_lock_timeout_if_concurrently<T>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        if self.transactional
            || !backend::of(self.conn.backend()).lock_timeouts()
            || !is_concurrently(sql)
        {
            return f(self.conn);
        }
        self.conn.with_settings(&[("lock_timeout", "0")], f)
    }

    /// Runs one SQL statement (no bind parameters) and counts the rows it affected as progress
    /// (reported by `up --dry-run` and in the run's report). Fails with [`Error::LockLost`]
    /// instead once the migration lock is lost.
    pub fn execute(&mut self, sql: &str) -> Result<usize> {
        use diesel::RunQueryDsl;
        self.progress.ensure_lock_held()?;
        let rows = self.without_lock_timeout_if_concurrently(sql, |conn| {
            Ok(diesel::sql_query(sql).execute(conn)?)
        })?;
        self.progress.add(rows as u64);
        Ok(rows)
    }

    /// The pool, for work spread over several connections (e.g. parallel backfills).
    ///
    /// Only in `transaction = false` migrations: in a transactional one it is
    /// [`Error::PoolInTransaction`] (see the type's documentation).
    pub fn pool(&self) -> Result<&Pool> {
        self.database().map(Database::pool)
    }

    /// The database (pool, URL, backend), e.g. for [`crate::backfill::Backfill::run`].
    ///
    /// Only in `transaction = false` migrations: in a transactional one it is
    /// [`Error::PoolInTransaction`] (see the type's documentation).
    pub fn database(&self) -> Result<&Database> {
        if self.transactional {
            return Err(Error::PoolInTransaction {
                migration: self.id.to_owned(),
            });
        }
        Ok(self.db)
    }

    /// The backend, for SQL that differs between PostgreSQL and SQLite.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// The policy the run was started with.
    pub fn config(&self) -> &Config {
        self.config
    }

    /// The migration's ID.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Whether the migration runs inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// The progress reporter; clone it into worker threads.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
}

/// Receives every progress update of a migration (its ID and the counts), e.g. to draw a
/// progress bar. While one is set, the periodic progress log lines are not written.
pub type ProgressObserver = Arc<dyn Fn(&str, ProgressSnapshot) + Send + Sync>;

/// Progress of a long migration: rows done out of a total, logged at a steady interval as
/// `Migration NAME progress: done/total rows (p%), rate rows/s, ETA`.
///
/// Cheap to clone; clones share the counters, so worker threads can each add what they did.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    id: &'static str,
    interval: Duration,
    started: Instant,
    done: AtomicU64,
    total: AtomicU64,
    /// When the last line was logged, and its counts (done, total).
    last_log: Mutex<(Instant, Option<(u64, u64)>)>,
    observer: Option<ProgressObserver>,
    lock: Option<Arc<LockWatch>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("id", &self.id)
            .field("done", &self.done)
            .field("total", &self.total)
            .finish()
    }
}

/// A snapshot of a [`Progress`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// Rows done.
    pub done: u64,
    /// Rows in all (0 when unknown): often an estimate, never below `done`, and equal to it
    /// once the work is complete.
    pub total: u64,
    /// Rows per second since the start.
    pub rate: f64,
    /// Estimated time left, when the total and a rate are known.
    pub eta: Option<Duration>,
}

impl Progress {
    /// A reporter for migration `id`, logging at most every `interval`.
    pub fn new(id: &'static str, interval: Duration) -> Progress {
        Progress::build(id, interval, None, None)
    }

    /// A reporter that also watches the migration lock of the run (when there is one).
    pub(crate) fn build(
        id: &'static str,
        interval: Duration,
        observer: Option<ProgressObserver>,
        lock: Option<Arc<LockWatch>>,
    ) -> Progress {
        let now = Instant::now();
        Progress {
            inner: Arc::new(Inner {
                id,
                interval,
                started: now,
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                last_log: Mutex::new((now, None)),
                observer,
                lock,
            }),
        }
    }

    /// The same reporter, also calling `observer` on every update (and no longer logging
    /// periodic lines). Call before cloning it into workers.
    pub fn with_observer(self, observer: ProgressObserver) -> Progress {
        let inner = Inner {
            id: self.inner.id,
            interval: self.inner.interval,
            started: self.inner.started,
            done: AtomicU64::new(self.inner.done.load(Ordering::Relaxed)),
            total: AtomicU64::new(self.inner.total.load(Ordering::Relaxed)),
            last_log: Mutex::new((Instant::now(), None)),
            observer: Some(observer),
            lock: self.inner.lock.clone(),
        };
        Progress {
            inner: Arc::new(inner),
        }
    }

    /// [`Error::LockLost`] once the migration lock of the run this reporter belongs to is lost
    /// (its PostgreSQL session ended, and another runner may be migrating): a long migration
    /// stops at once. Cheap enough to call between any two units of work: it asks the database
    /// at most every 2 seconds. Always `Ok` for a reporter made with
    /// [`Progress::new`] (no lock). The backfill calls it between batches.
    pub fn ensure_lock_held(&self) -> Result<()> {
        match &self.inner.lock {
            Some(lock) => lock.check(),
            None => Ok(()),
        }
    }

    fn notify(&self) {
        let s = self.snapshot();
        crate::foundation::metrics::migration_progress(self.inner.id, s.done, s.total);
        if let Some(observer) = &self.inner.observer {
            observer(self.inner.id, s);
        }
    }

    /// Sets the number of rows in all (an estimate may do: while the rows done exceed it,
    /// the total reads as the rows done, and [`Progress::complete`] corrects it at the end).
    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
        self.notify();
    }

    /// The work is complete: the total becomes the rows done (it was an estimate, or other
    /// processes did part of it), so that progress reads 100%.
    pub fn complete(&self) {
        let done = self.inner.done.load(Ordering::Relaxed);
        if self.inner.total.swap(done, Ordering::Relaxed) != done {
            self.notify();
        }
    }

    /// Adds `rows` to the rows done, and logs a progress line if the interval has passed.
    pub fn add(&self, rows: u64) {
        self.inner.done.fetch_add(rows, Ordering::Relaxed);
        self.notify();
        if self.inner.observer.is_some() {
            return;
        }
        let due = {
            let Ok(mut last) = self.inner.last_log.lock() else {
                return;
            };
            if last.0.elapsed() >= self.inner.interval {
                last.0 = Instant::now();
                true
            } else {
                false
            }
        };
        if due {
            self.log();
        }
    }

    /// The current counts, rate and ETA.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let done = self.inner.done.load(Ordering::Relaxed);
        // An estimated total below the rows done is capped: never more than 100%.
        let total = match self.inner.total.load(Ordering::Relaxed) {
            0 => 0,
            total => total.max(done),
        };
        let secs = self.inner.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (total > done && rate > 0.0)
            .then(|| Duration::from_secs_f64((total - done) as f64 / rate));
        ProgressSnapshot {
            done,
            total,
            rate,
            eta,
        }
    }

    /// Logs the final progress line, unless the very same counts were the last line logged
    /// (or an observer is set, which has seen every update already).
    pub fn finish(&self) {
        if self.inner.observer.is_some() {
            return;
        }
        let s = self.snapshot();
        let already = self
            .inner
            .last_log
            .lock()
            .is_ok_and(|last| last.1 == Some((s.done, s.total)));
        if !already {
            self.log();
        }
    }

    /// Logs the progress line now.
    pub fn log(&self) {
        let s = self.snapshot();
        if let Ok(mut last) = self.inner.last_log.lock() {
            last.1 = Some((s.done, s.total));
        }
        let id = self.inner.id;
        if s.total > 0 {
            let pct = 100.0 * s.done as f64 / s.total as f64;
            let eta = match s.eta {
                _ if s.done >= s.total => "done".to_owned(),
                Some(eta) => format!("ETA {}s", eta.as_secs()),
                None => "ETA unknown".to_owned(),
            };
            log::info!(
                "Migration {id} progress: {}/{} rows ({pct:.1}%), {:.1} rows/s, {eta}",
                s.done,
                s.total,
                s.rate
            );
        } else {
            log::info!(
                "Migration {id} progress: {} rows, {:.1} rows/s",
                s.done,
                s.rate
            );
        }
    }
}

/// Whether `sql` runs a statement that does not queue the application behind a table lock
/// (`CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX ... CONCURRENTLY`,
/// `DETACH PARTITION ... CONCURRENTLY`): its waits (for old snapshots, e.g. a long report)
/// are harmless to the application, so the DDL lock timeout does not apply to it.
pub(crate) fn is_concurrently(sql: &str) -> bool {
    sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word.eq_ignore_ascii_case("concurrently"))
}

#[cfg(test)]
mod tests {
    /// Worker threads get clones of the reporter: it must stay `Send` and `Sync`, also now that
    /// it carries the run's lock.
    #[test]
    fn progress_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Progress>();
    }
}
