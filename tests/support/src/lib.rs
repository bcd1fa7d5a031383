//! What the integration tests of migrator (`migrator-tests`) and of the reference app (its
//! package's tests/) share: a throwaway PostgreSQL cluster (one per test binary, one fresh
//! database per test), SQLite files in temporary directories, a log capture, HTTP and browser
//! clients, PgBouncer and a standby beside the cluster, the Python runner's legacy table, child
//! processes with a clean environment, and small query helpers. It registers no migration and
//! links no app: a test binary's registered set is still exactly what the binary itself links.
//!
//! The cluster is the harness's (`migrator::testing::postgres`, the same one `#[migrator::test]`
//! uses: one per test binary), started with the machine's `initdb`/`pg_ctl` (as the `postgres`
//! user when running as root) and stopped when the binary exits; `MIGRATOR_TEST_DATABASE_URL`
//! names a server to use instead, except for tests that need the cluster's files
//! ([`cluster`]). If it cannot be started, the tests fail with a message saying how to fix it;
//! nothing is skipped.

pub mod browser;
pub mod cdp;
pub mod http;
pub mod legacy;
pub mod logs;
pub mod matrix;
pub mod pgbouncer;
pub mod standby;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use migrator::connection::Count;
use migrator::testing::{PostgresCluster, PostgresServer, RoleDatabase};
use migrator::{connection::Backend, Database};

/// This binary's PostgreSQL server (the harness's); panics with how to fix it if it cannot
/// start.
pub fn pg() -> &'static PostgresServer {
    migrator::testing::postgres().unwrap_or_else(|e| panic!("{e}"))
}

/// The throwaway cluster itself (its log, tools, a standby beside it); panics saying so when
/// `MIGRATOR_TEST_DATABASE_URL` names a server instead.
pub fn cluster() -> &'static PostgresCluster {
    pg().cluster().unwrap_or_else(|e| panic!("{e}"))
}

/// The password of the server's superuser and of the roles of [`role_database`]: tests check
/// that it never shows.
pub fn pg_password() -> &'static str {
    pg().password()
}

/// The superuser's URL of database `name` on [`pg`].
pub fn pg_url(name: &str) -> String {
    pg().url(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A new role and an empty database it owns ([`PostgresServer::role_database`]).
pub fn role_database() -> RoleDatabase {
    pg().role_database().unwrap_or_else(|e| panic!("{e}"))
}

/// Makes every new session of the database of `url` (on [`pg`]) log each statement with its
/// bind parameters (`log_statement = 'all'`, parameters in full), as an audited production
/// server does. Sessions already open keep their settings.
pub fn log_all_statements(url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let admin = Database::connect(&pg_url("postgres"))
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    exec(
        &admin,
        &format!(
            "ALTER DATABASE \"{name}\" SET log_statement = 'all';
             ALTER DATABASE \"{name}\" SET log_parameter_max_length = -1;"
        ),
    );
}

/// Generates a module with one test per backend calling `$name(backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn postgres() {
                super::$name(migrator::connection::Backend::Postgres)
            }
            #[test]
            fn sqlite() {
                super::$name(migrator::connection::Backend::Sqlite)
            }
        }
    };
}

/// The migrations the calling file registered (its `#[migration]`s alone, whatever else the
/// binary links), as a [`migrator::Migrator`]: several test files share one binary (one
/// cluster), each with a set of its own, and IDs may repeat between files.
#[macro_export]
macro_rules! file_migrator {
    () => {
        $crate::migrator_of_file(::core::file!())
    };
}

/// A [`migrator::Migrator`] of the one migration `id` the calling file registered (see
/// [`file_migrator!`]); panics if the file registered none by that ID.
#[macro_export]
macro_rules! file_migration {
    ($id:expr) => {
        $crate::migrator_of_file_only(::core::file!(), $id)
    };
}

/// The migrations the calling file registered (see [`file_migrator!`]), in registration order.
#[macro_export]
macro_rules! file_migrations {
    () => {
        $crate::migrations_of_file(::core::file!())
    };
}

/// The registered migrations whose `#[migration]` attribute is in `file` (as `file!()` names it).
pub fn migrations_of_file(file: &str) -> Vec<&'static migrator::Migration> {
    migrator::Migration::registered()
        .filter(|m| {
            m.location()
                .rsplit_once(':')
                .is_some_and(|(defined_in, _line)| defined_in == file)
        })
        .collect()
}

/// A [`migrator::Migrator`] of the migrations registered in `file` (see [`file_migrator!`]).
pub fn migrator_of_file(file: &str) -> migrator::Result<migrator::Migrator> {
    migrator::Migrator::from_migrations(migrations_of_file(file))
}

