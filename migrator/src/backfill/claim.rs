//! Claiming a batch: the next pending rows in key order, read in a short transaction that is
//! committed before anything is computed.
//!
//! A claim is two statements, each bounded:
//! 1. **candidates**: the keys of pending rows in a window of keys after the sweep's cursor
//!    (`key >= $from AND key < $from + window`, so that no statement walks more than a window
//!    of the key index, whatever the table's size or a role's `statement_timeout`); the window
//!    grows while it finds nothing and shrinks when it finds more than a batch;
//! 2. **the claim** (PostgreSQL: one short transaction): those rows still pending, not leased
//!    by another live worker, and not locked by another transaction (`FOR NO KEY UPDATE SKIP
//!    LOCKED`: an application transaction left open on a row is stepped around, never waited
//!    for), with their inputs; a named backfill records the claimed key range as this worker's
//!    lease in `migrator_backfill_workers` (expiring after [`Lease::ttl`]), and the transaction
//!    commits. No lock, transaction or connection is held while the batch is computed.
//!
//! Candidates that could not be claimed (locked, leased, changed) are remembered as
//! [`Sweep::skipped_from`]: the next sweep resumes there instead of rescanning from the start.
//! On SQLite (one process at a time) the claim reads the rows without a transaction.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use zeroize::Zeroizing;

pub(crate) use super::store::Lease;
use super::{Backfill, MAX_COLUMNS};
use crate::connection::{AnyConnection, Database};
use crate::error::{Error, Result};
use crate::url::Backend;

/// One claimed row: its key and its input values, zeroized when dropped (the copies the
/// database driver makes to bind them in the write are not).
pub(super) struct Claimed {
    pub(super) key: i64,
    pub(super) inputs: Vec<Option<Zeroizing<String>>>,
    /// PostgreSQL: the row's version when read (`xmin`), which the write's guard compares
    /// instead of sending the inputs (e.g. plaintext passwords) back as bind parameters, where
    /// a server logging its statements would record them.
    pub(super) version: Option<String>,
}

#[derive(QueryableByName)]
struct RawRow {
    #[diesel(sql_type = BigInt)]
    k: i64,
    #[diesel(sql_type = Nullable<Text>)]
    i0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i1: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i2: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    i3: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    x: Option<String>,
}

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = BigInt)]
    k: i64,
}

/// A claimed batch: the rows and their inputs, and no database resource at all.
pub(super) struct Batch {
    pub(super) rows: Vec<Claimed>,
}

impl Batch {
    /// The smallest and largest claimed keys.
    pub(super) fn keys(&self) -> Option<(i64, i64)> {
        Some((self.rows.first()?.key, self.rows.last()?.key))
    }
}

/// Where a sweep over the keys is: its cursor, the window of keys a candidates query looks
/// at, and the smallest key it had to leave behind.
#[derive(Clone, Debug)]
pub(super) struct Sweep {
    /// The next key to consider; `None` once the sweep passed the last key.
    pub(super) cursor: Option<i64>,
    /// Keys per candidates query.
    window: i64,
    /// The smallest key this sweep found pending and could not claim or write (locked by
    /// another transaction, leased by another worker, changed meanwhile).
    pub(super) skipped_from: Option<i64>,
    /// Where the sweep started.
    pub(super) started_at: i64,
    /// Rows it claimed.
    pub(super) claimed: u64,
}

/// The smallest window of keys a candidates query looks at.
const MIN_WINDOW: i64 = 1024;
/// The largest: a statement never walks more of the key index than this.
const MAX_WINDOW: i64 = 1 << 20;

impl Sweep {
    /// A sweep from the first key.
    pub(super) fn new() -> Sweep {
        Sweep::from(i64::MIN)
    }

    /// A sweep from `key`.
    pub(super) fn from(key: i64) -> Sweep {
        Sweep {
            cursor: Some(key),
            window: MIN_WINDOW,
            skipped_from: None,
            started_at: key,
            claimed: 0,
        }
    }

    /// Remembers that `key` was left pending behind the cursor.
    pub(super) fn skipped(&mut self, key: i64) {
        self.skipped_from = Some(self.skipped_from.map_or(key, |k| k.min(key)));
    }

    /// Whether this sweep started at the first key.
    pub(super) fn started_at_first_key(&self) -> bool {
        self.started_at == i64::MIN
    }

    /// The sweep that follows this one (which ended): from the smallest key it left
    /// behind, else from the start (to confirm that nothing is left).
    pub(super) fn next(&self) -> Sweep {
        match self.skipped_from {
            Some(key) => Sweep::from(key),
            None => Sweep::new(),
        }
    }
}

