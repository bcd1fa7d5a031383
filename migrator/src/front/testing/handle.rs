//! The PostgreSQL server of a test binary, for tests that manage databases themselves: empty
//! databases, a database owned by a role of its own, and the throwaway cluster's files and
//! tools.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cluster::PostgresCluster;
use super::postgres::{fresh_name, handle, PostgresServer};
use super::TEST_DATABASE_URL;
use crate::foundation::error::{Error, Result};

static ROLES: AtomicU64 = AtomicU64::new(0);

/// The PostgreSQL server of this test binary, the one `#[migrator::test]` uses: the server of
/// `MIGRATOR_TEST_DATABASE_URL` when it is set, else the throwaway cluster (started on first
/// use, stopped when the binary exits). The error says how to fix what kept it from starting.
///
/// ```no_run
/// # fn main() -> migrator::Result<()> {
/// let server = migrator::testing::postgres()?;
/// let url = server.fresh_database()?;
/// let db = migrator::Database::connect(&url)?;
/// # let _ = db;
/// # Ok(()) }
/// ```
pub fn postgres() -> Result<&'static PostgresServer> {
    handle()
}

/// A new login role and a new empty database it owns (see
/// [`PostgresServer::role_database`]). Its `Debug` shows the role only: both URLs hold
/// passwords.
#[non_exhaustive]
pub struct RoleDatabase {
    /// The role's name (also the name of a schema a test may create for it).
    pub role: String,
    /// The database's name.
    pub name: String,
    /// The database's URL, connecting as the role.
    pub url: String,
    /// The database's URL, connecting as the server's superuser (or the role of
    /// `MIGRATOR_TEST_DATABASE_URL`).
    pub admin_url: String,
}

/// The role and the database only: both URLs carry passwords.
impl std::fmt::Debug for RoleDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleDatabase")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The URL without its password.
impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("url", &self.admin.redacted())
            .field("external", &self.external)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PostgresServer {
    /// The URL of database `database` on this server, as its superuser (the throwaway
    /// cluster's `postgres`, or the role of `MIGRATOR_TEST_DATABASE_URL`). It holds the
    /// password: never print it.
    pub fn url(&self, database: &str) -> Result<String> {
        Ok(self.url_of(database)?.expose().to_owned())
    }

    /// The password of the roles made by [`role_database`](Self::role_database), which is
    /// also the throwaway cluster's superuser's: for tests that check it never shows in
    /// output, logs or errors.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether the server is the one of `MIGRATOR_TEST_DATABASE_URL` (not the throwaway
    /// cluster).
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Creates a new empty database and returns its URL (as [`url`](Self::url)). It is not
    /// dropped for you: the throwaway cluster goes when the binary exits; on a server of
    /// `MIGRATOR_TEST_DATABASE_URL`, drop the `migrator_test_*` databases left behind (or use
    /// [`Spec::create`](super::Spec::create), whose databases are dropped with the value).
    pub fn fresh_database(&self) -> Result<String> {
        let name = fresh_name();
        self.execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(Error::db(format!("cannot create test database {name}")))?;
        self.url(&name)
    }

    /// A new login role (password [`password`](Self::password)) and a new empty database it
    /// owns, as an application's role owns its database in production. The role has no schema
    /// of its own: its `search_path` (`"$user", public`) resolves to `public` until `CREATE
    /// SCHEMA role AUTHORIZATION role`.
    pub fn role_database(&self) -> Result<RoleDatabase> {
        let role = format!(
            "migrator_role_{}_{}",
            std::process::id(),
            ROLES.fetch_add(1, Ordering::Relaxed)
        );
        let name = fresh_name();
        // Two statements: CREATE DATABASE cannot share an (implicit) transaction. The password
        // is hexadecimal (ours), so it needs no quoting beyond the literal's.
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{}'", self.password),
            format!("CREATE DATABASE \"{name}\" OWNER {role}"),
        ] {
            self.execute(&sql).map_err(Error::db(format!(
                "cannot create role {role} and database {name}"
            )))?;
        }
        let admin_url = self.url(&name)?;
        let (without, _) = self.url_of(&name)?.split_password();
        // `postgres://USER@HOST...` (no password) with the role and its password in front.
        let url = without
            .split_once("://")
            .map(|(scheme, rest)| {
                let at_host = rest.split_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{role}:{}@{at_host}", self.password)
            })
            .ok_or_else(|| Error::Testing {
                reason: format!("cannot name role {role} in a URL"),
            })?;
        Ok(RoleDatabase {
            role,
            name,
            url,
            admin_url,
        })
    }

    /// The throwaway cluster, for tests that need more than a database: its server log, its
    /// tools, a second server beside it. An error when the server is the one of
    /// `MIGRATOR_TEST_DATABASE_URL`: such a test needs the throwaway cluster.
    pub fn cluster(&self) -> Result<&PostgresCluster> {
        self.cluster.as_ref().ok_or_else(|| Error::Testing {
            reason: format!(
                "this test needs the throwaway PostgreSQL cluster (its files, its log or a \
                 server beside it), not the server of {TEST_DATABASE_URL}={}: unset \
                 {TEST_DATABASE_URL} to run it",
                self.admin.redacted()
            ),
        })
    }
}
