//! What `#[migrator::test]` expands to calls: a database for the test, its arguments, and the
//! messages of a failure. Not public API (reached through `migrator::__private`).

use std::fmt::Debug;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::{tell, Spec, TestDatabase, KEEP_TEST_DB};
use crate::access::connection::{Database, PooledConnection};
use crate::access::url::Backend;
use crate::foundation::config::{Config, Environment};
use crate::running::context::Context;

/// What a test function may return: `()` or a `Result` whose error is a failure.
pub trait TestResult {
    /// The failure's message, if it is one.
    fn failure(self) -> Option<String>;
}

impl TestResult for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<T, E: Debug> TestResult for Result<T, E> {
    fn failure(self) -> Option<String> {
        self.err()
            .map(|e| format!("the test returned an error: {e:?}"))
    }
}

/// The arguments a test function gets.
#[derive(Debug)]
pub struct Harness {
    test: TestDatabase,
    name: &'static str,
    config: Config,
}

impl Harness {
    /// The test's database (a clone: the pool is shared).
    pub fn database(&self) -> Database {
        self.test.database().clone()
    }

    /// A connection of its pool.
    pub fn connection(&self) -> PooledConnection {
        match self.test.database().get() {
            Ok(conn) => conn,
            Err(e) => panic!(
                "#[migrator::test] {}: cannot get a connection to {}: {e}",
                self.name,
                self.test.redacted_url()
            ),
        }
    }

    /// Runs `f` with a migration context on a connection of its own (outside any transaction,
    /// so `ctx.database()` and `ctx.pool()` work), as a `transaction = false` migration sees.
    pub fn context<R>(&self, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        let db = self.test.database();
        let mut conn = match db.dedicated_connection() {
            Ok(conn) => conn,
            Err(e) => panic!(
                "#[migrator::test] {}: cannot connect to {}: {e}",
                self.name,
                self.test.redacted_url()
            ),
        };
        let mut ctx = Context::new(&mut conn, db, &self.config, self.name, false, None, None);
        f(&mut ctx)
    }
}

/// Runs test `name` on a fresh database of `backend` in the state `spec` describes. A harness
/// that cannot start fails the test saying how to fix it; a failing test names its database.
pub fn run_test<R: TestResult>(
    name: &'static str,
    spec: &Spec,
    backend: Backend,
    body: impl FnOnce(&Harness) -> R,
) {
    let test = match spec.create(backend) {
        Ok(test) => test,
        Err(e) => panic!("#[migrator::test] {name}: cannot set up its {backend} database: {e}"),
    };
    let keep = test.is_kept();
    let place = format!(
        "{backend} database of {name}: {} ({})",
        test.name(),
        test.redacted_url()
    );
    if keep {
        tell(&format!("{KEEP_TEST_DB}: keeping the {place}"));
    }
    let hint = if keep {
        "kept for inspection (KEEP_TEST_DB)".to_owned()
    } else {
        format!("dropped at the end of the test: rerun with {KEEP_TEST_DB}=1 to keep it")
    };
    let harness = Harness {
        test,
        name,
        config: Config::new(Environment::Development),
    };
    match catch_unwind(AssertUnwindSafe(|| body(&harness))) {
        Ok(result) => {
            if let Some(failure) = result.failure() {
                drop(harness);
                panic!("{failure}\n{place}, {hint}");
            }
        }
        Err(panic) => {
            eprintln!("{place}, {hint}");
            drop(harness);
            resume_unwind(panic)
        }
    }
}
