//! The helpers of the app's tests: those the library's tests share ([`migrator_test_support`]),
//! and the app's own: its `user_profiles` table ([`users`]), `migrate_kroger_passwords`
//! ([`kroger_cli`]) and the demo server ([`server`]) as child processes.

// Each test binary is its own crate and reaches a different part of these helpers.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod kroger_cli;
pub mod server;
pub mod users;

pub use migrator_test_support::*;

/// A child command with none of the variables migrator or the app read inherited from the
/// test's environment: a test sets exactly what it means.
pub fn isolated(program: &str) -> std::process::Command {
    let mut cmd = migrator_test_support::isolated(program);
    for var in smart_meal_planner::demo::VARS {
        cmd.env_remove(var);
    }
    cmd
}
