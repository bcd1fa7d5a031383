//! Kroger passwords: the backfill of migration 001, the app's set and verify paths, and the
//! checks of `migrate_kroger_passwords verify`.
//!
//! Storage: `user_profiles.kroger_password_hash` holds an Argon2id PHC string and
//! `kroger_password_salt` its salt. `kroger_password` is the legacy plaintext: migration 001
//! keeps it (old app versions still read and write it); setting a password clears it; `verify
//! --clear-verified-plaintext` removes it once its hash is verified. While a row has a
//! plaintext, verification trusts the plaintext (an old version may have changed it after the
//! row was hashed) and repairs the hash.
//!
//! Files: `backfill` (migration 001's registered background backfill),
//! `passwords` (the set and verify paths), `verify` (the checks of `migrate_kroger_passwords
//! verify`); this file has the hasher and the helpers they share.

mod backfill;
mod passwords;
mod verify;

use std::sync::OnceLock;

use migrator::password::{Hasher, Params};
use migrator::{connection::Backend, AnyConnection, Result};

pub use backfill::{backfill, run_backfill, BackfillOptions, HASH_KROGER_PASSWORDS_BACKFILL};
pub use passwords::{
    read_kroger_password, set_kroger_password, store_kroger_password_hash, verify_kroger_password,
    CheckedPassword, StoredPassword, Verification,
};
pub use verify::verify;

static PARAMS: OnceLock<Params> = OnceLock::new();

/// Sets the Argon2 parameters for this process, overriding `ARGON2_*` (call before hashing).
/// Returns false if they were already set.
pub fn set_hash_params(params: Params) -> bool {
    PARAMS.set(params).is_ok()
}

/// The hasher: parameters from [`set_hash_params`], else `ARGON2_MEMORY_KIB`,
/// `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`, else the defaults (m=19456, t=2, p=1).
pub fn hasher() -> Result<Hasher> {
    match PARAMS.get() {
        Some(params) => Hasher::new(*params),
        None => Hasher::new(Params::from_env()?),
    }
}

/// Runs `f` in a transaction holding the write lock on what it reads: PostgreSQL locks the
/// rows `f` reads `FOR UPDATE`, SQLite takes the database's write lock at `BEGIN IMMEDIATE`.
/// So a comparison made in Rust still holds when `f` writes, and no secret needs binding into
/// a guarded `UPDATE` (where `log_statement`, `log_min_duration_statement` or pgaudit would
/// write it into the server log). Inside a caller's transaction it is a savepoint, and the
/// locks last until the caller's transaction ends.
pub(crate) fn locked<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    use diesel::connection::{SimpleConnection, TransactionManager};
    use diesel::Connection;
    type Manager = <AnyConnection as Connection>::TransactionManager;
    let nested = matches!(
        Manager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    );
    if nested || conn.backend() == Backend::Postgres {
        return conn.transaction(f);
    }
    // Diesel's SQLite transactions are deferred: they would take the write lock only at the
    // UPDATE, after the read.
    conn.batch_execute("BEGIN IMMEDIATE")?;
    let result = f(conn).and_then(|value| {
        conn.batch_execute("COMMIT")?;
        Ok(value)
    });
    if result.is_err() {
        // Ends the transaction after a failed statement or COMMIT.
        let _ = conn.batch_execute("ROLLBACK");
    }
    result
}

/// `FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the write lock.
pub(crate) fn for_update(conn: &AnyConnection) -> &'static str {
    match conn.backend() {
        Backend::Postgres => " FOR UPDATE",
        _ => "",
    }
}
