//! The PostgreSQL migration lock.
//!
//! Key: the two-integer form of `pg_advisory_lock(key1, key2)` with
//! `key1 = 1835624306` (`0x6D696772`, ASCII "migr") and
//! `key2 = hashtext(current_database() || '.' || SCHEMA || '.applied_migrations')`, where
//! `SCHEMA` is the schema of the tracking table as resolved for this database (the existing
//! `applied_migrations` visible on `search_path`, else `current_schema()`: see
//! `tracking::locate`). Two schemas (tenants) of one server, or two databases, never serialize
//! each other, while two runners whose `search_path`s differ but find the same table take the
//! same lock. (For a table in `current_schema()`, the usual case, the key is the one earlier
//! versions computed from `current_schema()`.)
//! An operator finds the holder with:
//!
//! ```sql
//! SELECT a.pid, a.application_name, a.client_addr, a.state_change
//! FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
//! WHERE l.locktype = 'advisory' AND l.classid = 1835624306 AND l.objsubid = 2 AND l.granted;
//! ```
//!
//! The lock is a session lock: behind PgBouncer in transaction pooling mode it does not hold.
//! Point `DATABASE_URL` of the migrating process at PostgreSQL directly (or a session-mode pool).

use std::time::Duration;

use diesel::sql_types::{Bool, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::connection::{AnyConnection, Database};
use crate::error::{Error, Result};

/// The first key of the advisory lock: ASCII "migr".
pub const LOCK_CLASS: i32 = 0x6D69_6772;

/// The second key, from the tracking table's schema bound as `$1`.
const KEY2: &str = "hashtext(current_database() || '.' || $1 || '.applied_migrations')";

/// A held advisory lock on its own connection.
pub(crate) struct PgLock {
    conn: Option<AnyConnection>,
    database: String,
    /// The schema of the tracking table this lock guards.
    schema: String,
}

impl std::fmt::Debug for PgLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    application_name: String,
    #[diesel(sql_type = Text)]
    client: String,
    #[diesel(sql_type = Nullable<Text>)]
    since: Option<String>,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

impl PgLock {
    pub(crate) fn acquire(db: &Database, timeout: Duration) -> Result<PgLock> {
        let mut conn = db.dedicated_connection()?;
        let me = crate::tracking::runner_identity();
        let name: Name = diesel::sql_query(
            "SELECT current_database() AS name \
             FROM (SELECT set_config('application_name', $1, false)) AS configured",
        )
        .bind::<Text, _>(format!("migrator {me}"))
        .get_result(&mut conn)
        .map_err(Error::db("cannot prepare the migration lock connection"))?;
        let database = name.name;
        let table = crate::tracking::locate(db, &mut conn)?;
        let schema = table.schema().unwrap_or_default().to_owned();
        // Waiters look the holder up on a second connection, opened only if they have to wait.
        let mut observer: Option<AnyConnection> = None;
        let what = format!("(PostgreSQL advisory lock {LOCK_CLASS} on database {database})");
        crate::lock::wait_for(
            &what,
            timeout,
            || {
                let taken: Taken = diesel::sql_query(format!(
                    "SELECT pg_try_advisory_lock({LOCK_CLASS}, {KEY2}) AS taken"
                ))
                .bind::<Text, _>(&schema)
                .get_result(&mut conn)
                .map_err(Error::db("cannot take the PostgreSQL migration lock"))?;
                Ok(taken.taken.then_some(()))
            },
            || {
                if observer.is_none() {
                    observer = db.dedicated_connection().ok();
                }
                holder(observer.as_mut()?, &schema)
            },
        )?;
        // This session idles for the whole run: like every connection migrator opens, it has
        // `idle_session_timeout = 0` and TCP keepalives (see `connection.rs`).
        Ok(PgLock {
            conn: Some(conn),
            database,
            schema,
        })
    }

    /// Whether this session still holds the lock (its connection may have been terminated).
    pub(crate) fn ensure_held(&mut self) -> Result<()> {
        let held = self.conn.as_mut().and_then(|conn| {
            diesel::sql_query(format!(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 2 \
                 AND classid = CAST({LOCK_CLASS} AS oid) \
                 AND objid = CAST(CAST({KEY2} AS BIGINT) & 4294967295 AS oid)) AS taken"
            ))
            .bind::<Text, _>(&self.schema)
            .get_result::<Taken>(conn)
            .ok()
        });
        match held {
            Some(Taken { taken: true }) => Ok(()),
            _ => Err(Error::LockLost {
                lock: self.describe(),
            }),
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "PostgreSQL advisory lock ({LOCK_CLASS}, hashtext of {}.{}.applied_migrations)",
            self.database, self.schema
        )
    }

    /// The tracking table this lock guards.
    pub(crate) fn table(&self) -> crate::tracking::Table {
        crate::tracking::Table::in_schema(self.schema.clone())
    }
}

/// "pid 123 (application_name 'x', client 10.0.0.1) since 2026-01-01 ..." for the current holder.
fn holder(conn: &mut AnyConnection, schema: &str) -> Option<String> {
    let query = format!(
        "SELECT a.pid AS pid, COALESCE(a.application_name, '') AS application_name, \
         COALESCE(host(a.client_addr), 'local socket') AS client, \
         CAST(a.state_change AS TEXT) AS since \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND l.classid = CAST({LOCK_CLASS} AS oid) AND l.objid = CAST(CAST({KEY2} AS BIGINT) & 4294967295 AS oid) \
         LIMIT 1"
    );
    let found: Vec<Holder> = diesel::sql_query(query)
        .bind::<Text, _>(schema)
        .load(conn)
        .ok()?;
    found.into_iter().next().map(|h| {
        format!(
            "pid {} (application_name '{}', client {}) since {}",
            h.pid,
            h.application_name,
            h.client,
            h.since.as_deref().unwrap_or("an unknown time")
        )
    })
}

impl Drop for PgLock {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked: std::result::Result<Taken, _> = diesel::sql_query(format!(
                "SELECT pg_advisory_unlock({LOCK_CLASS}, {KEY2}) AS taken"
            ))
            .bind::<Text, _>(&self.schema)
            .get_result(&mut conn);
            if !matches!(unlocked, Ok(Taken { taken: true })) {
                log::warn!(
                    "Could not release the migration lock explicitly; closing its connection \
                     releases it"
                );
            }
            // Dropping the dedicated connection ends the session, which frees the lock anyway.
        }
    }
}
