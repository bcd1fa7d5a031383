//! The guard of a taken migration lock: which backend's lock it holds, checking it, and
//! releasing it when dropped.

use std::time::Duration;

use super::{postgres, sqlite};
use crate::access::connection::Database;
use crate::access::url::Backend;
use crate::foundation::error::Result;

/// Held while migrating; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// Boxed: the lock's connection (Diesel 2.4's `PgConnection`) is ten times the file lock.
    Postgres(Box<postgres::PgLock>),
    Sqlite(sqlite::FileLock),
}

impl LockGuard {
    /// Takes the migration lock of `db`, waiting up to `timeout`.
    pub fn acquire(db: &Database, timeout: Duration) -> Result<LockGuard> {
        let start = std::time::Instant::now();
        let inner = match db.backend() {
            Backend::Postgres => Inner::Postgres(Box::new(postgres::PgLock::acquire(db, timeout)?)),
            Backend::Sqlite => Inner::Sqlite(sqlite::FileLock::acquire(db, timeout)?),
        };
        crate::foundation::metrics::lock_acquired(start.elapsed());
        Ok(LockGuard { inner })
    }

    /// Checks that the lock is still held: on PostgreSQL its session can be terminated (by an
    /// administrator, a failover, a network cut) while the run goes on, and then another runner
    /// may take it. The runner checks before each migration, before recording an outcome, and
    /// while a migration runs (at most every 2 seconds, between its units of work).
    pub fn ensure_held(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Postgres(lock) => lock.ensure_held(),
            // The kernel keeps a flock for as long as the file is open.
            Inner::Sqlite(_) => Ok(()),
        }
    }

    /// The tracking table this lock guards: every query of the locked run names it.
    pub(crate) fn tracking_table(&self) -> crate::records::tracking::Table {
        match &self.inner {
            Inner::Postgres(lock) => lock.table(),
            Inner::Sqlite(_) => crate::records::tracking::Table::sqlite(),
        }
    }

    /// A description of the lock (key or file), for logs.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Postgres(lock) => lock.describe(),
            Inner::Sqlite(lock) => lock.describe(),
        }
    }
}
