//! Testing your migrations: a fresh, migrated database for every test, cloned from a template.
//!
//! [`#[migrator::test]`](crate::test) is the front door; this module is what it runs on, and
//! what a test that wants to manage its databases itself (a benchmark, a property test) can use
//! directly:
//!
//! ```no_run
//! use migrator::testing::{Migrations, Spec};
//! use migrator::connection::Backend;
//!
//! # fn main() -> migrator::Result<()> {
//! let mut spec = Spec::new();
//! spec.migrations(Migrations::UpTo("001_create_users".into()))
//!     .fixture("users.sql", "INSERT INTO users (name) VALUES ('ada')");
//! let test_db = spec.create(Backend::Sqlite)?; // a copy of a template migrated once
//! let db = test_db.database();
//! # let _ = db;
//! # Ok(()) }
//! ```
//!
//! # Where the databases come from
//! - **PostgreSQL**: the server of `MIGRATOR_TEST_DATABASE_URL` when it is set (its role needs
//!   `CREATEDB`), else a throwaway cluster that the first test of the binary starts with the
//!   machine's `initdb` and `pg_ctl` (found in `PG_BIN`, `/usr/lib/postgresql/*/bin` or on
//!   `PATH`; run as the `postgres` user when the tests run as root), listening on 127.0.0.1 on
//!   a free port with its socket and data in a temporary directory, and stopped when the test
//!   binary exits (also when it is killed).
//! - **SQLite**: files in a temporary directory of the test binary, removed when it exits.
//!
//! # Templates
//! The first test that needs a given state (the migrations up to some ID, the fixtures, the
//! backfill mode) builds a template database in that state; every test then gets a copy
//! (`CREATE DATABASE ... TEMPLATE` on PostgreSQL, a file copy on SQLite), which costs the same
//! however many migrations there are. The template's name is a hash of the migration IDs and
//! checksums, the fixtures' contents and the backfill mode, so a changed migration gets a new
//! one. On a server of `MIGRATOR_TEST_DATABASE_URL` templates are kept between runs and
//! reused when the hash matches (test binaries that build the same template at once take turns
//! through an advisory lock); drop the `migrator_tpl_*` databases to reclaim their space.
//! Diesel SQL migrations count by name only (diesel does not expose their text): with them
//! the hash also covers the test binary's size and modification time.
//!
//! # The server itself
//! [`postgres()`] hands out the PostgreSQL server of the test binary (the one the templates
//! live on) for tests that manage databases themselves: [`PostgresServer::fresh_database`],
//! [`PostgresServer::role_database`] (a database owned by a role of its own), and, on the
//! throwaway cluster only, [`PostgresCluster`]: its port, socket directory, server log, tools
//! and a second server beside it (a streaming standby). There is one cluster per test binary,
//! whichever way it is reached.
//!
//! # Failures and `KEEP_TEST_DB`
//! A harness that cannot start is an error saying how to fix it (with `#[migrator::test]`, a
//! failed test): tests are never skipped. A test's database is dropped when it ends, unless
//! `KEEP_TEST_DB=1`: then every database (and the throwaway cluster) is kept and its name is
//! printed. A failing test prints the name of its database.

mod cluster;
mod handle;
mod postgres;
pub(crate) mod run;
mod server;
mod spec;
mod sqlite;
mod state;

pub use cluster::PostgresCluster;
pub use handle::{postgres, RoleDatabase};
pub use postgres::PostgresServer;
pub(crate) use server::{keep_test_db, tell, Server};
pub use server::{KEEP_TEST_DB, TEST_DATABASE_URL};
pub(crate) use spec::Fixture;
pub use spec::{Backfills, Migrations, Spec};

use crate::access::connection::Database;
use crate::access::url::Backend;
use crate::foundation::error::Result;

/// Not public API: a background worker driven a half-step at a time (claim, then compute and
/// write), for property tests of the backfill's claim/write protocol (feature `backfill` too).
/// May change at any time.
#[cfg(feature = "backfill")]
#[doc(hidden)]
pub use crate::running::backfill::stepped::{Claim, SteppedWorker};

impl Spec {
    /// A fresh database on `backend` in this state. It is dropped with the value unless
    /// `KEEP_TEST_DB` is set.
    pub fn create(&self, backend: Backend) -> Result<TestDatabase> {
        let state = state::State::resolve(self)?;
        let server = server(backend)?;
        let (name, db) = if self.no_templates {
            let (name, db) = server.create(None)?;
            // Dropped at once (unless kept) if the migrations fail.
            let test_db = TestDatabase {
                db: Some(db),
                name,
                backend,
                keep: keep_test_db(),
            };
            state.build(test_db.database())?;
            return Ok(test_db);
        } else {
            let template = state::template(backend, server, &state)?;
            server.create(Some(&template))?
        };
        Ok(TestDatabase {
            db: Some(db),
            name,
            backend,
            keep: keep_test_db(),
        })
    }
}

/// A database made for one test. Dropped (PostgreSQL `DROP DATABASE`, the SQLite file removed)
/// when the value is, unless kept.
#[derive(Debug)]
pub struct TestDatabase {
    db: Option<Database>,
    name: String,
    backend: Backend,
    keep: bool,
}

impl TestDatabase {
    /// The pool on it.
    pub fn database(&self) -> &Database {
        match &self.db {
            Some(db) => db,
            // Only `Drop` takes it.
            None => unreachable!("the test database is used after it was dropped"),
        }
    }

    /// Its name: the PostgreSQL database's, or the SQLite file's path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL, password hidden: what to connect to for inspection.
    pub fn redacted_url(&self) -> &str {
        self.database().url().redacted()
    }

    /// Its backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Keeps it (or not) when the value is dropped; `KEEP_TEST_DB` sets this for every one.
    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Whether it is kept when the value is dropped.
    pub fn is_kept(&self) -> bool {
        self.keep
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // The pool's connections close first.
        drop(self.db.take());
        if self.keep {
            return;
        }
        if let Ok(server) = server(self.backend) {
            server.remove(&self.name);
        }
    }
}

fn server(backend: Backend) -> Result<&'static dyn Server> {
    match backend {
        Backend::Postgres => postgres::server(),
        Backend::Sqlite => sqlite::server(),
    }
}
