//! The SQLite migration lock: an exclusive `flock` on `PATH.migrator-lock`.
//!
//! SQLite has no advisory locks, and holding its own write lock for the whole run would block
//! the migrations themselves. A lock on a file beside the database is shared by every process
//! on the host (and every thread: each acquisition opens the file anew), and the kernel drops
//! it when its process dies, so it never goes stale. The file records who holds it, for the
//! waiting runners' log lines; it is left in place after release (deleting it would race).
//! An in-memory database (`sqlite://:memory:`) lives in one connection of one process; a
//! process-wide flag serializes runners on it (a flag rather than a mutex guard, so that the
//! held lock can be shared with the running migration's threads).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access::connection::Database;
use crate::foundation::error::{Error, Result};

/// Whether a runner of this process holds the in-memory database's lock.
static MEMORY_HELD: AtomicBool = AtomicBool::new(false);

pub(crate) enum FileLock {
    File {
        file: File,
        path: PathBuf,
    },
    /// Holds [`MEMORY_HELD`]; clears it when dropped.
    Memory,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The lock file of the SQLite database at `db_path`: beside the database file itself, found
/// through symlinks, `.`/`..` and relative paths, so that two ways of naming one database
/// share one lock.
pub(crate) fn lock_path(db_path: &str) -> PathBuf {
    let path = db_path.strip_prefix("file:").unwrap_or(db_path);
    let path = path.split('?').next().unwrap_or(path);
    let mut lock = canonical(Path::new(path)).into_os_string();
    lock.push(".migrator-lock");
    PathBuf::from(lock)
}

/// `path` with every symlink resolved; for a file not created yet, its resolved directory and
/// its name; as written when not even the directory exists (the connection fails then anyway).
fn canonical(path: &Path) -> PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).map_or_else(|_| path.to_owned(), |dir| dir.join(name))
}

impl FileLock {
    pub(crate) fn acquire(db: &Database, timeout: Duration) -> Result<FileLock> {
        if db.url().is_sqlite_memory() {
            crate::records::lock::wait_for(
                "(in-memory SQLite)",
                timeout,
                || {
                    Ok(MEMORY_HELD
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                        .then_some(()))
                },
                || Some("another thread of this process".into()),
            )?;
            return Ok(FileLock::Memory);
        }
        let path = lock_path(db.url().sqlite_path().unwrap_or_default());
        let io_error = |source| Error::Io {
            context: format!("cannot take the migration lock {path:?}"),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        let what = format!("({})", path.display());
        crate::records::lock::wait_for(
            &what,
            timeout,
            || match file.try_lock() {
                Ok(()) => Ok(Some(())),
                Err(TryLockError::WouldBlock) => Ok(None),
                Err(TryLockError::Error(e)) => Err(io_error(e)),
            },
            || {
                let mut holder = String::new();
                File::open(&path).ok()?.read_to_string(&mut holder).ok()?;
                let holder = holder.trim();
                (!holder.is_empty()).then(|| holder.to_owned())
            },
        )?;
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let holder = format!(
            "{} since {}",
            crate::records::tracking::runner_identity(),
            crate::records::lock::format_utc(since)
        );
        // Best effort: the holder line only serves the waiters' logs.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()));
        Ok(FileLock::File { file, path })
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            FileLock::File { path, .. } => format!("lock file {}", path.display()),
            FileLock::Memory => "in-memory SQLite lock".into(),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        match self {
            FileLock::File { file, .. } => {
                let _ = file.set_len(0);
                // Closing the file releases the lock too; unlock first to be explicit.
                let _ = file.unlock();
            }
            FileLock::Memory => MEMORY_HELD.store(false, Ordering::Release),
        }
    }
}
