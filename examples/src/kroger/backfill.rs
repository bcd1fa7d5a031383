//! The backfill of migration 001 (rows with a plaintext and no hash get one), shared by the
//! migration and `migrate_kroger_passwords work`.

use std::time::{Duration, Instant};

use migrator::backfill::{Backfill, BackfillReport};
use migrator::password::Password;
use migrator::schema::has_column;
use migrator::{Config, Database, Error, Progress, Result};

use super::hasher;
use crate::commands::WorkOptions;
use crate::migrations::HASH_KROGER_PASSWORDS;

/// The backfill: rows with a plaintext and no hash get a hash and its salt.
pub fn backfill() -> Backfill {
    let mut backfill = Backfill::new("user_profiles", "id");
    backfill
        .input("kroger_password")
        .output("kroger_password_hash")
        .output("kroger_password_salt")
        .pending_when("kroger_password IS NOT NULL AND kroger_password_hash IS NULL");
    backfill
}

/// Threads and batch size of a backfill run.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackfillOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Rows per batch.
    pub batch_size: Option<usize>,
}

impl BackfillOptions {
    /// From `MIGRATION_WORKER_THREADS` and `MIGRATION_BATCH_SIZE` as read into `config`.
    pub fn from_config(config: &Config) -> BackfillOptions {
        BackfillOptions {
            threads: config.worker_threads(),
            batch_size: config.batch_size(),
        }
    }
}

/// Hashes every pending row (shared with other processes running it at the same time).
pub fn run_backfill(
    db: &Database,
    progress: &Progress,
    options: &BackfillOptions,
) -> Result<BackfillReport> {
    let hasher = hasher()?;
    let mut backfill = backfill();
    if let Some(threads) = options.threads {
        backfill.threads(threads);
    }
    if let Some(rows) = options.batch_size {
        backfill.batch_size(rows);
    }
    backfill.run(db, progress, |inputs| {
        let Some(plaintext) = inputs[0] else {
            return Ok(vec![None, None]);
        };
        // Hashed exactly as stored: empty, padded, huge or hash-looking strings are passwords.
        let hashed = hasher.hash(&Password::new(plaintext))?;
        Ok(vec![Some(hashed.phc), Some(hashed.salt)])
    })
}

/// `migrate_kroger_passwords work`: waits until migration 001 has added the hash columns
/// (bounded by `MIGRATION_LOCK_TIMEOUT_SECS`), then helps hash until nothing is pending.
pub fn work(db: &Database, options: &WorkOptions) -> Result<u64> {
    let config = Config::from_env()?;
    // A timeout too large to add to the clock (MIGRATION_LOCK_TIMEOUT_SECS near u64::MAX)
    // means no deadline.
    let deadline = Instant::now().checked_add(config.lock_timeout());
    let mut logged = false;
    loop {
        let mut conn = db.get()?;
        let ready = has_column(&mut conn, "user_profiles", "kroger_password_hash")?
            && has_column(&mut conn, "user_profiles", "kroger_password_salt")?;
        drop(conn);
        if ready {
            break;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(Error::msg(
                "user_profiles has no kroger_password_hash column yet: start migration \
                 001_hash_kroger_passwords (`migrate_kroger_passwords up`, or the app) first",
            ));
        }
        if !logged {
            log::info!("Waiting for migration 001 to add the kroger_password_hash columns");
            logged = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let progress = Progress::new(HASH_KROGER_PASSWORDS, config.progress_interval());
    let report = run_backfill(
        db,
        &progress,
        &BackfillOptions {
            threads: options.threads.or(config.worker_threads()),
            batch_size: options.batch_size.or(config.batch_size()),
        },
    )?;
    Ok(report.rows_updated)
}
