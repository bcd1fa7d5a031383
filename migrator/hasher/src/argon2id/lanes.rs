//! Lanes in parallel: the segments of one slice filled by the calling thread and helper threads
//! lent from one small persistent pool (one thread fewer than the cores, started on first use).
//!
//! Helpers are lent only to spare cores: every thread inside a hash counts in [`BUSY`], and a
//! hash takes helpers only while callers and helpers together stay within the cores. Many
//! hashes at once (a backfill on all cores) therefore fill their lanes each on its own thread,
//! as before, with no synchronisation between threads; one hash on an idle machine (a login)
//! gets up to `p` threads. A caller that is itself a worker of a rayon pool always fills its
//! lanes itself: its pool is the parallelism there, and rayon's wait for the helpers would run
//! other jobs of that pool on the waiting thread, in the middle of this hash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Stack wiped after a hash or a helper's share of a slice: well above what the fill, the
/// kernels and BLAKE2b use (about 12 KiB), so that none of their temporaries stays behind.
pub(super) const STACK_WIPE: usize = 32 * 1024;

/// Threads inside an Argon2id fill in this process: the callers of `hash` and the helpers lent
/// to them.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// How many threads may fill the lanes of one hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaneThreads {
    /// Up to one per lane: the caller and helpers lent from a small pool, on spare cores only.
    /// A caller that is a worker of a rayon pool fills its lanes itself.
    Auto,
    /// The calling thread alone, lanes one after another (the benchmarks' baseline).
    Inline,
    /// The caller and `n - 1` helpers (at most one per lane), spare cores or not: for tests.
    #[cfg(test)]
    Exactly(usize),
}

/// The cores this process may use.
pub(super) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The helpers' pool, if there are spare cores and the threads could be started.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = cores().saturating_sub(1);
        if helpers == 0 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(helpers)
            .thread_name(|i| format!("argon2-lanes-{i}"))
            .build()
            .inspect_err(|e| log::warn!("Argon2 lanes filled one after another: {e}"))
            .ok()
    })
    .as_ref()
}

/// The threads filling one hash: the caller and `helpers` threads of the pool. Counts in
/// [`BUSY`] until dropped.
pub(super) struct Crew {
    helpers: usize,
    pool: Option<&'static rayon::ThreadPool>,
}

impl Crew {
    /// The crew for a hash of `lanes` lanes.
    pub(super) fn hire(lanes: usize, threads: LaneThreads) -> Crew {
        let cores = cores();
        let wanted = match threads {
            LaneThreads::Inline => 0,
            LaneThreads::Auto if rayon::current_thread_index().is_some() => 0,
            LaneThreads::Auto => lanes.min(cores) - 1,
            #[cfg(test)]
            LaneThreads::Exactly(n) => n.min(lanes).saturating_sub(1),
        };
        let pool = if wanted > 0 { pool() } else { None };
        let wanted = if pool.is_some() { wanted } else { 0 };
        let mut busy = BUSY.load(Ordering::Relaxed);
        loop {
            let helpers = match threads {
                #[cfg(test)]
                LaneThreads::Exactly(_) => wanted,
                _ => wanted.min(cores.saturating_sub(busy + 1)),
            };
            match BUSY.compare_exchange_weak(
                busy,
                busy + 1 + helpers,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Crew { helpers, pool },
                Err(now) => busy = now,
            }
        }
    }

    /// Calls `work` on every item, on this thread and the helpers (each takes the next item
    /// left), and returns when all are done. Each helper wipes its stack after its share.
    pub(super) fn each<T: Send>(&self, items: Vec<T>, work: impl Fn(T) + Sync) {
        let pool = match self.pool {
            Some(pool) if self.helpers > 0 && items.len() > 1 => pool,
            _ => return items.into_iter().for_each(work),
        };
        let helpers = self.helpers.min(items.len() - 1);
        let queue = Mutex::new(items.into_iter());
        pool.in_place_scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|_| {
                    drain(&queue, &work);
                    zeroize::zeroize_stack::<STACK_WIPE>();
                });
            }
            drain(&queue, &work);
        });
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        BUSY.fetch_sub(1 + self.helpers, Ordering::Relaxed);
    }
}

/// Takes items from `queue` and works on them until none is left. Not inlined, so that a wipe
/// of the stack after it reaches the frames of `work`.
#[inline(never)]
fn drain<T>(queue: &Mutex<std::vec::IntoIter<T>>, work: &impl Fn(T)) {
    let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    while let Some(item) = next() {
        work(item);
    }
}
