//! The run: sweeps of claim, compute and write, until no row is pending.

use std::time::{Duration, Instant};

use super::claim::{Batch, Sweep, LOCKED_WAIT};
use super::{Backfill, BackfillReport};
use crate::access::backend::{self, BatchWrites};
use crate::access::connection::{AnyConnection, Database, PooledConnection};
use crate::foundation::backoff::Waits;
use crate::foundation::error::{panic_message, Error, Result};
use crate::records::backfill::state::BackfillStatus;
use crate::records::backfill::store;
use crate::running::context::Progress;

impl Backfill {
    /// Runs until no row is pending. `compute` gets a row's inputs (in the order of
    /// [`Backfill::input`]) and returns its outputs (in the order of [`Backfill::output`]).
    ///
    /// No transaction, lock or connection is held while a batch is computed: a batch is
    /// claimed (read) in a short transaction, computed, then written in another, guarded so
    /// that a row changed or done meanwhile is left as it is (see the module's
    /// documentation).
    ///
    /// An in-memory SQLite database (`sqlite://:memory:`) is refused: its pool has one
    /// connection, and a backfill needs several.
    pub fn run<F>(&self, db: &Database, progress: &Progress, compute: F) -> Result<BackfillReport>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync,
    {
        self.check()?;
        if db.url().is_sqlite_memory() {
            return Err(Error::Backfill {
                table: self.table.to_owned(),
                reason: "an in-memory SQLite database (sqlite://:memory:) has a single \
                         connection, and a backfill needs several (to claim a batch while \
                         writing the previous one): use a database file"
                    .into(),
                source: None,
            });
        }
        self.check_key(&mut *db.get()?)?;
        let start = Instant::now();
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("backfill-{i}"))
            .build()
            .map_err(|e| Error::Backfill {
                table: self.table.to_owned(),
                reason: "cannot start worker threads".into(),
                source: Some(Box::new(e)),
            })?;
        // For the progress line only, an estimate in bounded time (a count would read the
        // whole table first); one that fails (a role's statement_timeout) leaves the total
        // unknown, and the backfill goes on.
        match self.estimate_pending(&mut *db.get()?, self.upper_key) {
            Ok(estimate) => {
                progress.set_total(estimate.rows);
                log::info!(
                    "Backfill of {}: {}{} rows pending, {} threads, batches of {}",
                    self.table,
                    if estimate.exact { "" } else { "about " },
                    estimate.rows,
                    self.threads,
                    self.effective_batch_size()
                );
            }
            Err(error) => log::info!(
                "Backfill of {}: pending rows not estimated ({error}); {} threads, batches of {}",
                self.table,
                self.threads,
                self.effective_batch_size()
            ),
        }
        let mut report = BackfillReport::default();
        let mut stalled_sweeps = 0;
        let mut waited = Duration::ZERO;
        let mut locked_waits = Waits::new(LOCKED_WAIT);
        let mut previous: Option<(u64, Option<(i64, i64)>)> = None;
        let mut sweep = Sweep::new();
        loop {
            progress.ensure_lock_held()?;
            let written_before = report.rows_updated;
            let keys = self.sweep(db, progress, &workers, &compute, &mut report, &mut sweep)?;
            if report.unfinished {
                break;
            }
            if sweep.claimed == 0 && sweep.skipped_from.is_none() {
                if sweep.started_at_first_key() {
                    // A whole sweep found nothing pending: done.
                    break;
                }
                // Nothing from where the last sweep left rows behind: confirm from the start.
                sweep = Sweep::new();
                continue;
            }
            if sweep.claimed == 0 {
                // Everything left is locked by other transactions or leased by other
                // workers: their batches (wait for them, or for their leases to expire if
                // they died), or an application transaction left open (bounded by
                // wait_for_locked_rows). The waits grow, so that this costs little.
                if waited >= self.wait_for_locked {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "pending rows from key {} stayed locked by other transactions for \
                             {}s",
                            sweep.skipped_from.unwrap_or_default(),
                            waited.as_secs()
                        ),
                        source: None,
                    });
                }
                if locked_waits.at_max() || waited.is_zero() {
                    log::info!(
                        "Backfill of {}: the pending rows left are locked by other \
                         transactions or being computed by other workers; waiting",
                        self.table
                    );
                }
                let wait = locked_waits.next();
                std::thread::sleep(wait);
                waited += wait;
            } else {
                waited = Duration::ZERO;
                locked_waits.reset();
            }
            // The same rows written again from the start, none resolved: the predicate stays
            // true once written. (Rows that other writers keep adding come with new keys, and
            // do not count.)
            let written = report.rows_updated - written_before;
            if sweep.started_at_first_key() && written > 0 && written == sweep.claimed {
                let same = matches!(
                    (keys, previous),
                    (Some((lo, hi)), Some((before, Some((plo, phi)))))
                        if written >= before && lo >= plo && hi <= phi
                );
                stalled_sweeps = if same { stalled_sweeps + 1 } else { 0 };
                if stalled_sweeps >= 2 {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "no progress: {written} rows still match the pending predicate \
                             after being written; the predicate must become false once a row \
                             is done"
                        ),
                        source: None,
                    });
                }
                previous = Some((written, keys));
            }
            sweep = sweep.next();
        }
        if !report.unfinished && self.has_then() {
            let name = self
                .sink
                .as_ref()
                .map_or(self.table, |sink| sink.name.as_str());
            self.run_then(db, name, self.ddl_lock_timeout, true)?;
        }
        report.elapsed = start.elapsed();
        if !report.unfinished {
            // The total was an estimate: complete is 100%.
            progress.complete();
        }
        progress.finish();
        if let Some(status) = report.stopped_by {
            log::info!(
                "Backfill of {}: {status} by an operator after {} rows written inline in {:.1}s",
                self.table,
                report.rows_updated,
                report.elapsed.as_secs_f64()
            );
            return Ok(report);
        }
        if report.unfinished {
            log::info!(
                "Backfill of {}: {} rows written inline in {:.1}s; the rest goes to the \
                 background workers",
                self.table,
                report.rows_updated,
                report.elapsed.as_secs_f64()
            );
            return Ok(report);
        }
        log::info!(
            "Backfill of {} done: {} rows written by this process in {} batches, {:.1}s",
            self.table,
            report.rows_updated,
            report.batches,
            report.elapsed.as_secs_f64()
        );
        Ok(report)
    }

    /// Whether an operator paused or cancelled this (named) backfill: read between batches.
    fn stopped_by_operator(&self, db: &Database) -> Result<Option<BackfillStatus>> {
        let Some(sink) = self.sink.as_ref().filter(|_| self.obey_operator) else {
            return Ok(None);
        };
        let mut conn = db.get()?;
        let status = store::status(&mut conn, &sink.tables, &sink.name)?;
        Ok(status.filter(|s| matches!(s, BackfillStatus::Paused | BackfillStatus::Cancelled)))
    }

    /// One sweep: claims batches in key order from the sweep's cursor until none is left
    /// after it, computing each on the worker threads while this thread writes the previous
    /// one and claims the next. Returns the smallest and largest keys it claimed.
    pub(super) fn sweep<F>(
        &self,
        db: &Database,
        progress: &Progress,
        workers: &rayon::ThreadPool,
        compute: &F,
        report: &mut BackfillReport,
        sweep: &mut Sweep,
    ) -> Result<Option<(i64, i64)>>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync,
    {
        let mut keys: Option<(i64, i64)> = None;
        let limit = self.effective_batch_size();
        // SQLite: one connection claims and writes every batch of the sweep, one after the
        // other (a write checks what was committed since its batch's claim on the same
        // connection: see `Batch::seen`); between them it holds no transaction, so no lock.
        // PostgreSQL: a connection from the pool for each claim and each write.
        let mut held = match backend::of(db.backend()).batch_writes() {
            BatchWrites::OnTheClaimingConnection => Some(db.get()?),
            BatchWrites::OneStatement => None,
        };
        let mut current = on(db, &mut held, |conn| {
            self.claim_next(conn, sweep, limit, self.upper_key, self.lease.as_ref())
        })?;
        // The batch computed in the previous round, written while the workers compute the
        // current one: the workers wait neither for claims nor for writes.
        let mut computed: Option<(Batch, Vec<Vec<Option<String>>>)> = None;
        // SQLite: whether the next batch is computed on this thread, after the write and the
        // claim, instead of on the worker threads beside them: when the last batch's compute
        // took under a tenth of this thread's database work, handing it over costs more
        // (waking threads that then compete with this one for the cores) than it saves.
        let mut compute_here = false;
        while let Some(batch) = current.take() {
            // Between batches: a run that lost its lock stops here; so does one that an
            // operator paused or cancelled, and one out of inline time (`auto`). The batch
            // claimed is given back (its rows stay pending).
            progress.ensure_lock_held()?;
            let stopped = self.stopped_by_operator(db)?;
            let out_of_time = self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline);
            if stopped.is_some() || out_of_time {
                if let Some((done, outputs)) = computed.take() {
                    on(db, &mut held, |conn| {
                        self.write_batch(conn, &done, outputs, progress, report, sweep)
                    })?;
                }
                on(db, &mut held, |conn| {
                    self.give_up(conn, &batch);
                    Ok(())
                })?;
                report.unfinished = true;
                report.stopped_by = stopped;
                return Ok(keys);
            }
            if let Some((first, last)) = batch.keys() {
                keys = Some(keys.map_or((first, last), |(lo, hi)| (lo.min(first), hi.max(last))));
            }
            let mut next_sweep = sweep.clone();
            let timed = |pool: Option<&rayon::ThreadPool>| {
                let started = Instant::now();
                let outputs = batch.compute(pool, compute);
                (outputs, started.elapsed())
            };
            let (outputs, written, next) = std::thread::scope(|scope| {
                let computing = (!compute_here).then(|| scope.spawn(|| timed(Some(workers))));
                let database = Instant::now();
                // PostgreSQL: the previous batch is written on a connection of its own while
                // this thread claims the next one on another, so neither waits for the other's
                // round trips. SQLite: one after the other on the held connection (its single
                // writer's commit would wait for a concurrent claim's read, and the busy
                // handler sleeps whole milliseconds).
                let mut written_sweep = sweep.clone();
                let (sequential, writing) = match held.as_mut() {
                    Some(conn) => {
                        let written = computed.take().map(|(done, outputs)| {
                            self.write_batch(
                                conn,
                                &done,
                                outputs,
                                progress,
                                report,
                                &mut written_sweep,
                            )
                            .map(|()| written_sweep.skipped_from)
                        });
                        (written, None)
                    }
                    None => {
                        let writing = computed.take().map(|(done, outputs)| {
                            let report = &mut *report;
                            scope.spawn(move || {
                                let mut conn = db.get()?;
                                self.write_batch(
                                    &mut conn,
                                    &done,
                                    outputs,
                                    progress,
                                    report,
                                    &mut written_sweep,
                                )
                                .map(|()| written_sweep.skipped_from)
                            })
                        });
                        (None, writing)
                    }
                };
                let next = on(db, &mut held, |conn| {
                    self.claim_next(
                        conn,
                        &mut next_sweep,
                        limit,
                        self.upper_key,
                        self.lease.as_ref(),
                    )
                });
                let written = sequential.or_else(|| {
                    writing.map(|w| {
                        w.join().unwrap_or_else(|panic| {
                            Err(Error::Panic {
                                message: panic_message(&*panic),
                            })
                        })
                    })
                });
                let database = database.elapsed();
                let (outputs, took) = match computing {
                    Some(computing) => computing.join().unwrap_or_else(|panic| {
                        let error = Error::Panic {
                            message: panic_message(&*panic),
                        };
                        (Err(error), Duration::ZERO)
                    }),
                    None => timed(None),
                };
                compute_here = held.is_some() && took < database / 10;
                (outputs, written, next)
            });
            *sweep = next_sweep;
            if let Some(written) = written {
                if let Some(key) = written? {
                    sweep.skipped(key);
                }
            }
            let outputs = match outputs {
                Ok(outputs) => outputs,
                Err(error) => {
                    on(db, &mut held, |conn| {
                        self.give_up(conn, &batch);
                        Ok(())
                    })?;
                    return Err(error);
                }
            };
            computed = Some((batch, outputs));
            current = next?;
        }
        if let Some((done, outputs)) = computed {
            on(db, &mut held, |conn| {
                self.write_batch(conn, &done, outputs, progress, report, sweep)
            })?;
        }
        Ok(keys)
    }
}

/// Runs `f` on the held connection, else on one from the pool.
fn on<T>(
    db: &Database,
    held: &mut Option<PooledConnection>,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    match held {
        Some(conn) => f(conn),
        None => f(&mut *db.get()?),
    }
}
