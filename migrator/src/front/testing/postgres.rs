//! PostgreSQL test databases: on the server of `MIGRATOR_TEST_DATABASE_URL` or a throwaway
//! cluster; templates copied with `CREATE DATABASE ... TEMPLATE`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;

use super::cluster::{self, PostgresCluster};
use super::{Server, TEST_DATABASE_URL};
use crate::access::connection::{AnyConnection, ConnectionManager, Database};
use crate::access::schema::Count;
use crate::access::url::DatabaseUrl;
use crate::foundation::error::{Error, Result};

/// The PostgreSQL server of this test binary (see [`postgres`](super::postgres)): the server of
/// `MIGRATOR_TEST_DATABASE_URL`, or the throwaway cluster the harness started. Its `Debug`
/// shows the URL without its password.
pub struct PostgresServer {
    /// A database to run `CREATE DATABASE` and friends from.
    pub(super) admin: DatabaseUrl,
    /// Whether it is the user's server (templates are kept there between runs).
    pub(super) external: bool,
    /// The throwaway cluster, unless the server is the user's.
    pub(super) cluster: Option<PostgresCluster>,
    /// The password of the roles made for tests (the throwaway cluster's superuser's too).
    pub(super) password: String,
    /// The session that creates the tests' databases, kept between tests.
    session: Mutex<Option<AnyConnection>>,
    /// On the throwaway cluster, tests' databases are dropped by a thread of their own, so that
    /// no test waits for it (the cluster goes at exit anyway).
    dropper: Mutex<Option<Sender<String>>>,
}

static SERVER: OnceLock<std::result::Result<PostgresServer, String>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The server of this process, found or started on first use.
pub(super) fn server() -> Result<&'static dyn Server> {
    Ok(handle()?)
}

/// The server of this process as its concrete type, found or started on first use.
pub(super) fn handle() -> Result<&'static PostgresServer> {
    match SERVER.get_or_init(start) {
        Ok(server) => Ok(server),
        Err(why) => Err(Error::Testing {
            reason: why.clone(),
        }),
    }
}

fn start() -> std::result::Result<PostgresServer, String> {
    match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => {
            let admin = DatabaseUrl::parse(url.trim())
                .map_err(|e| format!("{TEST_DATABASE_URL} is not a usable PostgreSQL URL: {e}"))?;
            if admin.backend() != crate::access::url::Backend::Postgres {
                return Err(format!(
                    "{TEST_DATABASE_URL}={} is not a PostgreSQL URL: set it to \
                     postgres://USER:PASSWORD@HOST:PORT/postgres (a role that may CREATE \
                     DATABASE), or unset it for a throwaway cluster",
                    admin.redacted()
                ));
            }
            let server = PostgresServer {
                admin,
                external: true,
                cluster: None,
                password: cluster::password(),
                session: Mutex::new(None),
                dropper: Mutex::new(None),
            };
            server.connect_admin().map_err(|e| {
                format!(
                    "cannot connect to the server of {TEST_DATABASE_URL}: {e}; fix the URL or \
                     start the server, or unset it for a throwaway cluster"
                )
            })?;
            Ok(server)
        }
        _ => {
            let password = cluster::password();
            let cluster = cluster::start(super::keep_test_db(), &password).map_err(|why| {
                format!(
                    "cannot start a throwaway PostgreSQL cluster: {why}\n{}",
                    cluster::HOW_TO_FIX
                )
            })?;
            let admin = DatabaseUrl::parse(&cluster.url).map_err(|e| e.to_string())?;
            Ok(PostgresServer {
                admin,
                external: false,
                cluster: Some(cluster),
                password,
                session: Mutex::new(None),
                dropper: Mutex::new(None),
            })
        }
    }
}

/// Waits for the advisory lock of a template's key on a session; released when dropped.
struct KeyLock<'a> {
    conn: &'a mut AnyConnection,
    key: i64,
}

impl<'a> KeyLock<'a> {
    fn take(conn: &'a mut AnyConnection, key: &str) -> Result<KeyLock<'a>> {
        // The template key's 64 bits, as PostgreSQL's bigint.
        let key = u64::from_str_radix(key, 16).unwrap_or_default() as i64;
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(key)
            .execute(conn)
            .map_err(Error::db(
                "cannot take the advisory lock of a test template",
            ))?;
        Ok(KeyLock { conn, key })
    }
}

impl Drop for KeyLock<'_> {
    fn drop(&mut self) {
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(self.key)
            .execute(self.conn);
    }
}

impl PostgresServer {
    fn connect_admin(&self) -> Result<AnyConnection> {
        ConnectionManager::new(self.admin.clone()).establish()
    }

