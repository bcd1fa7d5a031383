//! What operators see of background backfills (`list`, `get`) and what they do to them
//! (`control`): the rows of `migrator_backfills` and `migrator_backfill_workers`, read.

use std::fmt;
use std::str::FromStr;

use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use serde::Serialize;

use super::store::{find, Tables, BACKFILLS, WORKERS};
use crate::access::backend;
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::error::{Error, Result};

/// A worker whose heartbeat is older than this many seconds is not listed.
const WORKER_STALE_SECS: i64 = 60;

/// The state of a background backfill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackfillStatus {
    /// Workers work on it.
    Active,
    /// An operator paused it; workers leave it alone (across restarts) until resumed.
    Paused,
    /// No row up to its `upper_key` is left.
    Finished,
    /// A batch kept failing; `last_error` says why. `resume` retries it.
    Failed,
    /// An operator cancelled it; nobody works on it again (a later migration may finalize it).
    Cancelled,
}

impl BackfillStatus {
    /// The value stored in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillStatus::Active => "active",
            BackfillStatus::Paused => "paused",
            BackfillStatus::Finished => "finished",
            BackfillStatus::Failed => "failed",
            BackfillStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BackfillStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackfillStatus {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<BackfillStatus, String> {
        match value {
            "active" => Ok(BackfillStatus::Active),
            "paused" => Ok(BackfillStatus::Paused),
            "finished" => Ok(BackfillStatus::Finished),
            "failed" => Ok(BackfillStatus::Failed),
            "cancelled" => Ok(BackfillStatus::Cancelled),
            other => Err(format!(
                "unknown backfill status {other:?}: expected active, paused, finished, failed \
                 or cancelled"
            )),
        }
    }
}

/// One worker thread working on backfills, as its last heartbeat recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerState {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// The thread's number in its process.
    pub thread: i32,
    /// Its last heartbeat (UTC).
    pub heartbeat: Option<String>,
    /// Rows it wrote.
    pub rows_done: u64,
}

/// One background backfill: its row of `migrator_backfills`, its live workers, and a rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackfillState {
    /// The backfill's name.
    pub name: String,
    /// The migration that scheduled it.
    pub migration: String,
    /// Its state.
    pub status: BackfillStatus,
    /// Rows written, counted in the same transaction as each batch.
    pub rows_done: u64,
    /// Rows pending up to `upper_key` when it was scheduled: an estimate (planner statistics
    /// and a bounded probe, exact below 10,000 rows), read as at least `rows_done`, and set to
    /// `rows_done` when the backfill finishes.
    pub rows_total: u64,
    /// The latest batch size.
    pub batch_size: u64,
    /// The largest key when it was scheduled: later rows are the application's.
    pub upper_key: Option<i64>,
    /// Why it failed.
    pub last_error: Option<String>,
    /// When it was scheduled (UTC).
    pub created_at: Option<String>,
    /// When it last changed (UTC).
    pub updated_at: Option<String>,
    /// When it finished (UTC).
    pub finished_at: Option<String>,
    /// Rows per second since it was scheduled (until it finished).
    pub rate_per_sec: f64,
    /// Seconds left at that rate, while active.
    pub eta_secs: Option<u64>,
    /// Workers with a heartbeat in the last minute working on it.
    pub workers: Vec<WorkerState>,
}

/// An operator's action on a backfill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Control {
    /// Stop working on it (every worker, within one batch) until resumed.
    Pause,
    /// Work on it again (a paused or failed backfill).
    Resume,
    /// Stop working on it for good.
    Cancel,
}

impl Control {
    fn target(self) -> BackfillStatus {
        match self {
            Control::Pause => BackfillStatus::Paused,
            Control::Resume => BackfillStatus::Active,
            Control::Cancel => BackfillStatus::Cancelled,
        }
    }

    fn allowed_states(self) -> &'static [&'static str] {
        match self {
            Control::Pause => &["active", "paused"],
            Control::Resume => &["paused", "failed", "active"],
            Control::Cancel => &["active", "paused", "failed", "cancelled"],
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Control::Pause => "paused",
            Control::Resume => "resumed",
            Control::Cancel => "cancelled",
        }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    migration: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    rows_done: i64,
    #[diesel(sql_type = BigInt)]
    rows_total: i64,
    #[diesel(sql_type = BigInt)]
    batch_size: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    upper_key: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    created_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    updated_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    finished_at: Option<String>,
    #[diesel(sql_type = Double)]
    elapsed_secs: f64,
}

