//! Not public API: one background worker driven a half-step at a time, for the property tests
//! of the claim/write protocol (`tests/protocol_props.rs`), which interleave several workers'
//! claims and writes with application writes, operator actions and crashes.
//!
//! It runs exactly the code of a worker thread's step ([`WorkerThread`]'s `step`), split where
//! a thread computes: [`SteppedWorker::claim`] is its `begin` (read the active backfills,
//! claim a batch, record its lease; or end a sweep, finish the backfill),
//! [`SteppedWorker::finish`] is its `complete` (compute, guarded write, progress, lease
//! released). What a thread would sleep (waits, backoffs) is not slept. Each `SteppedWorker` is
//! a process of its own: its own pool, sweep and worker row (`host:pid:label`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Begun, InFlight, Shared, Step, WorkerThread};
use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::records::backfill::store;

/// What [`SteppedWorker::claim`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// It claimed these keys (in key order); they are in flight until
    /// [`SteppedWorker::finish`] or [`SteppedWorker::crash`].
    Batch(Vec<i64>),
    /// Bookkeeping without a batch (a sweep ended, the backfill finished or failed).
    Again,
    /// The pending rows left are locked or leased by others (a thread would wait).
    Wait,
    /// No active backfill.
    Idle,
}

/// One worker, a half-step at a time (see the module's documentation).
pub struct SteppedWorker {
    shared: Shared,
    me: WorkerThread,
    in_flight: Option<Box<InFlight>>,
}

impl std::fmt::Debug for SteppedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteppedWorker")
            .field("id", &self.me.id())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl SteppedWorker {
    /// A worker of `db` under `config`, recorded as `host:pid:label`.
    pub fn new(db: &Database, config: &Config, label: &str) -> SteppedWorker {
        SteppedWorker {
            shared: Shared {
                db: db.with_own_pool(2),
                config: config.clone(),
                stop: AtomicBool::new(false),
                until_idle: true,
                lanes: Mutex::new(HashMap::new()),
                rows: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                error: Mutex::new(None),
            },
            // Not thread 0: thread 0 of a process also removes long-dead workers' rows.
            me: WorkerThread::new(label.to_owned(), 1000),
            in_flight: None,
        }
    }

    /// Its worker row's id.
    pub fn id(&self) -> &str {
        self.me.id()
    }

    /// The keys of the batch it claimed and has not written, if any.
    pub fn in_flight(&self) -> Option<Vec<i64>> {
        self.in_flight
            .as_ref()
            .map(|f| f.batch.rows.iter().map(|r| r.key).collect())
    }

    /// The first half of a step: claims a batch (or ends a sweep). An error if a batch is in
    /// flight already (a thread has one at a time).
    pub fn claim(&mut self) -> Result<Claim> {
        if self.in_flight.is_some() {
            return Err(Error::Testing {
                reason: format!("{} claims while a batch is in flight", self.me.id()),
            });
        }
        Ok(match self.me.begin(&self.shared)? {
            Begun::Claimed(flight) => {
                let keys = flight.batch.rows.iter().map(|r| r.key).collect();
                self.in_flight = Some(flight);
                Claim::Batch(keys)
            }
            Begun::Done(Step::Idle) => Claim::Idle,
            Begun::Done(Step::Locked(_) | Step::Retry { .. } | Step::FinishingElsewhere) => {
                Claim::Wait
            }
            Begun::Done(
                Step::SweepEnded
                | Step::Finished
                | Step::Failed
                | Step::HeldForReplicas(_)
                | Step::Stopped
                | Step::Wrote { .. },
            ) => Claim::Again,
        })
    }

    /// The second half: computes and writes the batch in flight; returns the rows written
    /// (rows the guard left alone are not).
    pub fn finish(&mut self) -> Result<u64> {
        let Some(flight) = self.in_flight.take() else {
            return Err(Error::Testing {
                reason: format!("{} has no batch in flight", self.me.id()),
            });
        };
        let before = self.shared.rows.load(Ordering::Relaxed);
        self.me.complete(&self.shared, *flight)?;
        Ok(self.shared.rows.load(Ordering::Relaxed) - before)
    }

    /// The process dies: the batch in flight is dropped unwritten, its lease left in place
    /// (until it expires or [`SteppedWorker::reap`]).
    pub fn crash(&mut self) {
        self.in_flight = None;
    }

    /// What the clean-up of dead workers does to this one once its process is gone: its row,
    /// and with it its lease, is removed.
    pub fn reap(&self) -> Result<()> {
        let Some(tables) = self.me.tables() else {
            return Ok(());
        };
        let mut conn = self.shared.db.get()?;
        store::remove_worker(&mut conn, tables, self.me.id())
    }
}
