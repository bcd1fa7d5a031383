//! Database migrations run safely when an application starts, on PostgreSQL and SQLite.
//!
//! Write a migration as a plain Rust function, register it with `#[migration("NNN_name")]`, and
//! call the start-up entry point. One process migrates while the others wait on a database lock;
//! each attempt is recorded in the `applied_migrations` table; the environment policy
//! (`ENVIRONMENT`, `AUTO_MIGRATE_ON_STARTUP`, `ENABLE_PROD_MIGRATIONS`, ...) decides whether
//! start-up migrates, and whether a failure stops it.
//!
//! ```
//! use migrator::{migration, Config, Context, Database, config::Environment, Migrator, report::Outcome, Result};
//!
//! #[migration("001_create_users")]
//! fn create_users(ctx: &mut Context<'_>) -> Result<()> {
//!     ctx.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
//! }
//!
//! #[migration("002_seed_admin")]
//! fn seed_admin(ctx: &mut Context<'_>) -> Result<()> {
//!     ctx.batch_execute("INSERT INTO users (name) VALUES ('admin')")
//! }
//!
//! # fn main() -> Result<()> {
//! # let dir = std::env::temp_dir().join(format!("migrator-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("sqlite://{}/app.db", dir.display());
//! let db = Database::connect(&url)?; // or Database::from_env() for DATABASE_URL
//! let config = Config::new(Environment::Development); // or Config::from_env()
//! let migrator = Migrator::from_registry()?;
//!
//! let report = migrator.run(&db, &config)?;
//! assert_eq!(report.applied().count(), 2);
//!
//! // A second run finds nothing pending.
//! let again = migrator.run(&db, &config)?;
//! assert!(again.migrations.iter().all(|m| m.outcome == Outcome::AlreadyApplied));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```
//!
//! At start-up, [`Migrator::run_on_startup`] applies the policy read from the environment:
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let db = migrator::Database::from_env()?;
//!     let config = migrator::Config::from_env()?;
//!     match migrator::Migrator::from_registry()?.run_on_startup(&db, &config)? {
//!         migrator::report::StartupOutcome::Failed(e) => eprintln!("serving degraded: {e}"),
//!         _ => {}
//!     }
//!     // ... start serving
//!     Ok(())
//! }
//! ```
//!
//! A migration's signature is checked at compile time:
//!
//! ```compile_fail
//! #[migrator::migration("001_wrong")]
//! fn wrong(name: &str) -> migrator::Result<()> { Ok(()) }
//! ```
//!
//! # Testing your migrations
//! With feature `testing`, `#[migrator::test]` gives each test a fresh database
//! (PostgreSQL on a throwaway cluster or `MIGRATOR_TEST_DATABASE_URL`, or SQLite) with the
//! registered migrations applied, copied from a template migrated once per binary:
//!
//! ```no_run
//! # #[cfg(feature = "testing")] mod t {
//! use migrator::{migration, Context, Database, Result};
//!
//! #[migration("001_create_users")]
//! fn create_users(ctx: &mut Context<'_>) -> Result<()> {
//!     ctx.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
//! }
//!
//! #[migrator::test(postgres, sqlite, migrations = "up_to = 001_create_users")]
//! fn users_take_names(db: Database) -> Result<()> {
//!     use diesel::connection::SimpleConnection;
//!     db.get()?.batch_execute("INSERT INTO users (name) VALUES ('ada')")?;
//!     Ok(())
//! }
//! # }
//! ```
//!
//! # Transactions
//! By default a migration runs in one transaction together with the row that records its
//! success: it is applied entirely or not at all. `#[migration("002_x", transaction = false)]`
//! is for work that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`) or should not
//! (large backfills); it is recorded `running` first, and an interrupted one is run again, so it
//! must be idempotent.
//!
//! # The lock
//! See [`LockGuard`](connection::LockGuard): a session advisory lock on PostgreSQL, a `flock`ed file beside the database on
//! SQLite. Runners wait up to `MIGRATION_LOCK_TIMEOUT_SECS` (default one hour), logging who
//! holds it.

