//! The Smart Meal Planner backend's data layer, the reference app of `migrator`.
//!
//! - [`migrations`]: `001_hash_kroger_passwords`, which hashes every plaintext Kroger password
//!   in `user_profiles` with Argon2id, non-destructively and resumably.
//! - [`kroger`]: the password paths the app uses (set, verify with lazy upgrade) and the
//!   backfill that migration 001 and `migrate_kroger_passwords work` share.
//! - [`commands`] and [`SmartMealPlanner`]: the app's part of the operator command line
//!   (`verify`, `work`).
//!
//! A binary that uses this library links its migrations by naming the crate
//! (`use smart_meal_planner as _;`, or any item of it).

#![warn(missing_docs)]

pub mod commands;
pub mod demo;
pub mod kroger;
pub mod migrations;

use migrator::cli::App;

/// The app's part of [`migrator::cli`]: its own [`commands`] beside the generic ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmartMealPlanner;

impl App for SmartMealPlanner {
    type Command = commands::Commands;

    /// The Argon2 parameters (`ARGON2_*`): a bad value stops every command before it writes.
    fn check_config(&self) -> migrator::Result<()> {
        kroger::hasher().map(drop)
    }
}

/// The `migrate_kroger_passwords` command: parses the arguments, runs, returns the exit code.
pub fn migrate_kroger_passwords_main() -> std::process::ExitCode {
    migrator::cli::main("migrate_kroger_passwords", &SmartMealPlanner)
}
