//! Connections: one enum over PostgreSQL and SQLite, an r2d2 manager that picks the backend
//! from the URL scheme (keeping the driver's real error), and [`Database`], the pool handle.

use std::sync::{Arc, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::access::url::Backend;
pub use crate::access::url::DatabaseUrl;
use crate::foundation::error::{Error, Result};

pub use any::AnyConnection;
#[cfg(feature = "backfill")]
pub(crate) use any::MultiBackend;

/// In a private module of its own: Diesel's derive adds public helper items beside the enum,
/// which are not this crate's API.
mod any {
    use diesel::{PgConnection, SqliteConnection};

    /// A connection to either backend. Use it as any Diesel connection (`sql_query`, the query
    /// builder, `transaction`); match on it for backend-specific calls.
    #[derive(diesel::MultiConnection)]
    pub enum AnyConnection {
        /// A PostgreSQL connection.
        Postgres(PgConnection),
        /// A SQLite connection.
        Sqlite(SqliteConnection),
    }
}

/// The backend only: a connection has nothing else worth printing (and never its URL).
impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyConnection::Postgres(_) => f.write_str("AnyConnection::Postgres(..)"),
            AnyConnection::Sqlite(_) => f.write_str("AnyConnection::Sqlite(..)"),
        }
    }
}

