//! The run: sweeps of claim, compute and write, until no row is pending.

use std::time::{Duration, Instant};

use super::claim::Batch;
use super::{Backfill, BackfillReport};
use crate::connection::Database;
use crate::context::Progress;
use crate::error::{panic_message, Error, Result};

impl Backfill {
    /// Runs until no row is pending. `compute` gets a row's inputs (in the order of
    /// [`Backfill::input`]) and returns its outputs (in the order of [`Backfill::output`]).
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
            });
        }
        let start = Instant::now();
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("backfill-{i}"))
            .build()
            .map_err(|e| Error::Backfill {
                table: self.table.to_owned(),
                reason: format!("cannot start worker threads: {e}"),
            })?;
        let mut pending = self.remaining(db)?;
        progress.set_total(pending);
        log::info!(
            "Backfill of {}: {pending} rows pending, {} threads, batches of {}",
            self.table,
            self.threads,
            self.effective_batch_size()
        );
        let mut report = BackfillReport::default();
        let mut stalled_sweeps = 0;
        let mut waited = Duration::ZERO;
        let mut previous_keys: Option<(i64, i64)> = None;
        loop {
            progress.ensure_lock_held()?;
            // One sweep: claim batches in key order until none is left after the cursor.
            let claimed_before = report.rows_updated + report.rows_skipped;
            let keys = self.sweep(db, progress, &workers, &compute, &mut report)?;
            if report.unfinished {
                break;
            }
            let claimed = report.rows_updated + report.rows_skipped - claimed_before;
            let left = self.remaining(db)?;
            if left == 0 {
                break;
            }
            if claimed == 0 {
                // Everything left is locked by other transactions: other runners' batches
                // (wait for them, or for their rollback if they die), or an application
                // transaction left open (bounded by wait_for_locked_rows).
                if waited >= self.wait_for_locked {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "{left} pending rows stayed locked by other transactions for {}s",
                            waited.as_secs()
                        ),
                    });
                }
                if waited.as_secs().is_multiple_of(10) && waited.subsec_millis() < 250 {
                    log::info!(
                        "Backfill of {}: {left} pending rows are locked by other transactions \
                         (other runners' batches?); waiting",
                        self.table
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
                waited += Duration::from_millis(250);
            } else if left >= pending
                && matches!((keys, previous_keys), (Some((lo, hi)), Some((plo, phi))) if lo >= plo && hi <= phi)
            {
                // The same rows again, and none resolved: the predicate stays true once written.
                // (Rows that other writers keep adding come with new keys, and do not count.)
                stalled_sweeps += 1;
                if stalled_sweeps >= 3 {
                    return Err(Error::Backfill {
                        table: self.table.to_owned(),
                        reason: format!(
                            "no progress: {left} rows still match the pending predicate after \
                             being written; the predicate must become false once a row is done"
                        ),
                    });
                }
            } else {
                stalled_sweeps = 0;
            }
            pending = left;
            previous_keys = keys;
        }
        report.elapsed = start.elapsed();
        progress.finish();
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

    pub(super) fn sweep<F>(
        &self,
        db: &Database,
        progress: &Progress,
        workers: &rayon::ThreadPool,
        compute: &F,
        report: &mut BackfillReport,
    ) -> Result<Option<(i64, i64)>>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync,
    {
        // The smallest and largest keys this sweep claimed.
        let mut keys: Option<(i64, i64)> = None;
        // The next key to consider; None once the largest key has been claimed.
        let mut cursor = Some(i64::MIN);
        let mut current = self.claim(db, &mut cursor)?;
        // The batch computed in the previous round, written while the workers compute the
        // current one: the workers wait neither for claims nor for writes.
        let mut computed: Option<(Batch, Vec<Vec<Option<String>>>)> = None;
        while let Some(batch) = current.take() {
            // Between batches: a run that lost its lock stops here (its batches roll back).
            progress.ensure_lock_held()?;
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                // `auto`: out of inline time; this batch rolls back, the rest is handed off.
                drop(batch);
                report.unfinished = true;
                break;
            }
            if let (Some(first), Some(last)) = (batch.rows.first(), batch.rows.last()) {
                keys = Some(keys.map_or((first.key, last.key), |(lo, hi)| {
                    (lo.min(first.key), hi.max(last.key))
                }));
            }
            let (outputs, written, next) = std::thread::scope(|scope| {
                let computing = scope.spawn(|| {
                    workers.install(|| {
                        use rayon::prelude::*;
                        batch
                            .rows
                            .par_iter()
                            .map(|row| {
                                let inputs: Vec<Option<&str>> = row
                                    .inputs
                                    .iter()
                                    .map(|v| v.as_deref().map(|s| s.as_str()))
                                    .collect();
                                compute(&inputs)
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                });
                let written = computed
                    .take()
                    .map(|(done, outputs)| self.write_batch(done, outputs, progress, report));
                let next = self.claim(db, &mut cursor);
                (computing.join(), written, next)
            });
            if let Some(written) = written {
                written?;
            }
            let outputs = outputs.map_err(|panic| Error::Panic {
                message: panic_message(&*panic),
            })??;
            computed = Some((batch, outputs));
            current = next?;
        }
        if let Some((done, outputs)) = computed {
            self.write_batch(done, outputs, progress, report)?;
        }
        Ok(keys)
    }
}