/// A [`migrator::Migrator`] of the migration `id` registered in `file` (see
/// [`file_migration!`]); panics if there is none.
pub fn migrator_of_file_only(file: &str, id: &str) -> migrator::Migrator {
    let only: Vec<_> = migrations_of_file(file)
        .into_iter()
        .filter(|m| m.id() == id)
        .collect();
    assert!(!only.is_empty(), "{file} registers no migration {id}");
    migrator::Migrator::from_migrations(only).unwrap_or_else(|e| panic!("{file}: {id}: {e}"))
}

/// Both backends, for tests that run on each.
pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

/// A fresh, empty database of one backend. SQLite files live until the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL (`postgres://...` or `sqlite://...`).
    pub url: String,
    /// Its backend.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database on `backend`.
    pub fn new(backend: Backend) -> TestDb {
        logs::init();
        match backend {
            Backend::Postgres => TestDb {
                url: pg().fresh_database().unwrap_or_else(|e| panic!("{e}")),
                backend,
                _dir: None,
            },
            _ => {
                let dir = tempfile::Builder::new()
                    .prefix("migrator-sqlite-")
                    .tempdir()
                    .expect("create a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// An existing database (e.g. a restored backup); nothing is deleted when dropped.
    pub fn at(url: String, backend: Backend) -> TestDb {
        logs::init();
        TestDb {
            url,
            backend,
            _dir: None,
        }
    }

    /// A pool on it.
    pub fn connect(&self) -> Database {
        Database::connect(&self.url).unwrap_or_else(|e| panic!("connect to {}: {e}", self.backend))
    }

    /// The SQLite file's path.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = Text)]
    v: String,
}

/// `SELECT COUNT(*) ...` given as `sql` whose single column is aliased `n`.
pub fn count(db: &Database, sql: &str) -> i64 {
    let mut conn = db.get().expect("pooled connection");
    let row: Count = diesel::sql_query(sql)
        .get_result(&mut *conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.n
}

/// Like [`count`], `None` when the query fails (e.g. the table does not exist yet).
pub fn try_count(db: &Database, sql: &str) -> Option<i64> {
    let mut conn = db.get().ok()?;
    let row: Count = diesel::sql_query(sql).get_result(&mut *conn).ok()?;
    Some(row.n)
}

/// One text column aliased `v`, every row.
pub fn texts(db: &Database, sql: &str) -> Vec<String> {
    let mut conn = db.get().expect("pooled connection");
    let rows: Vec<TextValue> = diesel::sql_query(sql)
        .load(&mut *conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.v).collect()
}

/// Runs statements.
pub fn exec(db: &Database, sql: &str) {
    use diesel::connection::SimpleConnection;
    let mut conn = db.get().expect("pooled connection");
    conn.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A child command with none of the variables migrator reads (and no `PGPASSWORD`) inherited
/// from the test's environment: a test sets exactly what it means.
pub fn isolated(program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for var in migrator::config::vars::ALL {
        cmd.env_remove(var);
    }
    for var in migrator::password::vars::ALL {
        cmd.env_remove(var);
    }
    cmd.env_remove("PGPASSWORD");
    cmd
}

/// How many migrations of this binary (every registered one) are pending on `t`; a test file
/// that shares its binary with others counts its own ([`file_migrator!`]).
pub fn pending(t: &TestDb) -> usize {
    migrator::Migrator::from_registry()
        .expect("the registry")
        .status(&t.connect())
        .expect("status")
        .pending()
        .count()
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A name unique in this process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// The schemas holding a table named `table` (on the database of `admin`).
pub fn schemas_of(admin: &Database, table: &str) -> Vec<String> {
    texts(
        admin,
        &format!(
            "SELECT CAST(table_schema AS TEXT) AS v FROM information_schema.tables \
             WHERE table_name = '{table}' ORDER BY 1"
        ),
    )
}

/// Gives the role of `r` its own schema (`CREATE SCHEMA role AUTHORIZATION role`, as `admin`),
/// which then goes ahead of `public` on its default `search_path` (`"$user", public`).
pub fn create_role_schema(r: &RoleDatabase, admin: &Database) {
    exec(
        admin,
        &format!("CREATE SCHEMA {0} AUTHORIZATION {0}", r.role),
    );
    let role = TestDb::at(r.url.clone(), Backend::Postgres).connect();
    assert_eq!(
        texts(&role, "SELECT current_schema() AS v"),
        std::slice::from_ref(&r.role),
        "the role's own schema now comes first on its search_path"
    );
}

/// Whether `table` exists, from inside a migration (a failing probe query would abort a
/// PostgreSQL transaction).
pub fn table_exists(ctx: &mut migrator::Context<'_>, table: &str) -> migrator::Result<bool> {
    let sql = match ctx.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let row: Count = diesel::sql_query(sql)
        .bind::<Text, _>(table)
        .get_result(ctx.conn())?;
    Ok(row.n > 0)
}
