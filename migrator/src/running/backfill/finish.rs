//! What runs once a backfill is complete: the statements its definition lists
//! ([`Backfill::then`], [`Backfill::then_create_index`]), e.g. an index on the new column,
//! which need not delay a migration's start-up.
//!
//! They run in whichever process completes the backfill: a background worker whose sweep from
//! the first key found nothing pending, an inline run (`inline`, `auto` within its budget), or
//! a later migration's [`finalize_backfill`](crate::Context::finalize_backfill); always before
//! the backfill is recorded `finished`, so that `finished` means they ran too. On PostgreSQL
//! one process at a time runs them, on a connection of its own holding an advisory lock named
//! after the backfill (others wait or come back later); a `CONCURRENTLY` statement runs without
//! the DDL lock timeout (its waits for old snapshots do not queue the application, and
//! cancelling it would leave an invalid index), every other one with
//! `MIGRATION_DDL_LOCK_TIMEOUT_MS`, and none with a role's `statement_timeout`, as a migration's
//! statements. They must be idempotent (`IF NOT EXISTS`): a process killed half-way runs them
//! again.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::definition::Then;
use super::Backfill;
use crate::access::backend;
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::error::{Error, Result};

/// The first key of the advisory lock that serializes finishing a backfill: ASCII "bkfl".
const FINISH_CLASS: i32 = 0x626B_666C;

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

impl Backfill {
    /// Whether anything runs once the backfill is complete.
    pub(super) fn has_then(&self) -> bool {
        !self.then.is_empty()
    }

    /// Runs the statements to run once the backfill is complete (nothing if there are none).
    /// On PostgreSQL on a new connection holding the backfill's finishing lock: with `wait`,
    /// polls until it gets the lock; else returns `Ok(false)` at once when another process
    /// holds it. `Ok(true)`: they ran.
    pub(crate) fn run_then(
        &self,
        db: &Database,
        name: &str,
        ddl_lock_timeout: Duration,
        wait: bool,
    ) -> Result<bool> {
        if self.then.is_empty() {
            return Ok(true);
        }
        let context = || format!("cannot finish the backfill of {}", self.table);
        // A session of its own (the migration URL: a transaction-mode pooler keeps no session
        // lock), closed when dropped, and its session lock with it.
        let mut conn = db.for_migrations().dedicated_connection()?;
        if let Some(lock) = backend::of(conn.backend()).finish_lock_sql() {
            loop {
                let taken: Taken = diesel::sql_query(lock)
                    .bind::<diesel::sql_types::Integer, _>(FINISH_CLASS)
                    .bind::<Text, _>(name)
                    .get_result(&mut conn)
                    .map_err(Error::db(context()))?;
                if taken.taken {
                    break;
                }
                if !wait {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // The connection is closed when dropped, and its session lock with it.
        self.run_then_on(&mut conn, ddl_lock_timeout)?;
        log::info!(
            "Backfill of {} complete: {} finishing statement(s) ran",
            self.table,
            self.then.len()
        );
        Ok(true)
    }

    /// Runs the statements on `conn` (outside a transaction), restoring its `lock_timeout` and
    /// `statement_timeout` afterwards (a migration's connection keeps the runner's).
    pub(crate) fn run_then_on(
        &self,
        conn: &mut AnyConnection,
        ddl_lock_timeout: Duration,
    ) -> Result<()> {
        for step in &self.then {
            for sql in self.statements(conn, step)? {
                self.run_step(conn, &sql, ddl_lock_timeout)?;
            }
        }
        Ok(())
    }

    /// The statements of `step` on `conn`'s backend.
    fn statements(&self, conn: &mut AnyConnection, step: &Then) -> Result<Vec<String>> {
        let (name, on) = match step {
            Then::Sql(sql) => return Ok(vec![(*sql).to_owned()]),
            Then::Index { name, on } => (*name, *on),
        };
        let dialect = backend::of(conn.backend());
        let mut sql = Vec::new();
        if let Some(invalid) = dialect.invalid_index_sql() {
            let invalid: Taken = diesel::sql_query(invalid)
                .bind::<Text, _>(name)
                .get_result(conn)
                .map_err(Error::db(format!("cannot look up index {name}")))?;
            if invalid.taken {
                log::warn!("Dropping the invalid index {name} left by an interrupted build");
                sql.push(dialect.drop_index(name));
            }
        }
        sql.push(dialect.create_index(name, on));
        Ok(sql)
    }

    fn run_step(
        &self,
        conn: &mut AnyConnection,
        sql: &str,
        ddl_lock_timeout: Duration,
    ) -> Result<()> {
        let context = || {
            format!(
                "cannot run a finishing statement of the backfill of {}",
                self.table
            )
        };
        if !backend::of(conn.backend()).lock_timeouts() {
            return conn.batch_execute(sql).map_err(Error::db(context()));
        }
        let lock_ms = if crate::running::context::is_concurrently(sql) {
            0
        } else {
            ddl_lock_timeout.as_millis().max(1)
        };
        conn.with_settings(
            &[
                ("lock_timeout", &lock_ms.to_string()),
                ("statement_timeout", "0"),
            ],
            |conn| conn.batch_execute(sql).map_err(Error::db(context())),
        )
    }
}