impl AnyConnection {
    /// PostgreSQL: runs `f` with the session settings `settings` (name, value), then restores
    /// each one's previous value, whatever `f` returned (`f`'s error wins). Outside a
    /// transaction, as a migration's or a backfill's own connection keeps its runner's values.
    pub(crate) fn with_settings<T>(
        &mut self,
        settings: &[(&str, &str)],
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        use diesel::sql_types::Text;
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = Text)]
            v: String,
        }
        let set = |conn: &mut AnyConnection, name: &str, value: &str| -> Result<()> {
            diesel::sql_query("SELECT set_config($1, $2, false) AS v")
                .bind::<Text, _>(name)
                .bind::<Text, _>(value)
                .get_result::<Setting>(conn)
                .map(|_| ())
                .map_err(Error::db(format!("cannot set {name}")))
        };
        let mut before = Vec::with_capacity(settings.len());
        for (name, value) in settings {
            let old: Setting = diesel::sql_query("SELECT current_setting($1) AS v")
                .bind::<Text, _>(*name)
                .get_result(self)
                .map_err(Error::db(format!("cannot read {name}")))?;
            before.push((*name, old.v));
            set(self, name, value)?;
        }
        let result = f(self);
        let restored = before
            .iter()
            .try_for_each(|(name, value)| set(self, name, value));
        let value = result?;
        restored.map(|()| value)
    }

    /// Which backend this connection talks to.
    pub fn backend(&self) -> Backend {
        match self {
            AnyConnection::Postgres(_) => Backend::Postgres,
            AnyConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// How long a SQLite connection waits for another writer before `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// libpq's TCP keepalives for every PostgreSQL connection whose URL sets none: a dead peer
/// (failover, network cut) is noticed within about 90 s instead of the system's two hours, and
/// a connection that idles while a long migration works elsewhere is not dropped by a NAT or
/// firewall idle timeout.
const PG_KEEPALIVES: &str =
    "keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=6";

/// The PostgreSQL URL handed to libpq: `url` with [`PG_KEEPALIVES`] unless it sets keepalives
/// itself.
fn with_keepalives(url: &str) -> String {
    let query = url.split_once('?').map(|(_, query)| query);
    match query {
        Some(query) if query.contains("keepalives") => url.to_owned(),
        Some(_) => format!("{url}&{PG_KEEPALIVES}"),
        None => format!("{url}?{PG_KEEPALIVES}"),
    }
}

/// Session set-up of every PostgreSQL connection migrator opens (the lock's, the migration's,
/// the backfill's): a server- or role-level `idle_session_timeout` (PostgreSQL 14+) must not
/// end a session that idles legitimately while the run works elsewhere (the lock session for
/// the whole run; the migration's connection during a backfill through the pool). The pool
/// closes its own idle connections (r2d2's idle timeout). Older servers do not know the
/// setting: nothing to do there, and the error is ignored.
fn configure_postgres(conn: &mut PgConnection) {
    let _ = conn.batch_execute("SET idle_session_timeout = 0");
}

/// An r2d2 connection manager for [`AnyConnection`], choosing the backend from the URL scheme.
///
/// Unlike Diesel's generated `establish` for multi-connections, it keeps the driver's error
/// (with the password scrubbed) instead of "invalid connection url".
#[derive(Clone, Debug)]
pub struct ConnectionManager {
    url: Arc<DatabaseUrl>,
}

impl ConnectionManager {
    /// A manager for `url`.
    pub fn new(url: DatabaseUrl) -> ConnectionManager {
        ConnectionManager { url: Arc::new(url) }
    }

    /// The URL (redacted when printed).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Opens a new connection outside any pool.
    pub fn establish(&self) -> Result<AnyConnection> {
        let url = &self.url;
        let connect_error = |e: diesel::ConnectionError| Error::Connect {
            url: url.redacted().to_owned(),
            source: scrubbed(url, e),
        };
        match url.backend() {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&with_keepalives(url.expose()))
                    .map_err(connect_error)?;
                configure_postgres(&mut conn);
                Ok(AnyConnection::Postgres(conn))
            }
            Backend::Sqlite => {
                let path = url.sqlite_path().unwrap_or_default();
                let mut conn = SqliteConnection::establish(path).map_err(connect_error)?;
                conn.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"))
                    .map_err(Error::db(format!(
                        "cannot configure SQLite database {path}"
                    )))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

/// The driver's error with every text in it scrubbed of `url`'s password, and nothing of the
/// URL's bytes left in its `Debug` (a NUL error would keep them).
fn scrubbed(url: &DatabaseUrl, e: diesel::ConnectionError) -> diesel::ConnectionError {
    use diesel::ConnectionError as E;
    match e {
        E::BadConnection(text) => E::BadConnection(url.scrub(text.trim_end())),
        E::InvalidConnectionUrl(text) => E::InvalidConnectionUrl(url.scrub(text.trim_end())),
        E::InvalidCString(nul) => E::InvalidConnectionUrl(nul.to_string()),
        E::CouldntSetupConfiguration(query) => E::BadConnection(format!(
            "cannot configure the connection: {}",
            url.scrub(&crate::foundation::redact::DatabaseError(&query).to_string())
        )),
        other => E::BadConnection(url.scrub(other.to_string().trim_end())),
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = Error;

    fn connect(&self) -> Result<AnyConnection> {
        self.establish()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<()> {
        conn.batch_execute("SELECT 1")
            .map_err(Error::db("pooled connection is no longer valid"))
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

/// The r2d2 pool migrator runs on.
pub type Pool = r2d2::Pool<ConnectionManager>;

/// A connection checked out of a [`Pool`].
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// A database: its URL and a connection pool.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct Database {
    manager: ConnectionManager,
    pool: Pool,
    /// The schema of `applied_migrations` once found or locked (PostgreSQL): every later query
    /// of this database (and its clones) names it, whatever `search_path` says meanwhile.
    tracking_schema: Arc<OnceLock<String>>,
    /// The database the migration run uses instead (`MIGRATION_DATABASE_URL`), if any.
    migration: Option<Arc<Database>>,
}

/// Default maximum number of pooled connections.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// How long a caller of [`Database::with_own_pool`]'s pool waits for a connection.
const OWN_POOL_CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Database {
    /// Opens a pool for `url` (`postgres://`, `postgresql://` or `sqlite://PATH`).
    ///
    /// One connection is made at once, so that a wrong URL, host or password fails here with
    /// the driver's message (password scrubbed) rather than later as a pool timeout. Further
    /// connections are opened on demand (up to [`DEFAULT_POOL_SIZE`]), never eagerly in the
    /// pool's background threads: a process that exits while libpq is still connecting in
    /// another thread can crash in OpenSSL's exit handlers.
    pub fn connect(url: &str) -> Result<Database> {
        Database::connect_with(
            url,
            r2d2::Pool::builder()
                .max_size(DEFAULT_POOL_SIZE)
                .min_idle(Some(0)),
        )
    }

    /// Reads `DATABASE_URL` and connects; with `MIGRATION_DATABASE_URL` set (not empty), also
    /// connects to that for the migration run (see [`Database::with_migration_url`]).
    pub fn from_env() -> Result<Database> {
        Database::from_env_url()?.with_migration_url_from_env()
    }

    fn from_env_url() -> Result<Database> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => Database::connect(&url),
            Err(std::env::VarError::NotPresent) => Err(Error::MissingVariable {
                variable: "DATABASE_URL",
                expected: "postgres://USER:PASSWORD@HOST:PORT/DATABASE or sqlite://PATH",
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidDatabaseUrl {
                variable: "DATABASE_URL",
                url: "<not shown>".into(),
                reason: "DATABASE_URL is not valid UTF-8".into(),
            }),
        }
    }

    /// [`Database::with_migration_url`] with `MIGRATION_DATABASE_URL`, when it is set and not
    /// empty; else this database as it is.
    pub fn with_migration_url_from_env(self) -> Result<Database> {
        let variable = crate::foundation::config::vars::MIGRATION_DATABASE_URL;
        match std::env::var(variable) {
            Ok(url) if url.trim().is_empty() => Ok(self),
            Ok(url) => self.with_migration_url(&url),
            Err(std::env::VarError::NotPresent) => Ok(self),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidDatabaseUrl {
                variable,
                url: "<not shown>".into(),
                reason: "MIGRATION_DATABASE_URL is not valid UTF-8".into(),
            }),
        }
    }

    /// Runs migrations on `url` instead of this database: the migration lock's session, the
    /// migrations' connections and the backfill pool all use it, while the application keeps
    /// using this database (`DATABASE_URL`). For a `DATABASE_URL` that goes through PgBouncer
    /// in transaction pooling mode, where the lock's session advisory lock cannot hold: point
    /// `url` at PostgreSQL directly (or at a session-mode pool) — the same database.
    ///
    /// Connects at once, so that a wrong URL fails here (password scrubbed).
    pub fn with_migration_url(mut self, url: &str) -> Result<Database> {
        let migration = Database::connect(url).map_err(|e| match e {
            Error::InvalidDatabaseUrl { url, reason, .. } => Error::InvalidDatabaseUrl {
                variable: crate::foundation::config::vars::MIGRATION_DATABASE_URL,
                url,
                reason,
            },
            other => other,
        })?;
        if migration.backend() != self.backend() {
            return Err(Error::InvalidDatabaseUrl {
                variable: crate::foundation::config::vars::MIGRATION_DATABASE_URL,
                url: migration.url().redacted().to_owned(),
                reason: format!(
                    "it names a {} database while DATABASE_URL names a {} one: both must name \
                     the same database",
                    migration.backend(),
                    self.backend()
                ),
            });
        }
        log::info!(
            "Migrations run through MIGRATION_DATABASE_URL {} (the application uses {})",
            migration.url(),
            self.url()
        );
        self.migration = Some(Arc::new(migration));
        Ok(self)
    }

    /// The database the migration run uses: the one of `MIGRATION_DATABASE_URL` when set
    /// (see [`Database::with_migration_url`]), else this one.
    pub fn for_migrations(&self) -> &Database {
        self.migration.as_deref().unwrap_or(self)
    }

    /// Like [`Database::connect`], with the pool settings of `builder` (size, timeouts).
    ///
    /// An in-memory SQLite database (`sqlite://:memory:`) exists once per connection, so its
    /// pool is limited to one connection.
    pub fn connect_with(url: &str, builder: r2d2::Builder<ConnectionManager>) -> Result<Database> {
        let url = DatabaseUrl::parse(url)?;
        let builder = if url.is_sqlite_memory() {
            builder.max_size(1)
        } else {
            builder
        };
        let manager = ConnectionManager::new(url);
        let first = manager.establish()?;
        drop(first);
        let pool = builder.build_unchecked(manager.clone());
        Ok(Database::from_pool(pool, manager))
    }

    /// Wraps an existing pool built on a [`ConnectionManager`].
    pub(crate) fn from_pool(pool: Pool, manager: ConnectionManager) -> Database {
        Database {
            manager,
            pool,
            tracking_schema: Arc::default(),
            migration: None,
        }
    }

    /// The same database (URL, resolved tracking schema) on a pool of its own of at most
    /// `size` connections, opened on demand and closed after 30 s idle: for work that must
    /// never take the connections of this pool's users (background-backfill workers beside an
    /// application's request handlers). A caller waits at most 2 s for a connection (r2d2's
    /// default is 30 s): when the database is down or refuses the
    /// role, a worker gets its error in seconds, backs off, and sees a stop meanwhile (an
    /// application's SIGTERM ends its workers within the grace period).
    pub fn with_own_pool(&self, size: u32) -> Database {
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .idle_timeout(Some(std::time::Duration::from_secs(30)))
            .connection_timeout(OWN_POOL_CONNECTION_WAIT)
            .build_unchecked(self.manager.clone());
        Database {
            manager: self.manager.clone(),
            pool,
            tracking_schema: Arc::clone(&self.tracking_schema),
            migration: self.migration.clone(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    pub fn get(&self) -> Result<PooledConnection> {
        Ok(self.pool.get()?)
    }

    /// A connection of its own, outside the pool (closed when dropped).
    pub fn dedicated_connection(&self) -> Result<AnyConnection> {
        self.manager.establish()
    }

    /// The URL (redacted when printed).
    pub fn url(&self) -> &DatabaseUrl {
        self.manager.url()
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.manager.url().backend()
    }

    /// Where this database's `applied_migrations` was resolved to live (PostgreSQL schema),
    /// set once per pool (see `tracking::find`).
    pub(crate) fn tracking_schema(&self) -> &OnceLock<String> {
        &self.tracking_schema
    }
}
