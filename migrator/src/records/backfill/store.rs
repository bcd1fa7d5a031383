//! `migrator_backfills` and `migrator_backfill_workers`: where background backfills and their
//! workers are recorded, in the schema of `applied_migrations`; the writes of schedulers and
//! workers (operators read them through [`super::state`]).

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::state::{load_one, BackfillState, BackfillStatus};
pub(crate) use super::tables::{ensure, find, upgrade, Tables, BACKFILLS, WORKERS};
use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};

/// The status of backfill `name` (`None`: no such row).
pub(crate) fn status(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: &str,
) -> Result<Option<BackfillStatus>> {
    #[derive(QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text)]
        status: String,
    }
    let rows: Vec<Status> = diesel::sql_query(format!(
        "SELECT status FROM {} WHERE name = $1",
        tables.backfills
    ))
    .bind::<Text, _>(name)
    .load(conn)
    .map_err(Error::db(format!(
        "cannot read the status of backfill {name}"
    )))?;
    rows.into_iter()
        .next()
        .map(|row| {
            row.status
                .parse::<BackfillStatus>()
                .map_err(|reason| Error::BackgroundBackfill {
                    name: name.to_owned(),
                    reason,
                    source: None,
                })
        })
        .transpose()
}

/// A named backfill's claims are recorded as leases on this worker's row, so that workers of
/// other processes step around the rows it computes.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) tables: Tables,
    pub(crate) name: String,
    /// The worker row's id.
    pub(crate) holder: String,
    /// How long a lease holds without being renewed (a worker that dies loses its rows to
    /// the others after this).
    pub(crate) ttl: std::time::Duration,
}

impl Lease {
    /// How long a claim holds its rows against other workers without being written: ten
    /// times the batch target, at least 30 s (a worker that dies loses its rows after this).
    pub(crate) fn ttl_for(config: &crate::foundation::config::Config) -> std::time::Duration {
        (config.batch_target() * 10).max(std::time::Duration::from_secs(30))
    }
}

/// The `migrator_backfills` row (and worker row) that each batch advances in its own
/// transaction.
#[derive(Clone, Debug)]
pub(crate) struct Sink {
    pub(crate) tables: Tables,
    pub(crate) name: String,
    pub(crate) worker: Option<String>,
}

impl Sink {
    /// Adds `rows` to `rows_done` (and the worker's), records the batch size; inside the
    /// batch's transaction.
    pub(crate) fn record(
        &self,
        conn: &mut AnyConnection,
        rows: u64,
        batch_size: usize,
    ) -> QueryResult<()> {
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        diesel::sql_query(format!(
            "UPDATE {} SET rows_done = rows_done + $1, batch_size = $2, \
             updated_at = CURRENT_TIMESTAMP WHERE name = $3",
            self.tables.backfills
        ))
        .bind::<BigInt, _>(rows)
        .bind::<Integer, _>(i32::try_from(batch_size).unwrap_or(i32::MAX))
        .bind::<Text, _>(&self.name)
        .execute(conn)?;
        if let Some(worker) = &self.worker {
            diesel::sql_query(format!(
                "UPDATE {} SET rows_done = rows_done + $1, backfill = $2, \
                 heartbeat = CURRENT_TIMESTAMP WHERE id = $3",
                self.tables.workers
            ))
            .bind::<BigInt, _>(rows)
            .bind::<Text, _>(&self.name)
            .bind::<Text, _>(worker)
            .execute(conn)?;
        }
        Ok(())
    }
}

/// What a migration scheduling a backfill wants recorded.
pub(crate) struct NewBackfill<'a> {
    pub(crate) name: &'a str,
    pub(crate) migration: &'a str,
    pub(crate) rows_total: u64,
    pub(crate) batch_size: usize,
    pub(crate) upper_key: Option<i64>,
}

