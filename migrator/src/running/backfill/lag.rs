//! Replica lag: how far each streaming replica of a PostgreSQL primary is behind, and a wait
//! that holds background-backfill batches while one is too far behind.
//!
//! Measured on the primary from `pg_stat_replication`:
//! - **bytes**: `pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)`, the WAL written on the
//!   primary that the replica has not replayed yet. This is the reliable signal: it grows with
//!   every write the replica does not keep up with, whatever the reason.
//! - **seconds**: PostgreSQL's `replay_lag` is only recomputed when the replica reports back
//!   (on new WAL and every `wal_receiver_status_interval`, 10 s by default). While the
//!   replica's replay is stuck (paused, or blocked by a conflicting query) it keeps showing the
//!   value of the last report, which may be from before the replica fell behind. So while a
//!   replica is behind (bytes > 0), the time since its last report is added: `replay_lag` was
//!   the lag then, and its replay has not caught up since. A replica that has caught up reports
//!   at once, so a healthy one shows bytes 0 and its measured `replay_lag`.
//!
//! Replicas that are not connected (no row in `pg_stat_replication`) are not seen. A role
//! without `pg_monitor` (or `pg_read_all_stats`) sees the rows with their WAL positions NULL:
//! such replicas are left out (their lag is unknown) and a warning says so, once per process.
//! On SQLite there are no replicas.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};

/// How often [`wait_for_replicas`] measures again while it holds.
const POLL: Duration = Duration::from_millis(500);

/// How often [`wait_for_replicas`] repeats its log line while it holds.
const LOG_EVERY: Duration = Duration::from_secs(10);

const MIB: f64 = 1024.0 * 1024.0;

/// How far one replica is behind the primary.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaLag {
    /// The replica's `application_name` (its `cluster_name`, or what its `primary_conninfo`
    /// sets), else its client address, else `pid N` of its WAL sender.
    pub name: String,
    /// WAL bytes written on the primary and not yet replayed on the replica.
    pub bytes: u64,
    /// Seconds behind, as estimated (see the module's documentation); `None` when PostgreSQL
    /// has no measurement (a replica that has been idle and caught up).
    pub seconds: Option<f64>,
}

/// The lag above which background-backfill batches are held (`MIGRATION_MAX_REPLICA_LAG_SECS`,
/// `MIGRATION_MAX_REPLICA_LAG_MB`). A replica is over the limits when it is more than
/// `max_seconds` or more than `max_bytes` behind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagLimits {
    /// Seconds a replica may be behind.
    pub max_seconds: f64,
    /// WAL bytes a replica may be behind.
    pub max_bytes: u64,
}

impl LagLimits {
    /// The limits `config` sets (its defaults: 30 s and 256 MB).
    pub fn from_config(config: &Config) -> LagLimits {
        LagLimits {
            max_seconds: config.max_replica_lag_time().as_secs_f64(),
            max_bytes: config.max_replica_lag_mb().saturating_mul(1024 * 1024),
        }
    }

    fn over(&self, lag: &ReplicaLag) -> bool {
        lag.bytes > self.max_bytes || lag.seconds.is_some_and(|s| s > self.max_seconds)
    }

