//! Testing your migrations: a fresh, migrated database for every test, cloned from a template.
//!
//! [`#[migrator::test]`](crate::test) is the front door; this module is what it runs on, and
//! what a test that wants to manage its databases itself (a benchmark, a property test) can use
//! directly:
//!
//! ```no_run
//! use migrator::testing::{Migrations, Spec};
//! use migrator::Backend;
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
//! # Failures and `KEEP_TEST_DB`
//! A harness that cannot start is an error saying how to fix it (with `#[migrator::test]`, a
//! failed test): tests are never skipped. A test's database is dropped when it ends, unless
//! `KEEP_TEST_DB=1`: then every database (and the throwaway cluster) is kept and its name is
//! printed. A failing test prints the name of its database.

mod cluster;
mod postgres;
pub(crate) mod run;
mod sqlite;
mod state;

use std::path::Path;

use crate::connection::Database;
use crate::error::{Error, Result};
use crate::url::Backend;

/// Not public API: a background worker driven a half-step at a time (claim, then compute and
/// write), for property tests of the backfill's claim/write protocol (feature `backfill` too).
/// May change at any time.
#[cfg(feature = "backfill")]
#[doc(hidden)]
pub use crate::backfill::stepped::{Claim, SteppedWorker};

/// The variable that names an existing PostgreSQL server for the tests.
pub const TEST_DATABASE_URL: &str = "MIGRATOR_TEST_DATABASE_URL";

/// The variable that keeps the test databases for inspection (`1`, `true`, `yes`, `on`).
pub const KEEP_TEST_DB: &str = "KEEP_TEST_DB";

/// Which of the registered migrations a test database has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migrations {
    /// Every migration registered in the binary (and the Diesel SQL migrations, if any).
    #[default]
    All,
    /// None: an empty database (fixtures still apply).
    None,
    /// The migrations up to and including this ID, in run order (and all SQL migrations).
    UpTo(String),
}

/// What happens to the backfills that migrations schedule, while the template is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backfills {
    /// As the library's default policy does at start-up (`MIGRATION_BACKFILL=auto`).
    #[default]
    Auto,
    /// Every backfill finishes inside its migration, before the test body
    /// (`MIGRATION_BACKFILL=inline`).
    Inline,
    /// Backfills are only scheduled (`MIGRATION_BACKFILL=background`): the test drives the
    /// workers itself.
    Background,
}

impl Backfills {
    fn as_str(self) -> &'static str {
        match self {
            Backfills::Auto => "auto",
            Backfills::Inline => "inline",
            Backfills::Background => "background",
        }
    }
}

/// A SQL script applied after the migrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fixture {
    pub(crate) name: String,
    pub(crate) sql: String,
}

/// What a test database holds: which migrations, which fixtures, which backfill mode.
///
/// The setters take `&mut self` and return `&mut Spec`; [`Spec::create`] makes a database.
#[derive(Clone, Default)]
pub struct Spec {
    migrations: Migrations,
    sql: Option<&'static diesel_migrations::EmbeddedMigrations>,
    fixtures: Vec<Fixture>,
    backfills: Backfills,
    labels: Vec<String>,
    no_templates: bool,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("migrations", &self.migrations)
            .field("sql_migrations", &self.sql.is_some())
            .field("fixtures", &self.fixtures)
            .field("backfills", &self.backfills)
            .field("labels", &self.labels)
            .field("templates", &!self.no_templates)
            .finish()
    }
}

impl Spec {
    /// Every registered migration, no fixture, the default backfill mode, templates on.
    pub fn new() -> Spec {
        Spec::default()
    }

    /// Which migrations to apply (default: all).
    pub fn migrations(&mut self, migrations: Migrations) -> &mut Spec {
        self.migrations = migrations;
        self
    }

    /// Also applies these Diesel SQL migrations, first, as [`crate::Migrator::sql_migrations`].
    pub fn sql_migrations(
        &mut self,
        migrations: &'static diesel_migrations::EmbeddedMigrations,
    ) -> &mut Spec {
        self.sql = Some(migrations);
        self
    }

    /// Adds a SQL script, run after the migrations (and the fixtures added before it); `name`
    /// appears in errors.
    pub fn fixture(&mut self, name: impl Into<String>, sql: impl Into<String>) -> &mut Spec {
        self.fixtures.push(Fixture {
            name: name.into(),
            sql: sql.into(),
        });
        self
    }

    /// Adds the SQL script in file `path` (see [`Spec::fixture`]).
    pub fn fixture_file(&mut self, path: impl AsRef<Path>) -> Result<&mut Spec> {
        let path = path.as_ref();
        let sql = std::fs::read_to_string(path)
            .map_err(|e| Error::msg(format!("cannot read test fixture {}: {e}", path.display())))?;
        Ok(self.fixture(path.display().to_string(), sql))
    }

    /// What to do with the backfills the migrations schedule (default: [`Backfills::Auto`]).
    pub fn backfills(&mut self, backfills: Backfills) -> &mut Spec {
        self.backfills = backfills;
        self
    }

    /// Distinguishes states that migrations and fixtures alone do not tell apart (say, the
    /// process-wide set-up a test made before its database was built: `#[migrator::test(setup
    /// = path)]` adds the function's path); part of the template's key.
    pub fn label(&mut self, label: impl Into<String>) -> &mut Spec {
        self.labels.push(label.into());
        self
    }

    /// Migrates every database itself instead of copying a template: the slow way, for
    /// comparison (the benchmark's baseline) or to debug the templates.
    pub fn dangerous_disable_templates(&mut self, disable: bool) -> &mut Spec {
        self.no_templates = disable;
        self
    }

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

fn server(backend: Backend) -> Result<&'static dyn Server> {
    match backend {
        Backend::Postgres => postgres::server(),
        Backend::Sqlite => sqlite::server(),
    }
}
