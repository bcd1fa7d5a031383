//! How many rows a backfill has to do, estimated in time that does not grow with the table.
//!
//! Counting the pending rows (`COUNT(*)`) reads the whole table: seconds to minutes at a
//! migration's start-up on a large one, for a figure that only feeds progress lines and
//! `rows_total`. Instead:
//!
//! 1. **a bounded probe**: the pending predicate on the [`SAMPLE`] lowest keys (an index range
//!    scan). A table with fewer rows than that is counted exactly;
//! 2. else the **table's rows**, from the database's statistics: PostgreSQL's
//!    `pg_class.reltuples` scaled to the relation's current size as the planner does
//!    (`reltuples / relpages * current pages`), when the table was ever analysed; SQLite's
//!    `sqlite_stat1` when `ANALYZE` made it. Without statistics, the key span
//!    (`upper_key - MIN(key) + 1`: one index probe when the caller read `upper_key`, the
//!    table's largest key, as scheduling does; two otherwise), which counts gaps as rows;
//! 3. times the **pending fraction** of the [`SAMPLE`] lowest and [`SAMPLE`] highest keys.
//!
//! The figure is an estimate and says so (`rows_total`, the `*_rows_expected` metrics):
//! progress is capped at 100% while it runs, and corrected to the rows actually written when
//! the backfill finishes.

use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::Backfill;
use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};

/// Rows read at each end of the key range by the probe.
pub(crate) const SAMPLE: i64 = 10_000;

/// An estimate of the pending rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// Rows.
    pub(crate) rows: u64,
    /// Whether it is an exact count (the table is smaller than the probe).
    pub(crate) exact: bool,
}

#[derive(QueryableByName)]
struct Probe {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    p: i64,
}

#[derive(QueryableByName)]
struct Rows {
    #[diesel(sql_type = Nullable<Double>)]
    n: Option<f64>,
}

impl Backfill {
    /// Estimates the pending rows with keys up to `upper_key` (all, if `None`) in bounded time
    /// (see the module's documentation). `upper_key`, when given, is the table's largest key
    /// as the caller just read it.
    pub(crate) fn estimate_pending(
        &self,
        conn: &mut AnyConnection,
        upper_key: Option<i64>,
    ) -> Result<Estimate> {
        self.check()?;
        let upper = upper_key.unwrap_or(i64::MAX);
        let low = self.probe(conn, upper, "ASC")?;
        if low.n < SAMPLE {
            return Ok(Estimate {
                rows: u64::try_from(low.p).unwrap_or(0),
                exact: true,
            });
        }
        let high = self.probe(conn, upper, "DESC")?;
        let table_rows = match self.statistics(conn)? {
            Some(rows) => rows,
            None => self.key_span(conn, upper_key)?,
        };
        // The table holds at least the rows the probes read.
        let table_rows = table_rows.max((low.n + high.n) as f64);
        let fraction = (low.p + high.p) as f64 / (low.n + high.n) as f64;
        let rows = (table_rows * fraction)
            .round()
            .max(low.p.max(high.p) as f64);
        Ok(Estimate {
            rows: rows as u64,
            exact: false,
        })
    }

    /// Rows and pending rows among the `SAMPLE` lowest (`ASC`) or highest (`DESC`) keys up to
    /// `upper`.
    fn probe(&self, conn: &mut AnyConnection, upper: i64, order: &str) -> Result<Probe> {
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(s.p), 0) AS BIGINT) AS p \
             FROM (SELECT CASE WHEN ({pending}) THEN 1 ELSE 0 END AS p FROM {table} \
             WHERE {key} <= $1 ORDER BY {key} {order} LIMIT $2) AS s",
            pending = self.pending,
            table = self.table,
            key = self.key,
        );
        diesel::sql_query(sql)
            .bind::<BigInt, _>(upper)
            .bind::<BigInt, _>(SAMPLE)
            .get_result(conn)
            .map_err(Error::db(format!(
                "cannot estimate the pending rows of {}",
                self.table
            )))
    }

    /// The table's rows from the database's statistics, if it has any.
    fn statistics(&self, conn: &mut AnyConnection) -> Result<Option<f64>> {
        let context = || format!("cannot read the statistics of {}", self.table);
        let dialect = backend::of(conn.backend());
        if let Some(table) = dialect.statistics_table() {
            if !crate::access::schema::table_exists(conn, table)? {
                return Ok(None);
            }
        }
        let sql = dialect.statistics_sql();
        let found: Vec<Rows> = diesel::sql_query(sql)
            .bind::<Text, _>(self.table)
            .load(conn)
            .map_err(Error::db(context()))?;
        Ok(found
            .into_iter()
            .next()
            .and_then(|r| r.n)
            .filter(|n| *n > 0.0))
    }

    /// `upper_key - MIN(key) + 1`, gaps in the keys counted as rows: one index probe, two
    /// without `upper_key` (then the largest key is probed too).
    fn key_span(&self, conn: &mut AnyConnection, upper_key: Option<i64>) -> Result<f64> {
        #[derive(QueryableByName)]
        struct Span {
            #[diesel(sql_type = Nullable<BigInt>)]
            lo: Option<i64>,
            #[diesel(sql_type = Nullable<BigInt>)]
            hi: Option<i64>,
        }
        // The largest key: the caller's, else probed.
        let hi = match upper_key {
            Some(_) => "CAST($1 AS BIGINT)".to_owned(),
            None => format!(
                "CAST((SELECT {key} FROM {table} WHERE {key} <= $1 ORDER BY {key} DESC LIMIT 1) \
                 AS BIGINT)",
                key = self.key,
                table = self.table,
            ),
        };
        let span: Span = diesel::sql_query(format!(
            "SELECT CAST((SELECT {key} FROM {table} WHERE {key} <= $1 ORDER BY {key} LIMIT 1) \
             AS BIGINT) AS lo, {hi} AS hi",
            key = self.key,
            table = self.table,
        ))
        .bind::<BigInt, _>(upper_key.unwrap_or(i64::MAX))
        .get_result(conn)
        .map_err(Error::db(format!("cannot read the keys of {}", self.table)))?;
        Ok(match (span.lo, span.hi) {
            (Some(lo), Some(hi)) => (hi as f64 - lo as f64 + 1.0).max(0.0),
            _ => 0.0,
        })
    }
}