//!
//! # Table locks (PostgreSQL)
//! Every migration runs with `lock_timeout` = `MIGRATION_DDL_LOCK_TIMEOUT_MS` (default 5000), so
//! that a statement waiting for a table lock never queues the application's queries for longer;
//! one that hits it is retried whole after a jittered backoff, up to
//! `MIGRATION_DDL_LOCK_RETRIES` times (default 10), logging the blocking sessions. Its
//! `statement_timeout` is its own (`#[migration("...", statement_timeout = "10m")]`) or none.
//! SQLite connections instead wait up to 30 s for another writer (`busy_timeout`).
//!
//! # Features
//! All on by default; a service that only runs migrations can turn them off
//! (`default-features = false`) and compile none of their dependencies:
//! - `cli`: [`cli`], the command-line front end (clap, indicatif, env_logger, serde_json);
//! - `password`: [`password`], Argon2id hashing (migrator-hasher, argon2, zeroize, subtle);
//! - `backfill`: [`backfill`], the batched parallel backfill engine (rayon).
//!
//! Off by default:
//! - `testing`: `migrator::testing` and `#[migrator::test]`, a fresh migrated database
//!   for each test, cloned from a template (see "Testing your migrations" below).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as migrator;

// The layers, lowest first, one folder each (blank lines keep rustfmt from sorting them). A
// file imports only from its own layer and the ones before it, and no two files import each
// other (`tests/import_cycles.rs` checks both); each folder's `mod.rs` is its map. The public
// modules stay where users see them through the `pub use`s below.
mod foundation;

#[cfg(feature = "password")]
mod hashing;

mod access;

mod records;

mod policy;

mod running;

mod front;

pub use foundation::metrics;
#[cfg(feature = "cli")]
pub use front::cli;
#[cfg(feature = "testing")]
pub use front::testing;
#[cfg(feature = "password")]
pub use hashing::password;
pub use policy::plan;
pub use records::audit;
#[cfg(feature = "backfill")]
pub use running::backfill;
pub use running::context;

// Three public modules gather items from more than one layer (so they cannot be one file's
// `pub use` without importing upward); each is a list of re-exports here, at the top.

pub mod config {
    //! Configuration: [`Config`], the environment ([`Environment`]), every variable's name
    //! ([`vars`]) and default (`DEFAULT_*`), and the table of all of them ([`variables`]).
    //!
    //! Every setting is read from the environment by [`Config::from_env`]; the README's
    //! configuration table is rendered from [`variables::markdown`]. The Argon2 parameters are the
    //! hasher's (`migrator::password::Params::from_env`).

    #[doc(inline)]
    pub use crate::foundation::config::*;
    pub use crate::front::variables;
}

pub mod connection {
    //! Connections and the database they reach: [`Database`] (the pool handle),
    //! [`AnyConnection`], the [`Backend`], the URL ([`DatabaseUrl`]), the
    //! migration lock ([`LockGuard`]) and reading the schema ([`has_column`], [`Count`]).

    #[doc(inline)]
    pub use crate::access::connection::*;
    #[doc(inline)]
    pub use crate::access::schema::{has_column, Count};
    #[doc(inline)]
    pub use crate::access::url::Backend;
    #[doc(inline)]
    pub use crate::records::lock::LockGuard;
}

pub mod report {
    //! What a run did ([`Report`]), what start-up did ([`StartupOutcome`]), and what the tracking
    //! table says ([`StatusReport`]).

    #[doc(inline)]
    pub use crate::foundation::report::*;
    #[doc(inline)]
    pub use crate::running::startup::StartupOutcome;
}

/// Registers a function as a code migration.
///
/// ```
/// use migrator::{migration, Context, Result};
///
/// #[migration("001_index_users", transaction = false)]
/// fn index_users(ctx: &mut Context<'_>) -> Result<()> {
///     ctx.batch_execute("CREATE INDEX IF NOT EXISTS users_name ON users (name)")
/// }
///
/// let m = migrator::Migrator::from_registry().unwrap();
/// assert!(!m.migrations()[0].is_transactional());
/// ```
///
/// - The ID must match `^[0-9]{3,}_[a-z0-9_]+$` and be unique in the binary; migrations run in
///   the order of the numeric prefix, then the ID.
/// - The function must be a plain `fn(&mut Context<'_>) -> Result<()>`: not `async`, `const`,
///   generic or a method. Misuse is a compile error pointing at the function.
/// - `transaction = false` runs it outside a transaction (it must then be idempotent).
/// - `statement_timeout = "10m"` (`500ms`, `30s`, `10m`, `1h`) is the migration's own
///   PostgreSQL `statement_timeout`; without it the migration runs with none, overriding a
///   role-level one. Ignored on SQLite.
/// - `crate = path` names the `migrator` crate when it is re-exported under another path.
/// - A checksum of the function's code is recorded when it runs; if the code of an applied
///   migration changes, runs warn and report it (they never re-run it). It is computed over a
///   normal form of the tokens that this crate defines (whitespace, comments and doc comments
///   do not count), so a toolchain upgrade or a documentation edit never reports drift; rows
///   recorded by earlier versions of the library are accepted.
#[doc(inline)]
pub use migrator_macros::migration;