#[derive(QueryableByName)]
struct WorkerRow {
    #[diesel(sql_type = Nullable<Text>)]
    backfill: Option<String>,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    pid: i64,
    #[diesel(sql_type = Integer)]
    thread: i32,
    #[diesel(sql_type = BigInt)]
    rows_done: i64,
    #[diesel(sql_type = Nullable<Text>)]
    heartbeat: Option<String>,
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Row {
    fn into_state(self, workers: Vec<WorkerState>) -> Result<BackfillState> {
        let status: BackfillStatus =
            self.status
                .parse()
                .map_err(|reason: String| Error::BackgroundBackfill {
                    name: self.name.clone(),
                    reason,
                    source: None,
                })?;
        // rows_total is an estimate: never read as less than what is done.
        let (done, total) = (to_u64(self.rows_done), to_u64(self.rows_total));
        let total = total.max(done);
        let rate = if self.elapsed_secs > 0.0 {
            done as f64 / self.elapsed_secs
        } else {
            0.0
        };
        let eta = (status == BackfillStatus::Active && rate > 0.0)
            .then(|| (total.saturating_sub(done) as f64 / rate).ceil() as u64);
        Ok(BackfillState {
            name: self.name,
            migration: self.migration,
            status,
            rows_done: done,
            rows_total: total,
            batch_size: to_u64(self.batch_size),
            upper_key: self.upper_key,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            rate_per_sec: rate,
            eta_secs: eta,
            workers,
        })
    }
}

fn load(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: Option<&str>,
) -> Result<Vec<BackfillState>> {
    let dialect = backend::of(conn.backend());
    let sql = dialect.backfills_select(&tables.backfills);
    let rows: Vec<Row> = diesel::sql_query(sql)
        .bind::<Nullable<Text>, _>(name)
        .load(conn)
        .map_err(Error::db(format!("cannot read {BACKFILLS}")))?;
    let workers: Vec<WorkerRow> =
        diesel::sql_query(dialect.workers_select(&tables.workers, WORKER_STALE_SECS))
            .load(conn)
            .map_err(Error::db(format!("cannot read {WORKERS}")))?;
    rows.into_iter()
        .map(|row| {
            let mine = workers
                .iter()
                .filter(|w| w.backfill.as_deref() == Some(row.name.as_str()))
                .map(|w| WorkerState {
                    host: w.host.clone(),
                    pid: w.pid,
                    thread: w.thread,
                    heartbeat: w.heartbeat.clone(),
                    rows_done: to_u64(w.rows_done),
                })
                .collect();
            row.into_state(mine)
        })
        .collect()
}

/// Every background backfill of `db` with its live workers; empty when none was ever
/// scheduled (the tables do not exist).
pub fn list(db: &Database) -> Result<Vec<BackfillState>> {
    let mut conn = db.get()?;
    let all = match find(db, &mut conn)? {
        Some(tables) => load(&mut conn, &tables, None)?,
        None => Vec::new(),
    };
    all.iter().for_each(record_metrics);
    Ok(all)
}

/// The backfill `name`, if it was scheduled.
pub fn get(db: &Database, name: &str) -> Result<Option<BackfillState>> {
    let mut conn = db.get()?;
    match find(db, &mut conn)? {
        Some(tables) => Ok(load(&mut conn, &tables, Some(name))?.into_iter().next()),
        None => Ok(None),
    }
}

pub(crate) fn load_one(
    conn: &mut AnyConnection,
    tables: &Tables,
    name: &str,
) -> Result<Option<BackfillState>> {
    Ok(load(conn, tables, Some(name))?.into_iter().next())
}

/// Pauses, resumes or cancels the backfill `name`, for every worker on every host (each sees it
/// before its next batch); returns its new state. A finished backfill, or one that does not
/// exist, is an error; pausing a paused one changes nothing.
pub fn control(db: &Database, name: &str, action: Control) -> Result<BackfillState> {
    let mut conn = db.get()?;
    let unknown = || Error::BackgroundBackfill {
        name: name.to_owned(),
        reason: "no such backfill was scheduled".into(),
        source: None,
    };
    let tables = find(db, &mut conn)?.ok_or_else(unknown)?;
    let allowed = action.allowed_states();
    let placeholders: Vec<String> = (0..allowed.len()).map(|i| format!("${}", i + 3)).collect();
    let clear_error = if action == Control::Resume {
        ", last_error = NULL"
    } else {
        ""
    };
    let mut query = diesel::sql_query(format!(
        "UPDATE {} SET status = $1, updated_at = CURRENT_TIMESTAMP{clear_error} \
         WHERE name = $2 AND status IN ({})",
        tables.backfills,
        placeholders.join(", ")
    ))
    .into_boxed::<crate::access::connection::MultiBackend>()
    .bind::<Text, _>(action.target().as_str())
    .bind::<Text, _>(name);
    for state in allowed {
        query = query.bind::<Text, _>(*state);
    }
    let changed = query
        .execute(&mut *conn)
        .map_err(Error::db(format!("cannot change backfill {name}")))?;
    let state = load_one(&mut conn, &tables, name)?.ok_or_else(unknown)?;
    if changed == 0 {
        return Err(Error::BackgroundBackfill {
            name: name.to_owned(),
            reason: format!("it is {} and cannot be {}", state.status, action.verb()),
            source: None,
        });
    }
    log::info!("Backfill {name} {} by an operator", action.verb());
    Ok(state)
}

/// The state of a background backfill as read from `migrator_backfills` (by the workers'
/// progress ticks, and by [`list`]).
pub(crate) fn record_metrics(state: &BackfillState) {
    use crate::foundation::metrics::BACKGROUND_ROWS_PER_SECOND;
    use crate::foundation::metrics::{
        BACKGROUND_ACTIVE, BACKGROUND_ROWS_DONE, BACKGROUND_ROWS_EXPECTED,
    };
    use ::metrics::gauge;

    crate::foundation::metrics::describe();
    let name = state.name.clone();
    gauge!(BACKGROUND_ROWS_DONE, "backfill" => name.clone()).set(state.rows_done as f64);
    gauge!(BACKGROUND_ROWS_EXPECTED, "backfill" => name.clone()).set(state.rows_total as f64);
    gauge!(BACKGROUND_ROWS_PER_SECOND, "backfill" => name.clone()).set(state.rate_per_sec);
    let active = state.status == BackfillStatus::Active;
    gauge!(BACKGROUND_ACTIVE, "backfill" => name).set(if active { 1.0 } else { 0.0 });
}
