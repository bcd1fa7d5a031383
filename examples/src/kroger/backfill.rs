//! The backfill of migration 001 (rows with a plaintext and no hash get one): registered as the
//! background backfill `hash_kroger_passwords`, which 001 schedules and any process of the app
//! (its workers, `migrate_kroger_passwords work`) helps with.

use migrator::backfill::{Backfill, BackfillReport, Job};
use migrator::password::{Hasher, Password};
use migrator::{context::Progress, Config, Database, Result};

use super::hasher;

/// The name of the background backfill of migration 001.
pub const HASH_KROGER_PASSWORDS_BACKFILL: &str = "hash_kroger_passwords";

migrator::register_backfill!("hash_kroger_passwords", job);

/// The registered job: [`backfill`] computed with the process's hasher (`ARGON2_*`).
fn job(_config: &Config) -> Result<Job> {
    let hasher = hasher()?;
    // The computation's version: bumped when it changes, so that workers of another version
    // leave a backfill scheduled with this one alone during a rolling deploy. (The Argon2
    // parameters are not part of it: every hash carries its own, and verifies whatever the
    // process's current ones.)
    Ok(
        Job::new(backfill(), move |inputs| hash_row(&hasher, inputs))
            .parameters("argon2id phc+salt v1"),
    )
}

/// A row's outputs: the hash and salt of its plaintext.
fn hash_row(hasher: &Hasher, inputs: &[Option<&str>]) -> Result<Vec<Option<String>>> {
    let Some(plaintext) = inputs.first().copied().flatten() else {
        return Ok(vec![None, None]);
    };
    // Hashed exactly as stored: empty, padded, huge or hash-looking strings are passwords.
    let hashed = hasher.hash(&Password::new(plaintext))?;
    Ok(vec![Some(hashed.phc), Some(hashed.salt)])
}

/// The backfill: rows with a plaintext and no hash get a hash and its salt; once none is
/// left, the partial index on hashed rows is built.
pub fn backfill() -> Backfill {
    let mut backfill = Backfill::new("user_profiles", "id");
    backfill
        .input("kroger_password")
        .output("kroger_password_hash")
        .output("kroger_password_salt")
        .pending_when("kroger_password IS NOT NULL AND kroger_password_hash IS NULL")
        // Built once the rows are hashed, by whichever process completes the backfill: not
        // at start-up, where it would read the whole table.
        .then_create_index(
            crate::migrations::HASH_INDEX,
            "user_profiles (kroger_password_hash) WHERE kroger_password_hash IS NOT NULL",
        );
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
    /// From `MIGRATION_INLINE_BACKFILL_THREADS` and `MIGRATION_BATCH_SIZE` as read into `config`.
    pub fn from_config(config: &Config) -> BackfillOptions {
        BackfillOptions {
            threads: config.worker_threads(),
            batch_size: config.batch_size(),
        }
    }
}

/// Hashes every pending row inline (shared with other processes running it at the same time),
/// outside any migration: for benchmarks and tests.
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
    backfill.run(db, progress, |inputs| hash_row(&hasher, inputs))
}