    /// How far over its limits `lag` is, as a multiple of the limit (a zero limit counts any
    /// lag as far over).
    fn severity(&self, lag: &ReplicaLag) -> f64 {
        let ratio = |value: f64, limit: f64| {
            if limit > 0.0 {
                value / limit
            } else if value > 0.0 {
                f64::MAX
            } else {
                0.0
            }
        };
        let bytes = ratio(lag.bytes as f64, self.max_bytes as f64);
        let seconds = ratio(lag.seconds.unwrap_or(0.0), self.max_seconds);
        bytes.max(seconds)
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    bytes: Option<i64>,
    #[diesel(sql_type = Nullable<Double>)]
    replay_secs: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    since_reply: Option<f64>,
    /// A physical WAL sender (no database: not a logical/CDC consumer).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    physical: bool,
    /// It reports what it flushed but not what it replayed: `pg_receivewal` or another WAL
    /// archiver that never replays.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    no_replay: bool,
}

static WARNED_UNKNOWN: AtomicBool = AtomicBool::new(false);

/// The lag of every replica streaming from this PostgreSQL server (see the module's
/// documentation for how it is measured); empty on SQLite, on a server without replicas and on
/// a server that is itself in recovery.
///
/// Only physical streaming standbys that replay count: logical/CDC consumers (their WAL
/// sender is connected to a database) and WAL archivers that never replay (`pg_receivewal`)
/// are left out. See [`replica_lag_for`] to include or exclude replicas by name.
pub fn replica_lag(conn: &mut AnyConnection) -> Result<Vec<ReplicaLag>> {
    replica_lag_for(conn, &[], &[])
}

/// [`replica_lag`], also counting the WAL receivers named in `include` (whatever their kind)
/// and never those named in `exclude` (by `application_name`): `MIGRATION_REPLICA_LAG_INCLUDE`
/// and `MIGRATION_REPLICA_LAG_EXCLUDE`. A delayed standby (`recovery_min_apply_delay`) looks
/// from the primary like one whose replay is stuck: exclude it by name.
pub fn replica_lag_for(
    conn: &mut AnyConnection,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<ReplicaLag>> {
    let Some(sql) = backend::of(conn.backend()).replica_lag_sql() else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row> = diesel::sql_query(sql)
        .load(conn)
        .map_err(Error::db("measure replica lag (pg_stat_replication)"))?;
    let mut lags = Vec::with_capacity(rows.len());
    let mut unknown = Vec::new();
    for row in rows {
        let named = |list: &[String]| list.contains(&row.name);
        let counted = named(include) || (row.physical && !row.no_replay);
        if !counted || named(exclude) {
            continue;
        }
        let Some(bytes) = row.bytes else {
            unknown.push(row.name);
            continue;
        };
        let bytes = u64::try_from(bytes).unwrap_or(0);
        let seconds = if bytes > 0 {
            match (row.replay_secs, row.since_reply) {
                (None, None) => None,
                (replay, since) => Some(replay.unwrap_or(0.0) + since.unwrap_or(0.0)),
            }
        } else {
            row.replay_secs
        };
        lags.push(ReplicaLag {
            name: row.name,
            bytes,
            seconds,
        });
    }
    if !unknown.is_empty() && !WARNED_UNKNOWN.swap(true, Ordering::Relaxed) {
        log::warn!(
            "Replica lag unknown for {} ({}): pg_stat_replication shows this role no WAL \
             positions (grant it pg_monitor), or the replica is still starting; background \
             backfills are not held for it",
            unknown.join(", "),
            if unknown.len() == 1 {
                "1 replica".to_owned()
            } else {
                format!("{} replicas", unknown.len())
            }
        );
    }
    Ok(lags)
}

/// The replica furthest over `limits` (relative to the limit it exceeds), if any is over.
pub fn over_limit<'a>(lags: &'a [ReplicaLag], limits: &LagLimits) -> Option<&'a ReplicaLag> {
    lags.iter()
        .filter(|lag| limits.over(lag))
        .max_by(|a, b| limits.severity(a).total_cmp(&limits.severity(b)))
}

/// Waits while a replica is over `limits`, measuring every 500 ms and logging a warning that
/// names the replica and its lag (again every 10 s while it holds). Returns how long it held
/// (zero when no replica was over), early when `should_stop()` says so.
pub fn wait_for_replicas(
    conn: &mut AnyConnection,
    limits: &LagLimits,
    should_stop: &dyn Fn() -> bool,
) -> Result<Duration> {
    hold_while_behind(&mut || replica_lag(conn), limits, should_stop)
}

