//! The server's Argon2 pool: a fixed set of threads, one per core, with a bounded queue.
//!
//! Argon2 memory is `ARGON2_MEMORY_KIB` per hash, and `migrator::password` keeps one block per
//! thread that hashes, reused for every later hash on that thread. On tokio's blocking pool
//! (up to 512 threads, created on demand) that is one block per blocking thread that ever
//! hashed: hundreds of concurrent requests left hundreds of blocks resident. Here only the
//! pool's threads hash, so the process holds at most one block per core, whatever the load.
//!
//! A request that finds the queue full gets `None` from [`HashPool::run`] at once (the handler
//! answers 429 with `Retry-After`): a queued job holds a few bytes (the password), never Argon2
//! memory, and a full queue is a client's cue to come back, not a reason to grow.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// The variable that bounds the queue: how many hashes may wait for a thread (default 64 per
/// thread; at least 1).
pub(super) const HASHING_QUEUE_LIMIT: &str = "HASHING_QUEUE_LIMIT";

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool. Dropping it lets its threads finish the queued jobs and exit.
pub(super) struct HashPool {
    sender: SyncSender<Job>,
    threads: usize,
    queue: usize,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool")
            .field("threads", &self.threads)
            .field("queue", &self.queue)
            .finish()
    }
}

impl HashPool {
    /// Starts `threads` threads (at least one) behind a queue of `queue` jobs (at least one).
    /// An error if no thread could be started.
    pub(super) fn start(threads: usize, queue: usize) -> std::io::Result<HashPool> {
        let threads = threads.max(1);
        let queue = queue.max(1);
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = 0;
        let mut last_error = None;
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            match std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&receiver))
            {
                Ok(_) => started += 1,
                Err(e) => last_error = Some(e),
            }
        }
        match (started, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(HashPool {
                sender,
                threads: started,
                queue,
            }),
        }
    }

    /// The number of hashing threads.
    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a pool thread and waits for its result without holding a runtime thread;
    /// `None` when the queue is full (or the pool stopped).
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let boxed: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        match self.sender.try_send(boxed) {
            Ok(()) => rx.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}

/// A pool thread: takes jobs one at a time until the pool is dropped.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                // A panicking job (a bug) must not take the thread, and its block, with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// `HASHING_QUEUE_LIMIT` from `value` (default 64 per thread), or the configuration error.
pub(super) fn queue_limit(value: Option<String>, threads: usize) -> Result<usize, String> {
    match value {
        None => Ok(64 * threads.max(1)),
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=100_000) => Ok(n),
            _ => Err(format!(
                "invalid {HASHING_QUEUE_LIMIT} value {v:?}: expected a whole number from 1 to \
                 100000"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_at_once_and_the_threads_are_fixed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = HashPool::start(1, 1).unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        runtime.block_on(async {
            let pause = || tokio::time::sleep(std::time::Duration::from_millis(200));
            // One job runs (blocked), one waits in the queue: the third is refused.
            let blocked = {
                let wait = Arc::clone(&wait);
                pool.run(move || {
                    let _ = wait.lock().map(|w| w.recv());
                    std::thread::current().name().map(str::to_owned)
                })
            };
            tokio::pin!(blocked);
            tokio::select! {
                _ = &mut blocked => panic!("finished while blocked"),
                () = pause() => {}
            }
            let queued = pool.run(|| std::thread::current().name().map(str::to_owned));
            tokio::pin!(queued);
            tokio::select! {
                _ = &mut queued => panic!("finished while the thread is busy"),
                () = pause() => {}
            }
            assert_eq!(pool.run(|| 1).await, None);
            release.send(()).unwrap();
            assert_eq!(blocked.await.flatten().as_deref(), Some("argon2-0"));
            assert_eq!(queued.await.flatten().as_deref(), Some("argon2-0"));
            assert_eq!(pool.run(|| 2).await, Some(2));
        });
        assert_eq!(queue_limit(None, 2), Ok(128));
        assert_eq!(queue_limit(Some("5".into()), 2), Ok(5));
        assert!(queue_limit(Some("0".into()), 2).is_err());
    }
}
