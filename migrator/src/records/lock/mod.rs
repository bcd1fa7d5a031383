//! The migration lock: one runner migrates, the others wait.
//!
//! - PostgreSQL: a session-level advisory lock, taken on a dedicated connection outside the pool
//!   (never a pooled one, never a transaction-level lock), so that `CREATE INDEX CONCURRENTLY`
//!   in a non-transactional migration does not wait on it, and a killed runner's lock dies with
//!   its session. See `lock/postgres.rs` for the key.
//! - SQLite: an exclusive `flock` on `PATH.migrator-lock` beside the database file, released
//!   by the kernel when the process dies.
//!
//! Both wait up to the configured timeout, polling, and log who holds the lock every
//! `WAIT_LOG_INTERVAL` (10 s). The guard releases the lock on every path, including panics.
//! While a migration runs, the runner checks that the lock is still held at most every
//! `CHECK_INTERVAL`, between the migration's units of work (see `watch.rs`).

mod guard;
mod poll;
pub(crate) mod postgres;
pub(crate) mod sqlite;
mod watch;

pub use guard::LockGuard;
pub(crate) use poll::{format_utc, wait_for};
pub(crate) use watch::LockWatch;
pub(crate) use watch::CHECK_INTERVAL;