/// [`wait_for_replicas`] for background workers: a connection is taken from `db`'s pool
/// for each measurement and given back before the pause between two, so that a worker held
/// for minutes holds no connection; replicas are chosen by `MIGRATION_REPLICA_LAG_INCLUDE`
/// and `_EXCLUDE`.
pub(crate) fn hold_for_replicas(
    db: &crate::access::connection::Database,
    config: &Config,
    should_stop: &dyn Fn() -> bool,
) -> Result<Duration> {
    // A backend without replicas (SQLite) never holds a batch.
    if backend::of(db.backend()).replica_lag_sql().is_none() {
        return Ok(Duration::ZERO);
    }
    let mut measure = || {
        let mut conn = db.get()?;
        replica_lag_for(
            &mut conn,
            config.replica_lag_include(),
            config.replica_lag_exclude(),
        )
    };
    hold_while_behind(&mut measure, &LagLimits::from_config(config), should_stop)
}

/// The wait of [`wait_for_replicas`], measuring with `measure`.
fn hold_while_behind(
    measure: &mut dyn FnMut() -> Result<Vec<ReplicaLag>>,
    limits: &LagLimits,
    should_stop: &dyn Fn() -> bool,
) -> Result<Duration> {
    let mut held_since: Option<Instant> = None;
    let mut logged: Option<Instant> = None;
    loop {
        let held = held_since.map_or(Duration::ZERO, |since| since.elapsed());
        if should_stop() {
            return Ok(held);
        }
        let lags = measure()?;
        let Some(worst) = over_limit(&lags, limits) else {
            if held > Duration::ZERO {
                log::info!(
                    "Backfill resumed: every replica is within the limits again after {:.1} s",
                    held.as_secs_f64()
                );
            }
            return Ok(held);
        };
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            log::warn!("Backfill held: {}", describe(worst, limits));
            logged = Some(Instant::now());
        }
        held_since.get_or_insert_with(Instant::now);
        std::thread::sleep(POLL);
    }
}

/// `replica standby1 is 312 MB / 45.2 s behind (limits 256 MB / 30 s)`.
fn describe(lag: &ReplicaLag, limits: &LagLimits) -> String {
    let seconds = match lag.seconds {
        Some(s) => format!("{s:.1} s"),
        None => "an unknown number of seconds".to_owned(),
    };
    format!(
        "replica {} is {} / {seconds} behind (limits {} MB / {} s)",
        lag.name,
        size(lag.bytes),
        limits.max_bytes as f64 / MIB,
        limits.max_seconds
    )
}

fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if (bytes as f64) < MIB {
        format!("{:.1} kB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(name: &str, bytes: u64, seconds: Option<f64>) -> ReplicaLag {
        ReplicaLag {
            name: name.into(),
            bytes,
            seconds,
        }
    }

    #[test]
    fn over_limit_picks_the_worst_replica_over_a_limit() {
        let limits = LagLimits {
            max_seconds: 30.0,
            max_bytes: 100 * 1024 * 1024,
        };
        let lags = [
            lag("a", 10, Some(1.0)),
            lag("b", 150 * 1024 * 1024, Some(2.0)),
            lag("c", 0, Some(90.0)),
        ];
        assert_eq!(
            over_limit(&lags, &limits).map(|l| l.name.as_str()),
            Some("c")
        );
        assert_eq!(
            over_limit(&lags[..2], &limits).map(|l| l.name.as_str()),
            Some("b")
        );
        assert_eq!(over_limit(&lags[..1], &limits), None);
        assert_eq!(over_limit(&[lag("d", 0, None)], &limits), None);
    }

    #[test]
    fn zero_limits_hold_on_any_lag() {
        let limits = LagLimits {
            max_seconds: 0.0,
            max_bytes: 0,
        };
        assert!(over_limit(&[lag("a", 1, None)], &limits).is_some());
        assert!(over_limit(&[lag("a", 0, Some(0.0))], &limits).is_none());
    }

    #[test]
    fn the_log_line_names_replica_lag_and_limits() {
        let limits = LagLimits {
            max_seconds: 30.0,
            max_bytes: 256 * 1024 * 1024,
        };
        let text = describe(&lag("standby1", 312 * 1024 * 1024, Some(45.23)), &limits);
        assert_eq!(
            text,
            "replica standby1 is 312.0 MB / 45.2 s behind (limits 256 MB / 30 s)"
        );
        assert_eq!(size(2048), "2.0 kB");
    }
}