/// A test on a fresh database with the registered migrations applied (feature `testing`).
///
/// ```no_run
/// use migrator::{migration, Context, Database, connection::PooledConnection, Result};
///
/// #[migration("001_create_users")]
/// fn create_users(ctx: &mut Context<'_>) -> Result<()> {
///     ctx.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
/// }
///
/// #[migrator::test(postgres, sqlite)] // one test per backend: `starts_empty::postgres`, ...
/// fn starts_empty(db: Database) -> Result<()> {
///     use diesel::RunQueryDsl;
///     let rows: migrator::connection::Count =
///         diesel::sql_query("SELECT COUNT(*) AS n FROM users").get_result(&mut *db.get()?)?;
///     assert_eq!(rows.n, 0);
///     Ok(())
/// }
///
/// #[migrator::test(sqlite, migrations = "none")]
/// #[should_panic = "no such table"] // other test attributes compose
/// fn before_any_migration(_db: Database, conn: &mut PooledConnection) {
///     use diesel::connection::SimpleConnection;
///     conn.batch_execute("SELECT * FROM users").unwrap();
/// }
/// ```
///
/// - **Arguments**: a [`Database`] (or `&Database`), and optionally a connection of its pool
///   (`&mut PooledConnection`, `PooledConnection` or `&mut AnyConnection`) and a
///   `&mut Context<'_>` (as a `transaction = false` migration gets: call a migration's helpers
///   directly). It returns `()` or a `Result` whose `Err` fails the test.
/// - **Backends**: `postgres` (the default), `sqlite`, or both (`postgres, sqlite`: a module of
///   that name with one test per backend, which sees the parent module's items through
///   `use super::*`).
/// - `migrations = "all"` (the default: every registered migration), `"none"` or
///   `"up_to = 003_add_index"` (that one and those before it).
/// - `fixtures("tests/fixtures/users.sql", ...)`: SQL files, relative to the crate's directory
///   (`CARGO_MANIFEST_DIR`), read at compile time and run after the migrations.
/// - `backfills = "inline"` finishes every backfill the migrations schedule before the test
///   body; `"background"` only schedules them; `"auto"` (the default) is the start-up policy.
/// - `sql_migrations = PATH`: Diesel SQL migrations (`embed_migrations!`) applied first.
/// - `setup = PATH`: a `fn()` called before the database is made (every time: make it
///   idempotent), for process-wide set-up the migrations depend on, e.g. cheaper password
///   hashing; its path is part of the template's key.
/// - `crate = path` names the `migrator` crate when it is re-exported under another path.
///
/// Each distinct state (migrations, fixtures, backfill mode) is migrated once per test binary
/// into a template database that every test copies; see [`testing`] for where the databases
/// come from (`MIGRATOR_TEST_DATABASE_URL`, a throwaway cluster), `KEEP_TEST_DB=1`, and what a
/// failure prints.
#[cfg(feature = "testing")]
#[doc(inline)]
pub use migrator_macros::test;

pub use access::connection::{AnyConnection, Database};
pub use foundation::config::Config;
pub use foundation::error::{Error, ErrorKind, Result};
pub use running::context::Context;
pub use running::migrations::Migrator;
pub use running::registry::Migration;

/// Not public API. Used by generated code.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "testing")]
    pub use crate::front::testing::run::{run_test, Harness, TestResult};
    pub use crate::running::registry::{Migration, MigrationFn};
    #[cfg(feature = "testing")]
    pub use diesel_migrations::EmbeddedMigrations;
    pub use inventory;
}
