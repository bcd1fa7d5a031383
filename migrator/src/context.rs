//! What a migration function receives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;

use crate::config::Config;
use crate::connection::{AnyConnection, Database, Pool};
use crate::error::{Error, Result};
use crate::url::Backend;

/// The migration's view of the world: its connection, the pool, the policy, a progress reporter.
///
/// In a transactional migration, [`Context::conn`] is inside the transaction that also writes
/// the `success` row; other pool connections do not see its changes until it commits.
///
/// Work done through [`Context::pool`] (or [`Context::database`]) is **outside** that
/// transaction: it commits on its own, is not rolled back if the migration fails, is not
/// contained by `up --dry-run`, and may wait on the migration's own locks (a backfill through
/// the pool of a table the migration altered would wait forever). Use the pool in
/// `transaction = false` migrations, as `001_hash_kroger_passwords` does.
pub struct Context<'a> {
    conn: &'a mut AnyConnection,
    db: &'a Database,
    config: &'a Config,
    id: &'static str,
    transactional: bool,
    progress: Progress,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        conn: &'a mut AnyConnection,
        db: &'a Database,
        config: &'a Config,
        id: &'static str,
        transactional: bool,
        observer: Option<ProgressObserver>,
    ) -> Context<'a> {
        let mut progress = Progress::new(id, config.progress_interval_value());
        if let Some(observer) = observer {
            progress = progress.with_observer(observer);
        }
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
    pub fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.conn.batch_execute(sql).map_err(Error::from)
    }

    /// Runs one SQL statement (no bind parameters) and counts the rows it affected as progress
    /// (reported by `up --dry-run` and in the run's report).
    pub fn execute(&mut self, sql: &str) -> Result<usize> {
        use diesel::RunQueryDsl;
        let rows = diesel::sql_query(sql).execute(self.conn)?;
        self.progress.add(rows as u64);
        Ok(rows)
    }

    /// The pool, for work spread over several connections (e.g. parallel backfills) in
    /// `transaction = false` migrations: see the type's documentation.
    pub fn pool(&self) -> &Pool {
        self.db.pool()
    }

    /// The database (pool, URL, backend).
    pub fn database(&self) -> &Database {
        self.db
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
    last_log: Mutex<Instant>,
    observer: Option<ProgressObserver>,
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
    /// Rows in all (0 when unknown).
    pub total: u64,
    /// Rows per second since the start.
    pub rate: f64,
    /// Estimated time left, when the total and a rate are known.
    pub eta: Option<Duration>,
}

impl Progress {
    /// A reporter for migration `id`, logging at most every `interval`.
    pub fn new(id: &'static str, interval: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            inner: Arc::new(Inner {
                id,
                interval,
                started: now,
                done: AtomicU64::new(0),
                total: AtomicU64::new(0),
                last_log: Mutex::new(now),
                observer: None,
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
            last_log: Mutex::new(Instant::now()),
            observer: Some(observer),
        };
        Progress {
            inner: Arc::new(inner),
        }
    }

    fn notify(&self) {
        if let Some(observer) = &self.inner.observer {
            observer(self.inner.id, self.snapshot());
        }
    }

    /// Sets the number of rows in all.
    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
        self.notify();
    }

    /// Adds `rows` to the rows done, and logs a progress line if the interval has passed.
    pub fn add(&self, rows: u64) {
        self.inner.done.fetch_add(rows, Ordering::Relaxed);
        if self.inner.observer.is_some() {
            self.notify();
            return;
        }
        let due = {
            let Ok(mut last) = self.inner.last_log.lock() else {
                return;
            };
            if last.elapsed() >= self.inner.interval {
                *last = Instant::now();
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
        let total = self.inner.total.load(Ordering::Relaxed);
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

    /// Logs the progress line now.
    pub fn log(&self) {
        let s = self.snapshot();
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
