//! Claiming a batch: the next pending rows in key order, read in a short transaction that is
//! committed before anything is computed.
//!
//! A claim is one statement, bounded, and on PostgreSQL a transaction of its own:
//! 1. **candidates**: the keys of at most a batch of pending rows in a window of keys after
//!    the sweep's cursor (`key >= $from AND key <= $from + window - 1`, so that no statement
//!    walks more than a window of the key index, whatever the table's size or a role's
//!    `statement_timeout`); the next window is sized from the density of pending rows this
//!    one found, so that it holds about a batch (it doubles while it finds nothing);
//! 2. **the claim** (PostgreSQL): those rows still pending, not leased by another live worker,
//!    and not locked by another transaction (`FOR NO KEY UPDATE SKIP LOCKED`: an application
//!    transaction left open on a row is stepped around, never waited for), with their inputs
//!    and versions (`xmin`); a named backfill records the claimed key range as this worker's
//!    lease in `migrator_backfill_workers` (expiring after [`Lease::ttl`]) in the same
//!    statement, which commits when it ends. No lock, transaction or connection is held while
//!    the batch is computed.
//!
//! The sweep's cursor only moves forward (keyset claims: no statement reads keys before it).
//! Candidates that could not be claimed (locked, leased, changed) are remembered as
//! [`Sweep::skipped_from`]: the next sweep resumes there instead of rescanning from the start.
//! On SQLite (one process at a time) the claim reads the rows without a transaction.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use zeroize::Zeroizing;

use super::{Backfill, MAX_COLUMNS};
use crate::access::backend::{self, pg_write};
use crate::access::connection::AnyConnection;
use crate::foundation::backoff::Backoff;
use crate::foundation::error::{panic_message, Error, Result};
pub(crate) use crate::records::backfill::store::Lease;

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

/// A claimed batch: the rows and their inputs, and no database resource at all.
pub(super) struct Batch {
    pub(super) rows: Vec<Claimed>,
    /// SQLite: the claiming connection's `PRAGMA data_version` read before the rows were.
    /// The write, on the same connection, reads it again once it holds the write lock: when
    /// it is unchanged, no other connection committed anything meanwhile, so the rows' inputs
    /// are as read and the per-row comparison of the inputs can be skipped (see
    /// [`Backfill::write`]). Only valid on the connection that claimed the batch.
    pub(super) seen: Option<i64>,
}

impl Batch {
    /// The smallest and largest claimed keys.
    pub(super) fn keys(&self) -> Option<(i64, i64)> {
        Some((self.rows.first()?.key, self.rows.last()?.key))
    }

    /// The batch's outputs, one row at a time through `compute`, in key order: on `pool`'s
    /// threads if given (an inline run), else on this one (a background worker thread). The
    /// one compute path of both: a panic in `compute` is an error like any other, and the
    /// first error ends the batch.
    pub(super) fn compute<F>(
        &self,
        pool: Option<&rayon::ThreadPool>,
        compute: &F,
    ) -> Result<Vec<Vec<Option<String>>>>
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Sync + ?Sized,
    {
        let row = |row: &Claimed| {
            let inputs: Vec<Option<&str>> = row
                .inputs
                .iter()
                .map(|v| v.as_deref().map(String::as_str))
                .collect();
            compute(&inputs)
        };
        std::panic::catch_unwind(AssertUnwindSafe(|| match pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                self.rows.par_iter().map(row).collect::<Result<Vec<_>>>()
            }),
            None => self.rows.iter().map(row).collect::<Result<Vec<_>>>(),
        }))
        .unwrap_or_else(|panic| {
            Err(Error::Panic {
                message: panic_message(&*panic),
            })
        })
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

/// The waits while every pending row left is locked by other transactions or leased by other
/// workers: 100 ms, doubling each sweep that claims nothing, up to 5 s.
pub(super) const LOCKED_WAIT: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

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

