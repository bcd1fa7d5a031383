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
//! The lock is a session lock: behind PgBouncer in transaction pooling mode it does not hold
//! (each statement of the lock's connection may run on another server connection). Before
//! trying for the lock, [`check_session_kept`] looks for that, and every statement of the lock
//! connection compares its backend pid with the session's: a moved session is
//! [`Error::TransactionPooling`] (a configuration error), never a lock taken on a borrowed
//! server connection. Point `MIGRATION_DATABASE_URL` at PostgreSQL directly (or at a
//! session-mode pool) for the migration run; the application keeps `DATABASE_URL`.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend::pg_lock::{self, LOCK_CLASS};
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::error::{Error, Result};

/// How many times [`check_session_kept`] looks for a pooler before the lock is tried.
const PROBE_ROUNDS: usize = 3;

/// How long a lock that a transaction pooler moved away from its session is tried to be
/// released, statement after statement, before its server connection is left to free it.
const RELEASE_WITHIN: Duration = Duration::from_secs(3);

/// A held advisory lock on its own connection.
pub(crate) struct PgLock {
    conn: Option<AnyConnection>,
    database: String,
    /// The schema of the tracking table this lock guards.
    schema: String,
    /// The backend pid of the lock's session: the server process that holds the lock.
    pid: i32,
    /// The redacted URL of the lock's connection, for errors.
    url: String,
}

impl std::fmt::Debug for PgLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// An answer of the lock's session, with the backend pid that gave it.
#[derive(QueryableByName)]
struct Answer {
    #[diesel(sql_type = Bool)]
    taken: bool,
    #[diesel(sql_type = Integer)]
    pid: i32,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
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
struct Session {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The backend pid serving `conn`'s next statement.
fn backend_pid(conn: &mut AnyConnection) -> Result<i32> {
    let row: Pid = diesel::sql_query(pg_lock::BACKEND_PID)
        .get_result(conn)
        .map_err(Error::db(
            "cannot read the backend pid of the migration lock session",
        ))?;
    Ok(row.pid)
}

/// Looks for a pooler in transaction pooling mode between `conn` (whose session was served by
/// backend `pid`) and PostgreSQL, before any lock is taken: a second connection, inside a
/// transaction, must get a backend of its own, and `conn` must keep `pid` meanwhile. Directly
/// or through a session-mode pool both always hold; through a transaction-mode pool the
/// second connection usually gets the server connection `conn` just released (pools reuse the
/// most recent one), or `conn` moves to another. A few rounds make a miss unlikely; the pid
/// check of every later statement on `conn` catches the rest.
fn check_session_kept(db: &Database, conn: &mut AnyConnection, pid: i32) -> Result<()> {
    let moved = || Error::TransactionPooling {
        url: db.url().redacted().to_owned(),
    };
    let mut probe = db.dedicated_connection()?;
    for _ in 0..PROBE_ROUNDS {
        probe
            .batch_execute("BEGIN")
            .map_err(Error::db("cannot probe the migration lock session"))?;
        let other = backend_pid(&mut probe)?;
        // Asked only while the probe's transaction pins its own server connection.
        let again = if other == pid {
            None
        } else {
            Some(backend_pid(conn)?)
        };
        probe
            .batch_execute("ROLLBACK")
            .map_err(Error::db("cannot probe the migration lock session"))?;
        if again != Some(pid) {
            return Err(moved());
        }
    }
    Ok(())
}

impl PgLock {
    pub(crate) fn acquire(db: &Database, timeout: Duration) -> Result<PgLock> {
        let mut conn = db.dedicated_connection()?;
        let me = crate::records::tracking::runner_identity();
        let session: Session = diesel::sql_query(pg_lock::PREPARE)
            .bind::<Text, _>(format!("migrator {me}"))
            .get_result(&mut conn)
            .map_err(Error::db("cannot prepare the migration lock connection"))?;
        let (database, pid) = (session.name, session.pid);
        let url = db.url().redacted().to_owned();
        let table = crate::records::tracking::locate(db, &mut conn)?;
        let schema = table.schema().unwrap_or_default().to_owned();
        check_session_kept(db, &mut conn, pid)?;
        // Waiters look the holder up on a second connection, opened only if they have to wait.
        let mut observer: Option<AnyConnection> = None;
        let what = format!("(PostgreSQL advisory lock {LOCK_CLASS} on database {database})");
        crate::records::lock::wait_for(
            &what,
            timeout,
            || {
                // Taken only by the session's own backend: on a borrowed server connection
                // the lock would outlive this runner there (until the pooler closes it).
                let answer: Answer = diesel::sql_query(pg_lock::take())
                    .bind::<Text, _>(&schema)
                    .bind::<Integer, _>(pid)
                    .get_result(&mut conn)
                    .map_err(Error::db("cannot take the PostgreSQL migration lock"))?;
                if answer.pid != pid {
                    return Err(Error::TransactionPooling { url: url.clone() });
                }
                Ok(answer.taken.then_some(()))
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
            pid,
            url,
        })
    }

    /// Whether this session still holds the lock (its connection may have been terminated),
    /// on its own backend (else a pooler moved it: [`Error::TransactionPooling`]).
    pub(crate) fn ensure_held(&mut self) -> Result<()> {
        let held = self.conn.as_mut().and_then(|conn| {
            diesel::sql_query(pg_lock::held())
                .bind::<Text, _>(&self.schema)
                .get_result::<Answer>(conn)
                .ok()
        });
        match held {
            Some(Answer { pid, .. }) if pid != self.pid => Err(Error::TransactionPooling {
                url: self.url.clone(),
            }),
            Some(Answer { taken: true, .. }) => Ok(()),
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
    pub(crate) fn table(&self) -> crate::records::tracking::Table {
        crate::records::tracking::Table::in_schema(self.schema.clone())
    }
}

/// "pid 123 (application_name 'x', client 10.0.0.1) since 2026-01-01 ..." for the current holder.
fn holder(conn: &mut AnyConnection, schema: &str) -> Option<String> {
    let found: Vec<Holder> = diesel::sql_query(pg_lock::holder())
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
            // Only the session's own backend holds the lock; behind a transaction pooler the
            // statement may land elsewhere (there, unlocking would only warn), and the server
            // connection that holds it may be busy with another client's transaction for a
            // while: try again until it lands there, for up to RELEASE_WITHIN. Directly (the
            // only supported way) the first statement lands there.
            let mut unlocked = false;
            let deadline = std::time::Instant::now() + RELEASE_WITHIN;
            loop {
                let answer: std::result::Result<Answer, _> = diesel::sql_query(pg_lock::release())
                    .bind::<Text, _>(&self.schema)
                    .bind::<Integer, _>(self.pid)
                    .get_result(&mut conn);
                match answer {
                    Ok(Answer { pid, .. }) if pid != self.pid => {
                        if std::time::Instant::now() >= deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Ok(Answer { taken, .. }) => unlocked = taken,
                    Err(_) => {}
                }
                break;
            }
            if !unlocked {
                log::warn!(
                    "Could not release the migration lock explicitly; closing its connection \
                     releases it"
                );
            }
            // Dropping the dedicated connection ends the session, which frees the lock anyway.
        }
    }
}