impl Backfill {
    /// Claims at most `limit` pending rows with keys from the sweep's cursor up to
    /// `upper_key`, and moves the cursor past the keys it looked at. `None`: the sweep is over.
    pub(super) fn claim_next(
        &self,
        db: &Database,
        sweep: &mut Sweep,
        limit: usize,
        upper_key: Option<i64>,
        lease: Option<&Lease>,
    ) -> Result<Option<Batch>> {
        let limit = self.capped_batch_size(limit);
        let upper = upper_key.unwrap_or(i64::MAX);
        let mut conn = db.get()?;
        loop {
            let Some(from) = sweep.cursor.filter(|from| *from <= upper) else {
                sweep.cursor = None;
                return Ok(None);
            };
            // The window's last key (inclusive).
            let window = sweep.window.clamp(MIN_WINDOW, MAX_WINDOW);
            let end = from.saturating_add(window - 1).min(upper);
            let candidates = match self.candidates(&mut conn, from, end, limit) {
                // A role's statement_timeout shorter than this window's walk: smaller windows.
                Err(error) if error.is_timeout() && window > MIN_WINDOW => {
                    sweep.window = (window / 8).max(MIN_WINDOW);
                    log::info!(
                        "Backfill of {}: a look for pending rows hit a statement timeout; \
                         windows of {} keys now",
                        self.table,
                        sweep.window
                    );
                    continue;
                }
                other => other?,
            };
            let Some(&last) = candidates.last() else {
                // Nothing pending in this window: on to the next key that exists (an index
                // probe, so gaps in the keys cost nothing), with a larger window.
                sweep.cursor = match end.checked_add(1) {
                    Some(next) if next <= upper => self.next_key(&mut conn, next)?,
                    _ => None,
                };
                sweep.window = window.saturating_mul(2).min(MAX_WINDOW);
                continue;
            };
            if candidates.len() >= limit {
                // A full batch from part of the window: the next one can be smaller.
                sweep.window = (window / 2).max(MIN_WINDOW);
                sweep.cursor = last.checked_add(1);
            } else {
                sweep.cursor = end.checked_add(1);
            }
            let rows = self.lock_and_read(&mut conn, &candidates, lease)?;
            let mut claimed = rows.iter().map(|r| r.k).peekable();
            for key in &candidates {
                if claimed.peek() == Some(key) {
                    claimed.next();
                } else {
                    sweep.skipped(*key);
                }
            }
            if rows.is_empty() {
                continue;
            }
            sweep.claimed += rows.len() as u64;
            let inputs = self.inputs.len();
            let rows = rows
                .into_iter()
                .map(|r| Claimed {
                    key: r.k,
                    inputs: [r.i0, r.i1, r.i2, r.i3]
                        .into_iter()
                        .take(inputs)
                        .map(|v| v.map(Zeroizing::new))
                        .collect(),
                    version: r.x,
                })
                .collect();
            return Ok(Some(Batch { rows }));
        }
    }

