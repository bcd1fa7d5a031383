//! Backups before migrating (`MIGRATION_BACKUP_BEFORE`).
//!
//! Taken under the migration lock, only when something is pending, before the first pending
//! migration runs. A backup that fails stops the run: nothing is migrated, and the error says
//! why. Files are named `DATABASE-YYYYMMDDTHHMMSSZ-before-FIRST_PENDING.{dump,sqlite3}` in
//! `MIGRATION_BACKUP_DIR` (default `./backups`), created with mode 0600 under a temporary
//! name, fsynced, then moved into place. A backup never replaces another: a second one in the
//! same second gets `-2` before the extension (then `-3`, ...).
//!
//! An in-memory SQLite database (`sqlite://:memory:`) cannot be backed up (it lives in the one
//! connection of its pool, which the run holds): that is an error, not a wait.
//!
//! - PostgreSQL: the real `pg_dump` (`MIGRATION_PG_DUMP`), custom format (restore with
//!   `pg_restore`). The password reaches it through `PGPASSWORD`, never its arguments.
//! - SQLite: `VACUUM INTO`, SQLite's online backup into a fresh database file.
//!
//! How each backend names and writes its backup is its backend file's (`backend/`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::backend;
use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};

pub(crate) use crate::foundation::report::Backup;

/// A backup that cannot be taken, for a reason of the library's own.
fn refused(context: impl Into<String>) -> Error {
    Error::Backup {
        context: context.into(),
        source: None,
    }
}

/// A backup step that failed with an I/O error, kept as the source.
fn failed(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Backup {
        context,
        source: Some(Box::new(source)),
    }
}

/// The database's name, for file names and prompts.
pub(crate) fn database_name(db: &Database) -> Result<String> {
    backend::of(db.backend()).database_name(db)
}

fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // 2026-11-28T00:29:22Z -> 20261128T002922Z
    crate::records::lock::format_utc(secs).replace(['-', ':'], "")
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Removes the temporary file unless the backup completed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Backs `db` up; `label` ends the file name (`before-ID`, or `manual`).
pub(crate) fn take(db: &Database, config: &Config, label: &str) -> Result<Backup> {
    if db.url().is_sqlite_memory() {
        return Err(refused(
            "an in-memory SQLite database (sqlite://:memory:) cannot be backed up: it lives \
             in this process only; use a database file, or set MIGRATION_BACKUP_BEFORE=false",
        ));
    }
    let dir = config.backup_dir();
    std::fs::create_dir_all(dir).map_err(failed(format!(
        "cannot create the backup directory {}",
        dir.display()
    )))?;
    let dialect = backend::of(db.backend());
    let database = dialect.database_name(db)?;
    let extension = dialect.backup_extension();
    let stem = format!("{}-{}-{}", safe(&database), timestamp(), safe(label));
    let temporary = dir.join(format!(".{stem}.{}.partial", std::process::id()));
    // Created empty with mode 0600 before anything is written into it.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(failed(format!("cannot create {}", temporary.display())))?;
    let mut partial = Partial(Some(temporary.clone()));
    log::info!("Backing up database {database} into {}", dir.display());
    dialect.backup_into(db, config, &temporary)?;
    let file =
        File::open(&temporary).map_err(failed(format!("cannot reopen {}", temporary.display())))?;
    file.sync_all().map_err(failed(format!(
        "cannot flush {} to disk",
        temporary.display()
    )))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let path = publish(&temporary, dir, &stem, extension)?;
    partial.0 = None;
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    log::info!("Backup written: {} ({bytes} bytes)", path.display());
    Ok(Backup { path, bytes })
}

/// The most backups of one database, label and second kept side by side.
const MAX_SAME_NAME: u32 = 1000;

/// Moves the finished backup `temporary` to `DIR/STEM.EXT`, or `STEM-2.EXT`, `STEM-3.EXT`, ...
/// when that name is taken: never over another backup. A hard link claims a name atomically
/// (it fails if the name exists, where a rename would replace it); on a file system without
/// hard links, a free name is renamed into (the migration lock serializes backups of one
/// database).
fn publish(temporary: &Path, dir: &Path, stem: &str, extension: &str) -> Result<PathBuf> {
    for n in 1..=MAX_SAME_NAME {
        let name = match n {
            1 => format!("{stem}.{extension}"),
            n => format!("{stem}-{n}.{extension}"),
        };
        let path = dir.join(name);
        let moved = match std::fs::hard_link(temporary, &path) {
            Ok(()) => {
                // Published; a leftover temporary name is only clutter.
                let _ = std::fs::remove_file(temporary);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) if !path.exists() => std::fs::rename(temporary, &path),
            Err(e) => Err(e),
        };
        return moved.map(|()| path.clone()).map_err(failed(format!(
            "cannot move the backup into {}",
            path.display()
        )));
    }
    Err(refused(format!(
        "{MAX_SAME_NAME} backups named {stem}.{extension} already exist in {}",
        dir.display()
    )))
}
