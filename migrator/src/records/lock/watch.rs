//! The held lock as a running migration sees it: a liveness flag, refreshed on the lock's
//! connection at most every [`CHECK_INTERVAL`], that the migration's progress reporter, its
//! context and the backfill consult between units of work.
//!
//! A PostgreSQL lock session can end while a migration runs (terminated by an administrator,
//! a failover, a network or idle cut); another runner may then take the lock. Checking only
//! before recording the outcome would let a long non-transactional migration run on for hours
//! beside that runner; with the watch it stops within one check interval of its next unit of
//! work, with [`Error::LockLost`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::LockGuard;
use crate::foundation::error::{Error, Result};

/// How often, at most, a running migration asks the database whether it still holds the lock.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A held [`LockGuard`] shared by the runner and the running migration's reporters. The
/// runner's [`HeldLock`] releases it at the end of the run, even if a reporter clone outlives
/// the run (that clone then reports the lock lost).
pub(crate) struct LockWatch {
    guard: Mutex<Option<LockGuard>>,
    lock: String,
    lost: AtomicBool,
    last_check: Mutex<Instant>,
    interval: Duration,
}

impl std::fmt::Debug for LockWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWatch")
            .field("lock", &self.lock)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

/// The runner's handle on a watched lock: dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct HeldLock {
    watch: Arc<LockWatch>,
}

impl HeldLock {
    /// The watch, for the running migration's context and progress reporter.
    pub(crate) fn watch(&self) -> &Arc<LockWatch> {
        &self.watch
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // A reporter clone that outlives the run is told so.
        self.watch.lost.store(true, Ordering::Release);
        let guard = match self.watch.guard.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        // Released here, outside the mutex.
        drop(guard);
    }
}

impl LockWatch {
    /// Watches `guard`, checking at most every `interval`.
    pub(crate) fn hold(guard: LockGuard, interval: Duration) -> HeldLock {
        HeldLock {
            watch: Arc::new(LockWatch {
                lock: guard.describe(),
                guard: Mutex::new(Some(guard)),
                lost: AtomicBool::new(false),
                last_check: Mutex::new(Instant::now()),
                interval,
            }),
        }
    }

    fn lost(&self) -> Error {
        Error::LockLost {
            lock: self.lock.clone(),
        }
    }

    /// Asks the database now (before a migration starts, before an outcome is recorded).
    pub(crate) fn ensure_held(&self) -> Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let check = |guard: &mut Option<LockGuard>| match guard {
            Some(guard) => guard.ensure_held(),
            // Released: the run is over.
            None => Err(self.lost()),
        };
        let held = match self.guard.lock() {
            Ok(mut guard) => check(&mut guard),
            Err(poisoned) => check(&mut poisoned.into_inner()),
        };
        if let Ok(mut last) = self.last_check.lock() {
            *last = Instant::now();
        }
        if let Err(e) = &held {
            self.lost.store(true, Ordering::Release);
            log::error!("Stopping the running migration: {e}");
        }
        held
    }

    /// Cheap enough to call between any two units of work: the last answer, refreshed on the
    /// lock's connection when it is older than the interval.
    pub(crate) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let due = match self.last_check.try_lock() {
            Ok(mut last) if last.elapsed() >= self.interval => {
                *last = Instant::now();
                true
            }
            // Checked recently, or another thread is checking right now.
            _ => false,
        };
        if due {
            self.ensure_held()
        } else {
            Ok(())
        }
    }
}