    /// The keys of at most `limit` pending rows with keys in `from..=end`, in key order.
    fn candidates(
        &self,
        conn: &mut AnyConnection,
        from: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT CAST({key} AS BIGINT) AS k FROM {table} \
             WHERE {key} >= $1 AND {key} <= $2 AND ({pending}) ORDER BY {key} LIMIT $3",
            key = self.key,
            table = self.table,
            pending = self.pending,
        );
        let keys: Vec<Key> = diesel::sql_query(sql)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(end)
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(conn)
            .map_err(Error::db(format!(
                "cannot look for pending rows of {}",
                self.table
            )))?;
        Ok(keys.into_iter().map(|k| k.k).collect())
    }

    /// The smallest key of any row (done or not) from `from` on: an index probe.
    fn next_key(&self, conn: &mut AnyConnection, from: i64) -> Result<Option<i64>> {
        #[derive(QueryableByName)]
        struct Next {
            #[diesel(sql_type = Nullable<BigInt>)]
            k: Option<i64>,
        }
        let next: Next = diesel::sql_query(format!(
            "SELECT CAST(MIN({key}) AS BIGINT) AS k FROM {table} WHERE {key} >= $1",
            key = self.key,
            table = self.table,
        ))
        .bind::<BigInt, _>(from)
        .get_result(conn)
        .map_err(Error::db(format!("cannot read the keys of {}", self.table)))?;
        Ok(next.k)
    }

    /// The rows of `keys` that are still pending, with their inputs: on PostgreSQL in one
    /// short transaction that skips rows locked by others and rows leased by other workers,
    /// and records this worker's lease.
    fn lock_and_read(
        &self,
        conn: &mut AnyConnection,
        keys: &[i64],
        lease: Option<&Lease>,
    ) -> Result<Vec<RawRow>> {
        let context = || format!("cannot claim a batch of {}", self.table);
        let columns: Vec<String> = (0..MAX_COLUMNS)
            .map(|i| match self.inputs.get(i) {
                Some(col) => format!("CAST({col} AS TEXT) AS i{i}"),
                None => format!("CAST(NULL AS TEXT) AS i{i}"),
            })
            .collect();
        match conn.backend() {
            Backend::Sqlite => {
                let (Some(lo), Some(hi)) = (keys.first(), keys.last()) else {
                    return Ok(Vec::new());
                };
                let sql = format!(
                    "SELECT CAST({key} AS BIGINT) AS k, {columns}, CAST(NULL AS TEXT) AS x \
                     FROM {table} WHERE {key} >= $1 AND {key} <= $2 AND ({pending}) \
                     ORDER BY {key}",
                    key = self.key,
                    columns = columns.join(", "),
                    table = self.table,
                    pending = self.pending,
                );
                let rows: Vec<RawRow> = diesel::sql_query(sql)
                    .bind::<BigInt, _>(*lo)
                    .bind::<BigInt, _>(*hi)
                    .load(conn)
                    .map_err(Error::db(context()))?;
                Ok(rows
                    .into_iter()
                    .filter(|r| keys.binary_search(&r.k).is_ok())
                    .collect())
            }
            Backend::Postgres => {
                let leased = match lease {
                    Some(lease) => format!(
                        " AND NOT EXISTS (SELECT 1 FROM {workers} w WHERE w.backfill = $2 \
                         AND w.id <> $3 AND w.lease_until > CURRENT_TIMESTAMP \
                         AND {table}.{key} BETWEEN w.lease_lo AND w.lease_hi)",
                        workers = lease.tables.workers,
                        table = self.table,
                        key = self.key,
                    ),
                    None => String::new(),
                };
                let sql = format!(
                    "SELECT CAST({key} AS BIGINT) AS k, {columns}, \
                     CAST({table}.xmin AS TEXT) AS x FROM {table} \
                     WHERE {key} = ANY($1) AND ({pending}){leased} \
                     ORDER BY {key} FOR NO KEY UPDATE OF {table} SKIP LOCKED",
                    key = self.key,
                    columns = columns.join(", "),
                    table = self.table,
                    pending = self.pending,
                );
                conn.batch_execute("BEGIN").map_err(Error::db(context()))?;
                let result = (|| -> Result<Vec<RawRow>> {
                    let AnyConnection::Postgres(pg) = &mut *conn else {
                        return Ok(Vec::new());
                    };
                    let query = diesel::sql_query(sql).bind::<Array<BigInt>, _>(keys);
                    let rows: Vec<RawRow> = match lease {
                        Some(lease) => query
                            .bind::<Text, _>(&lease.name)
                            .bind::<Text, _>(&lease.holder)
                            .load(pg),
                        None => query.load(pg),
                    }
                    .map_err(Error::db(context()))?;
                    if let (Some(lease), Some(first), Some(last)) =
                        (lease, rows.first(), rows.last())
                    {
                        take_lease(conn, lease, first.k, last.k).map_err(Error::db(context()))?;
                    }
                    conn.batch_execute("COMMIT").map_err(Error::db(context()))?;
                    Ok(rows)
                })();
                if result.is_err() {
                    let _ = conn.batch_execute("ROLLBACK");
                }
                result
            }
        }
    }
}

/// Records `lo..=hi` as `lease`'s holder's claim: the lease then covers every batch it has in
/// flight (from the oldest unwritten one, kept, to this one).
fn take_lease(
    conn: &mut AnyConnection,
    lease: &Lease,
    lo: i64,
    hi: i64,
) -> diesel::QueryResult<()> {
    diesel::sql_query(format!(
        "UPDATE {} SET backfill = $1, lease_lo = LEAST(COALESCE(lease_lo, $2), $2), \
         lease_hi = GREATEST(COALESCE(lease_hi, $3), $3), \
         lease_until = CURRENT_TIMESTAMP + make_interval(secs => $4), \
         heartbeat = CURRENT_TIMESTAMP WHERE id = $5",
        lease.tables.workers
    ))
    .bind::<Text, _>(&lease.name)
    .bind::<BigInt, _>(lo)
    .bind::<BigInt, _>(hi)
    .bind::<diesel::sql_types::Double, _>(lease.ttl.as_secs_f64())
    .bind::<Text, _>(&lease.holder)
    .execute(conn)?;
    Ok(())
}

/// Releases the part of `lease` up to `hi` (its batches up to there are written or given up),
/// inside the caller's transaction or on its own.
pub(super) fn release_lease(
    conn: &mut AnyConnection,
    lease: &Lease,
    hi: Option<i64>,
) -> diesel::QueryResult<()> {
    diesel::sql_query(format!(
        "UPDATE {} SET \
         lease_lo = CASE WHEN lease_hi > $1 THEN GREATEST(lease_lo, $1 + 1) END, \
         lease_until = CASE WHEN lease_hi > $1 THEN lease_until END, \
         lease_hi = CASE WHEN lease_hi > $1 THEN lease_hi END WHERE id = $2",
        lease.tables.workers
    ))
    .bind::<BigInt, _>(hi.unwrap_or(i64::MAX - 1))
    .bind::<Text, _>(&lease.holder)
    .execute(conn)?;
    Ok(())
}
