//! The shared test helpers ([`migrator_test_support`]), with the two app programs this package
//! builds for its tests (`demo-server-under-test`, `kroger-cli-under-test`: Cargo only tells a
//! test the binaries of its own package) filled in.

// Each test binary is its own crate and reaches a different part of these helpers.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub use migrator_test_support::*;

/// The demo server as a child process (this package's `demo-server-under-test`).
pub mod server {
    pub use migrator_test_support::server::*;

    /// The demo server binary.
    pub const SERVER: &str = env!("CARGO_BIN_EXE_demo-server-under-test");

    /// [`start_program`] with [`SERVER`].
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
        start_program(SERVER, dir, env)
    }
}

/// The demo server for tests that only need its `/health`.
pub mod demo {
    pub use migrator_test_support::demo::*;

    /// [`start_program`] with this package's demo server.
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Demo {
        start_program(super::server::SERVER, dir, env)
    }
}

/// `migrate_kroger_passwords` as a child process (this package's `kroger-cli-under-test`).
pub mod kroger_cli {
    pub use migrator_test_support::kroger_cli::*;

    /// The command under test.
    pub const CLI: &str = env!("CARGO_BIN_EXE_kroger-cli-under-test");

    /// [`command`] with [`CLI`].
    pub fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        command(CLI, url, args, env)
    }

    /// [`scheduled_with`] with [`CLI`].
    pub fn scheduled(backend: migrator::Backend, rows: i64) -> (super::TestDb, migrator::Database) {
        scheduled_with(CLI, backend, rows)
    }
}