/// Inserts the backfill's row as `active`, unless it exists: then an `active` or `paused` one
/// is kept as it is, a `failed` one becomes `active` again (the migration is being retried),
/// and a `finished` or `cancelled` one is left alone. Returns the row's state.
pub(crate) fn schedule(
    conn: &mut AnyConnection,
    tables: &Tables,
    new: &NewBackfill<'_>,
) -> Result<BackfillState> {
    let context = || format!("cannot schedule backfill {}", new.name);
    diesel::sql_query(format!(
        "INSERT INTO {} (name, migration, status, rows_done, rows_total, batch_size, upper_key) \
         VALUES ($1, $2, 'active', 0, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        tables.backfills
    ))
    .bind::<Text, _>(new.name)
    .bind::<Text, _>(new.migration)
    .bind::<BigInt, _>(i64::try_from(new.rows_total).unwrap_or(i64::MAX))
    .bind::<Integer, _>(i32::try_from(new.batch_size).unwrap_or(i32::MAX))
    .bind::<Nullable<BigInt>, _>(new.upper_key)
    .execute(conn)
    .map_err(|e| Error::db(context())(e))?;
    diesel::sql_query(format!(
        "UPDATE {} SET status = 'active', last_error = NULL, updated_at = CURRENT_TIMESTAMP \
         WHERE name = $1 AND status = 'failed'",
        tables.backfills
    ))
    .bind::<Text, _>(new.name)
    .execute(conn)
    .map_err(|e| Error::db(context())(e))?;
    load_one(conn, tables, new.name)?.ok_or_else(|| Error::BackgroundBackfill {
        name: new.name.to_owned(),
        reason: "its row vanished right after it was written".into(),
        source: None,
    })
}

/// Sets the status of `name` to `to` if it is one of `from`; returns whether it changed.
pub(crate) fn transition(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: &str,
    from: &[BackfillStatus],
    to: BackfillStatus,
    last_error: Option<&str>,
) -> Result<bool> {
    let finished = if to == BackfillStatus::Finished {
        // rows_total was an estimate: once finished, it is what was done.
        ", finished_at = CURRENT_TIMESTAMP, rows_total = rows_done"
    } else {
        ""
    };
    let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let changed = diesel::sql_query(format!(
        "UPDATE {} SET status = $1, last_error = COALESCE($2, last_error), \
         updated_at = CURRENT_TIMESTAMP{finished} WHERE name = $3 AND status IN ({})",
        tables.backfills,
        states.join(", ")
    ))
    .bind::<Text, _>(to.as_str())
    .bind::<Nullable<Text>, _>(last_error)
    .bind::<Text, _>(name)
    .execute(conn)
    .map_err(Error::db(format!("cannot mark backfill {name} {to}")))?;
    Ok(changed > 0)
}

/// An active backfill as workers see it.
pub(crate) struct ActiveBackfill {
    pub(crate) name: String,
    pub(crate) upper_key: Option<i64>,
    /// The checksum of the definition that scheduled it (`None`: scheduled by a version that
    /// did not record it).
    pub(crate) definition: Option<String>,
}

/// The active backfills, oldest first.
pub(crate) fn active(conn: &mut AnyConnection, tables: &Tables) -> Result<Vec<ActiveBackfill>> {
    #[derive(QueryableByName)]
    struct Active {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Nullable<BigInt>)]
        upper_key: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        definition: Option<String>,
    }
    let rows: Vec<Active> = diesel::sql_query(format!(
        "SELECT name, CAST(upper_key AS BIGINT) AS upper_key, definition FROM {} \
         WHERE status = 'active' ORDER BY created_at, name",
        tables.backfills
    ))
    .load(conn)
    .map_err(Error::db(format!("cannot read {BACKFILLS}")))?;
    Ok(rows
        .into_iter()
        .map(|r| ActiveBackfill {
            name: r.name,
            upper_key: r.upper_key,
            definition: r.definition,
        })
        .collect())
}