    /// Runs `sql` on the kept session, connecting (once more, if it broke) as needed.
    pub(super) fn execute(&self, sql: &str) -> std::result::Result<(), diesel::result::Error> {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = session.as_mut() {
            match conn.batch_execute(sql) {
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection,
                    _,
                )) => {}
                other => return other,
            }
        }
        let mut conn = self.connect_admin().map_err(|e| {
            diesel::result::Error::QueryBuilderError(Box::new(std::io::Error::other(e.to_string())))
        })?;
        let result = conn.batch_execute(sql);
        *session = Some(conn);
        result
    }

    pub(super) fn url_of(&self, name: &str) -> Result<DatabaseUrl> {
        self.admin
            .with_database(name)
            .ok_or_else(|| Error::Testing {
                reason: format!("cannot name database {name} in {}", self.admin.redacted()),
            })
    }

    fn exists(conn: &mut AnyConnection, name: &str) -> Result<bool> {
        let found: Count = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_catalog.pg_database WHERE datname = $1",
        )
        .bind::<Text, _>(name)
        .get_result(conn)?;
        Ok(found.n > 0)
    }

    /// Ends every other session on database `name` (a template must have none to be copied).
    fn disconnect(conn: &mut AnyConnection, name: &str) -> Result<()> {
        diesel::sql_query(
            "SELECT COUNT(pg_catalog.pg_terminate_backend(pid)) AS n \
             FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<Text, _>(name)
        .get_result::<Count>(conn)?;
        Ok(())
    }
}

/// A database name unique on the server: this process's ID, a counter and a few bits of the
/// clock (two hosts may share a server).
pub(super) fn fresh_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "migrator_test_{}_{}_{:05x}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed),
        nanos & 0xf_ffff
    )
}

fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
}

impl PostgresServer {
    fn drop_now(&self, name: &str) {
        let dropped = self
            .execute(&drop_sql(name))
            .map_err(Error::db(format!("cannot drop test database {name}")));
        if let Err(e) = dropped {
            super::tell(&format!("migrator::testing: {e}"));
        }
    }
}

impl Server for PostgresServer {
    fn template(&self, key: &str, build: &dyn Fn(&Database) -> Result<()>) -> Result<String> {
        let name = format!("migrator_tpl_{key}");
        let mut admin = self.connect_admin()?;
        // Test binaries sharing a server take turns per template.
        let lock = KeyLock::take(&mut admin, key)?;
        if PostgresServer::exists(lock.conn, &name)? {
            if self.external {
                return Ok(name);
            }
            // Not ours: a leftover of an earlier process with the same ID.
            PostgresServer::disconnect(lock.conn, &name)?;
            lock.conn
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                .map_err(Error::db(format!("cannot drop the stale template {name}")))?;
        }
        // Built under another name and renamed once complete: an interrupted build is never
        // taken for a template.
        let building = format!("{name}_b{}", std::process::id());
        // Two statements: DROP and CREATE DATABASE cannot share an (implicit) transaction.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{building}\""),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            lock.conn.batch_execute(&sql).map_err(Error::db(format!(
                "cannot create database {building} (with {TEST_DATABASE_URL}, its role needs \
                 CREATEDB)"
            )))?;
        }
        let url = self.url_of(&building)?;
        let db = Database::connect(url.expose())?;
        let built = build(&db);
        drop(db);
        if let Err(e) = built {
            PostgresServer::disconnect(lock.conn, &building)?;
            let _ = lock
                .conn
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\""));
            return Err(e);
        }
        PostgresServer::disconnect(lock.conn, &building)?;
        lock.conn
            .batch_execute(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
            ))
            .map_err(Error::db(format!("cannot rename {building} to {name}")))?;
        drop(lock);
        Ok(name)
    }

    fn create(&self, template: Option<&str>) -> Result<(String, Database)> {
        let name = fresh_name();
        let sql = match template {
            Some(template) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        // A template being copied must have no session: a copy that meets one (a pool of a
        // build that is still closing) is tried again for a while.
        let mut attempt = 0;
        loop {
            match self.execute(&sql) {
                Ok(()) => break,
                // SQLSTATE 55006 (object_in_use); Diesel does not expose the code, so it is
                // recognised by the server's message, as ddl_lock.rs does.
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 * attempt.min(10)));
                }
                Err(e) => {
                    return Err(Error::db(format!(
                        "cannot create test database {name}{}",
                        template
                            .map(|t| format!(" from template {t}"))
                            .unwrap_or_default()
                    ))(e))
                }
            }
        }
        let url = self.url_of(&name)?;
        Ok((name, Database::connect(url.expose())?))
    }

    fn remove(&self, name: &str) {
        if !self.external {
            let mut dropper = self.dropper.lock().unwrap_or_else(PoisonError::into_inner);
            let sender = dropper.get_or_insert_with(|| {
                let (sender, names) = mpsc::channel::<String>();
                let _ = std::thread::Builder::new()
                    .name("migrator-test-dropper".into())
                    .spawn(move || {
                        // A session of its own: creating the next database does not wait.
                        let Some(Ok(server)) = SERVER.get() else {
                            return;
                        };
                        let mut conn = server.connect_admin().ok();
                        for name in names {
                            let sql = drop_sql(&name);
                            match conn.as_mut().map(|c| c.batch_execute(&sql)) {
                                Some(Ok(())) => {}
                                _ => server.drop_now(&name),
                            }
                        }
                    });
                sender
            });
            if sender.send(name.to_owned()).is_ok() {
                return;
            }
        }
        self.drop_now(name);
    }
}
