//! The Smart Meal Planner's migrations, in order.

use migrator::connection::has_column;
use migrator::{connection::Backend, migration, Context, Result};

use crate::kroger;

/// The ID of the Kroger password migration.
pub const HASH_KROGER_PASSWORDS: &str = "001_hash_kroger_passwords";

/// The partial index on hashed rows.
pub const HASH_INDEX: &str = "idx_user_profiles_kroger_password_hash";

/// Hashes every plaintext Kroger password.
///
/// 1. adds `kroger_password_hash` and `kroger_password_salt` (text, nullable) if missing;
/// 2. schedules the background backfill `hash_kroger_passwords` (see [`kroger::backfill`]):
///    every row whose `kroger_password` is set and whose hash is NULL gets one, inline, in the
///    background or both per `MIGRATION_BACKFILL` (the app verifies unhashed rows by their
///    plaintext meanwhile); `kroger_password` is kept, so old app versions keep working;
/// 3. once the backfill is complete, whichever process completes it creates
///    `idx_user_profiles_kroger_password_hash` on hashed rows (`CONCURRENTLY` on PostgreSQL,
///    replacing an invalid index left by an interrupted build): the backfill's finishing
///    statement ([`migrator::backfill::Backfill::then_create_index`]), so that start-up in
///    background mode does not wait for an index build over the whole table.
///
/// Not in a transaction: each batch commits on its own, and an interrupted run resumes where
/// it stopped. Every app process's workers help, and so does `migrate_kroger_passwords work`.
#[migration("001_hash_kroger_passwords", transaction = false)]
fn hash_kroger_passwords(ctx: &mut Context<'_>) -> Result<()> {
    // Bad ARGON2_* values fail here, before the schema changes.
    kroger::hasher()?;
    add_columns(ctx)?;
    ctx.backfill(kroger::HASH_KROGER_PASSWORDS_BACKFILL)?;
    Ok(())
}

fn add_columns(ctx: &mut Context<'_>) -> Result<()> {
    match ctx.backend() {
        // The runner sets lock_timeout (MIGRATION_DDL_LOCK_TIMEOUT_MS) and retries the
        // migration while a long transaction holds the table.
        Backend::Postgres => ctx.batch_execute(
            "ALTER TABLE user_profiles
                 ADD COLUMN IF NOT EXISTS kroger_password_hash TEXT,
                 ADD COLUMN IF NOT EXISTS kroger_password_salt TEXT;",
        ),
        _ => {
            for column in ["kroger_password_hash", "kroger_password_salt"] {
                if !has_column(ctx.conn(), "user_profiles", column)? {
                    ctx.batch_execute(&format!(
                        "ALTER TABLE user_profiles ADD COLUMN {column} TEXT"
                    ))?;
                }
            }
            Ok(())
        }
    }
}
