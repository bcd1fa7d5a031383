//! Where the test databases come from: the servers' common interface, and the variables that
//! choose and keep them.

use crate::access::connection::Database;
use crate::foundation::error::Result;

/// The variable that names an existing PostgreSQL server for the tests.
pub const TEST_DATABASE_URL: &str = "MIGRATOR_TEST_DATABASE_URL";

/// The variable that keeps the test databases for inspection (`1`, `true`, `yes`, `on`).
pub const KEEP_TEST_DB: &str = "KEEP_TEST_DB";

/// Whether `KEEP_TEST_DB` asks to keep the databases.
pub(crate) fn keep_test_db() -> bool {
    std::env::var(KEEP_TEST_DB).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Writes `message` to the process's standard error, past the test harness's output capture
/// (what `KEEP_TEST_DB` prints is for the user to see whether the test passes or not).
pub(crate) fn tell(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Where the databases of `backend` come from (each started once per process).
pub(crate) trait Server: Sync {
    /// Builds the template of `state` (`build` migrates a fresh database) unless one with the
    /// same key exists; returns its name.
    fn template(&self, key: &str, build: &dyn Fn(&Database) -> Result<()>) -> Result<String>;

    /// A new database, a copy of `template` or empty: its name and a pool on it.
    fn create(&self, template: Option<&str>) -> Result<(String, Database)>;

    /// Drops database `name`; problems are reported on standard error, not raised.
    fn remove(&self, name: &str);
}