/// Records `definition` (the checksum of the backfill's code and parameters) on `name`'s row.
pub(crate) fn set_definition(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: &str,
    definition: &str,
) -> Result<()> {
    diesel::sql_query(format!(
        "UPDATE {} SET definition = $1 WHERE name = $2",
        tables.backfills
    ))
    .bind::<Text, _>(definition)
    .bind::<Text, _>(name)
    .execute(conn)
    .map_err(Error::db(format!(
        "cannot record the definition of backfill {name}"
    )))?;
    Ok(())
}

/// Sets `name`'s `last_error` to `message` without changing its status (something operators
/// must see, e.g. workers that leave it alone).
pub(crate) fn note(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: &str,
    message: &str,
) -> Result<()> {
    diesel::sql_query(format!(
        "UPDATE {} SET last_error = $1, updated_at = CURRENT_TIMESTAMP WHERE name = $2",
        tables.backfills
    ))
    .bind::<Text, _>(message)
    .bind::<Text, _>(name)
    .execute(conn)
    .map_err(Error::db(format!(
        "cannot record a note on backfill {name}"
    )))?;
    Ok(())
}

/// Removes the rows (and so the leases) of workers that cannot be alive: those of this host
/// whose process is gone (a worker killed with its app), and, with `inline_too`, every
/// inline run's row but `keep`'s (an inline run holds the migration lock: any other one died).
pub(crate) fn remove_gone_workers(
    conn: &mut AnyConnection,
    tables: &Tables,
    keep: &str,
    inline_too: bool,
) -> Result<()> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = BigInt)]
        pid: i64,
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT id, CAST(pid AS BIGINT) AS pid FROM {} WHERE host = $1",
        tables.workers
    ))
    .bind::<Text, _>(&host)
    .load(conn)
    .map_err(Error::db(format!("cannot read {WORKERS}")))?;
    let me = i64::from(std::process::id());
    for row in rows {
        let gone = row.pid != me && !process_alive(row.pid);
        let other_inline = inline_too && row.id != keep && row.id.ends_with(":inline");
        if gone || other_inline {
            remove_worker(conn, tables, &row.id)?;
        }
    }
    Ok(())
}

/// Whether process `pid` of this host exists.
fn process_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() || !cfg!(target_os = "linux")
}

/// Removes the rows of workers whose heartbeat is older than `age` (their process died
/// without removing them).
pub(crate) fn remove_dead_workers(
    conn: &mut AnyConnection,
    tables: &Tables,
    age: std::time::Duration,
) -> Result<()> {
    let sql = backend::of(conn.backend()).delete_dead_workers(&tables.workers);
    diesel::sql_query(sql)
        .bind::<diesel::sql_types::Double, _>(age.as_secs_f64())
        .execute(conn)
        .map_err(Error::db(format!(
            "cannot remove dead workers from {WORKERS}"
        )))?;
    Ok(())
}

/// Records (or refreshes) a worker thread's row.
pub(crate) fn heartbeat(
    conn: &mut AnyConnection,
    tables: &Tables,
    id: &str,
    thread: usize,
    backfill: Option<&str>,
) -> Result<()> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    diesel::sql_query(format!(
        "INSERT INTO {} (id, backfill, host, pid, thread) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET backfill = $2, heartbeat = CURRENT_TIMESTAMP",
        tables.workers
    ))
    .bind::<Text, _>(id)
    .bind::<Nullable<Text>, _>(backfill)
    .bind::<Text, _>(host)
    .bind::<BigInt, _>(i64::from(std::process::id()))
    .bind::<Integer, _>(i32::try_from(thread).unwrap_or(i32::MAX))
    .execute(conn)
    .map_err(Error::db(format!("cannot record worker {id} in {WORKERS}")))?;
    Ok(())
}

/// Removes a worker's row when it stops cleanly.
pub(crate) fn remove_worker(conn: &mut AnyConnection, tables: &Tables, id: &str) -> Result<()> {
    diesel::sql_query(format!("DELETE FROM {} WHERE id = $1", tables.workers))
        .bind::<Text, _>(id)
        .execute(conn)
        .map_err(Error::db(format!(
            "cannot remove worker {id} from {WORKERS}"
        )))?;
    Ok(())
}