/// One pending row a claim looked at: its key, and its inputs if it was claimed (`None`:
/// locked by another transaction, leased by another worker, or changed meanwhile).
#[derive(QueryableByName)]
struct Looked {
    #[diesel(sql_type = BigInt)]
    c: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    k: Option<i64>,
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

/// The next window: sized so that it holds about `limit` pending rows, from the density of
/// pending rows the last one found (`found` in `keys` keys), 25% more for slack.
fn next_window(keys: i64, found: usize, limit: usize) -> i64 {
    let keys = i128::from(keys.max(1));
    let wanted = keys.saturating_mul(limit as i128) / (found.max(1) as i128);
    i64::try_from(wanted.saturating_add(wanted / 4))
        .unwrap_or(MAX_WINDOW)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

impl Backfill {
    /// Claims at most `limit` pending rows with keys from the sweep's cursor up to
    /// `upper_key` on `conn`, and moves the cursor past the keys it looked at. `None`: the
    /// sweep is over. On SQLite, the batch is best written on the same connection (see
    /// [`Batch::seen`]).
    pub(super) fn claim_next(
        &self,
        conn: &mut AnyConnection,
        sweep: &mut Sweep,
        limit: usize,
        upper_key: Option<i64>,
        lease: Option<&Lease>,
    ) -> Result<Option<Batch>> {
        let limit = self.capped_batch_size(limit);
        let upper = upper_key.unwrap_or(i64::MAX);
        loop {
            let Some(from) = sweep.cursor.filter(|from| *from <= upper) else {
                sweep.cursor = None;
                return Ok(None);
            };
            // The window's last key (inclusive).
            let window = sweep.window.clamp(MIN_WINDOW, MAX_WINDOW);
            let end = from.saturating_add(window - 1).min(upper);
            // SQLite: what the connection has seen committed, read before the rows are.
            let seen = data_version(conn)?;
            let looked = match self.claim_window(conn, from, end, limit, lease) {
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
            let Some(last) = looked.last().map(|l| l.c) else {
                // Nothing pending in this window: on to the next key that exists (an index
                // probe, so gaps in the keys cost nothing), with a larger window.
                sweep.cursor = match end.checked_add(1) {
                    Some(next) if next <= upper => self.next_key(conn, next)?,
                    _ => None,
                };
                sweep.window = window.saturating_mul(2).min(MAX_WINDOW);
                continue;
            };
            // The next window is sized to hold about a batch, from the density just seen: a
            // claim never walks far more keys than it needs, nor claims far fewer rows.
            if looked.len() >= limit {
                // A full batch from part of the window.
                sweep.window = next_window(last.saturating_sub(from) + 1, looked.len(), limit);
                sweep.cursor = last.checked_add(1);
            } else {
                sweep.window = next_window(end.saturating_sub(from) + 1, looked.len(), limit);
                sweep.cursor = end.checked_add(1);
            }
            let inputs = self.inputs.len();
            let mut rows = Vec::with_capacity(looked.len());
            for l in looked {
                if l.k.is_none() {
                    sweep.skipped(l.c);
                    continue;
                }
                rows.push(Claimed {
                    key: l.c,
                    inputs: [l.i0, l.i1, l.i2, l.i3]
                        .into_iter()
                        .take(inputs)
                        .map(|v| v.map(Zeroizing::new))
                        .collect(),
                    version: l.x,
                });
            }
            if rows.is_empty() {
                continue;
            }
            sweep.claimed += rows.len() as u64;
            return Ok(Some(Batch { rows, seen }));
        }
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

    /// At most `limit` pending rows with keys in `from..=end`, in key order, each with its
    /// inputs if it was claimed: one statement. On PostgreSQL (a transaction of its own) the
    /// candidates are locked `FOR NO KEY UPDATE SKIP LOCKED` (rows locked by others and rows
    /// leased by other workers are left out) and this worker's lease is recorded, so that the
    /// claim and its lease commit together; on SQLite they are read.
    fn claim_window(
        &self,
        conn: &mut AnyConnection,
        from: i64,
        end: i64,
        limit: usize,
        lease: Option<&Lease>,
    ) -> Result<Vec<Looked>> {
        let context = || format!("cannot claim a batch of {}", self.table);
        let columns: Vec<String> = (0..MAX_COLUMNS)
            .map(|i| match self.inputs.get(i) {
                Some(col) => format!("CAST({col} AS TEXT) AS i{i}"),
                None => format!("CAST(NULL AS TEXT) AS i{i}"),
            })
            .collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = backend::of(conn.backend()).claim_sql(
            self.table,
            self.key,
            self.pending,
            &columns.join(", "),
            lease.map(|lease| lease.tables.workers.as_str()),
        );
        let query = diesel::sql_query(sql)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(end)
            .bind::<BigInt, _>(limit);
        match lease {
            Some(lease) => query
                .bind::<Text, _>(&lease.name)
                .bind::<Text, _>(&lease.holder)
                .bind::<diesel::sql_types::Double, _>(lease.ttl.as_secs_f64())
                .load(conn),
            None => query.load(conn),
        }
        .map_err(Error::db(context()))
    }
}

/// What `conn` has seen committed (SQLite's `PRAGMA data_version`): it changes when another
/// connection (of this process or another) commits a change to the database, and only then.
/// `None` on a backend without it.
pub(super) fn data_version(conn: &mut AnyConnection) -> Result<Option<i64>> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = BigInt)]
        data_version: i64,
    }
    let Some(sql) = backend::of(conn.backend()).data_version_sql() else {
        return Ok(None);
    };
    let version: Version = diesel::sql_query(sql)
        .get_result(conn)
        .map_err(Error::db("cannot read the SQLite data version"))?;
    Ok(Some(version.data_version))
}

/// Releases the part of `lease` up to `hi` (its batches up to there are written or given up),
/// inside the caller's transaction or on its own.
pub(super) fn release_lease(
    conn: &mut AnyConnection,
    lease: &Lease,
    hi: Option<i64>,
) -> diesel::QueryResult<()> {
    diesel::sql_query(pg_write::release_lease(&lease.tables.workers))
        .bind::<BigInt, _>(hi.unwrap_or(i64::MAX - 1))
        .bind::<Text, _>(&lease.holder)
        .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_window_holds_about_a_batch() {
        // 100 pending rows in 1,000 keys: a batch of 500 needs about 5,000 keys, plus 25 %.
        assert_eq!(next_window(1000, 100, 500), 6250);
        // Dense: at least the smallest window.
        assert_eq!(next_window(500, 500, 500), MIN_WINDOW);
        // Nothing found: as if one row was, bounded by the largest window.
        assert_eq!(next_window(1_000_000, 0, 5000), MAX_WINDOW);
        assert_eq!(next_window(10_000, 0, 10), 125_000);
        // No overflow at the ends of the key space.
        assert_eq!(next_window(i64::MAX, 1, usize::MAX), MAX_WINDOW);
        assert_eq!(next_window(0, 0, 0), MIN_WINDOW);
    }

    #[test]
    fn a_sweep_resumes_from_the_smallest_key_it_left_behind() {
        let mut sweep = Sweep::new();
        assert!(sweep.started_at_first_key());
        sweep.skipped(50);
        sweep.skipped(20);
        sweep.skipped(70);
        assert_eq!(sweep.skipped_from, Some(20));
        let next = sweep.next();
        assert_eq!(next.cursor, Some(20));
        assert!(!next.started_at_first_key());
        // Nothing left behind: the next sweep confirms from the first key.
        let confirm = next.next();
        assert_eq!(confirm.cursor, Some(i64::MIN));
        assert!(confirm.started_at_first_key());
    }

    #[test]
    fn batches_are_capped_to_the_bind_parameter_limit() {
        let mut backfill = Backfill::new("t", "id");
        backfill.input("a").output("b");
        // Three parameters a row (key, output, input) within 30,000.
        assert_eq!(backfill.capped_batch_size(1_000_000), 10_000);
        assert_eq!(backfill.capped_batch_size(37), 37);
        assert_eq!(backfill.capped_batch_size(0), 1);
        backfill.input("c").input("d").output("e");
        assert_eq!(backfill.capped_batch_size(1_000_000), 30_000 / 6);
    }
}
