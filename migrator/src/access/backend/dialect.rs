//! The [`Dialect`] trait: what differs between the backends. Implemented once per backend file
//! (`postgres.rs`, `sqlite.rs`); chosen by `super::of`.

use std::path::Path;

use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::Result;

/// What differs between the backends, as SQL text and the few operations that are not SQL.
///
/// Identifiers spliced into statements (`table`, `name`) come from the code (constants and
/// catalog names quoted with [`quote_ident`]), never from input; values are bound.
pub(crate) trait Dialect: Sync {
    // --- Catalog probes (`access/schema.rs`, `records/tracking/location.rs`) ---

    /// `name, ty` of the columns of the table `$1` (resolved as an unqualified name in a query
    /// would be; none if it does not exist).
    fn columns_sql(&self) -> &'static str;

    /// `COUNT(*) AS n` of the tables named `$1` in the current schema.
    fn table_exists_sql(&self) -> &'static str;

    /// `name`: the schema of the table `$1` visible on `search_path`, or `None` when the backend
    /// has no schemas to choose from (the table is the main database's).
    fn table_schema_sql(&self) -> Option<&'static str>;

    /// `ty, not_null, uniq` of the key column `$2` of table `$1` (a backfill's key check).
    #[cfg(feature = "backfill")]
    fn key_column_sql(&self) -> &'static str;

    // --- Tracking table (`records/tracking.rs`) ---

    /// The column list of a new `applied_migrations`.
    fn tracking_columns(&self) -> &'static str;

    /// How `applied_at` reads as UTC text; `without_time_zone`: the column is a PostgreSQL
    /// `TIMESTAMP` without time zone (what older tools create), holding UTC wall-clock time.
    fn applied_at_read(&self, without_time_zone: bool) -> &'static str;

    /// The value written to `applied_at`: now, in UTC.
    fn applied_at_now(&self, without_time_zone: bool) -> &'static str;

    /// Creates `applied_migrations` (named `table` in SQL) if it is missing.
    fn create_tracking_table(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} {}",
            self.tracking_columns()
        )
    }

    /// Every row of `table`, ordered by name, each column as text or `BIGINT`; a column that
    /// `has` says is missing (a legacy table's) reads as NULL.
    fn tracking_select(
        &self,
        table: &str,
        has: &dyn Fn(&str) -> bool,
        without_time_zone: bool,
    ) -> String {
        let or_null = |column: &str, expr: &str, ty: &str| {
            if has(column) {
                expr.to_owned()
            } else {
                format!("CAST(NULL AS {ty})")
            }
        };
        let applied_at = or_null(
            "applied_at",
            self.applied_at_read(without_time_zone),
            "TEXT",
        );
        let execution_time_ms = or_null(
            "execution_time_ms",
            "CAST(execution_time_ms AS BIGINT)",
            "BIGINT",
        );
        let error_message = or_null("error_message", "CAST(error_message AS TEXT)", "TEXT");
        let checksum = or_null("checksum", "CAST(checksum AS TEXT)", "TEXT");
        let attempts = or_null("attempts", "CAST(attempts AS BIGINT)", "BIGINT");
        let applied_by = or_null("applied_by", "CAST(applied_by AS TEXT)", "TEXT");
        format!(
            "SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, \
             {applied_at} AS applied_at, {execution_time_ms} AS execution_time_ms, \
             {error_message} AS error_message, {checksum} AS checksum, {attempts} AS attempts, \
             {applied_by} AS applied_by FROM {table} ORDER BY migration_name"
        )
    }

    /// Updates the row `$7` of `table`: status `$1`, duration `$2`, error `$3`, checksum `$4`
    /// (kept when NULL), `$5` more attempts, runner `$6`.
    fn tracking_update(&self, table: &str, without_time_zone: bool) -> String {
        let now = self.applied_at_now(without_time_zone);
        format!(
            "UPDATE {table} SET status = $1, applied_at = {now}, \
             execution_time_ms = $2, error_message = $3, checksum = COALESCE($4, checksum), \
             attempts = COALESCE(attempts, 0) + $5, applied_by = $6 WHERE migration_name = $7"
        )
    }

    /// Inserts a row of `table`: name `$1`, status `$2`, duration `$3`, error `$4`, checksum
    /// `$5`, attempts `$6`, runner `$7`.
    fn tracking_insert(&self, table: &str, without_time_zone: bool) -> String {
        let now = self.applied_at_now(without_time_zone);
        format!(
            "INSERT INTO {table} (migration_name, status, applied_at, \
             execution_time_ms, error_message, checksum, attempts, applied_by) \
             VALUES ($1, $2, {now}, $3, $4, $5, $6, $7)"
        )
    }

    // --- Audit log (`records/audit.rs`) ---

    /// The column list of a new `migrator_audit`.
    fn audit_columns(&self) -> &'static str;

    /// Creates the audit table (named `table` in SQL) if it is missing.
    fn create_audit_table(&self, table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} {}",
            self.audit_columns()
        )
    }

    // --- Backfill tables and state (`records/backfill/`) ---

    /// The column lists of new `migrator_backfills` and `migrator_backfill_workers`.
    #[cfg(feature = "backfill")]
    fn backfill_columns(&self) -> (&'static str, &'static str);

    /// Creates both backfill tables (named `backfills` and `workers` in SQL) if missing.
    #[cfg(feature = "backfill")]
    fn create_backfill_tables(&self, backfills: &str, workers: &str) -> String {
        let (backfill_columns, worker_columns) = self.backfill_columns();
        format!(
            "CREATE TABLE IF NOT EXISTS {backfills} {backfill_columns}; \
             CREATE TABLE IF NOT EXISTS {workers} {worker_columns};"
        )
    }

    /// Adds the workers' lease columns to `workers` (a table of an earlier version), on a
    /// backend whose workers take leases; `None` on the others.
    #[cfg(feature = "backfill")]
    fn add_lease_columns(&self, workers: &str) -> Option<String>;

    /// Whether background workers take key-range leases (recorded in the workers' table), so
    /// that workers of several processes step around each other's ranges.
    #[cfg(feature = "backfill")]
    fn leases(&self) -> bool;

    /// Every backfill of `backfills`, or only the one named `$1` (when not NULL), oldest first.
    #[cfg(feature = "backfill")]
    fn backfills_select(&self, backfills: &str) -> String {
        format!(
            "SELECT name, migration, status, CAST(rows_done AS BIGINT) AS rows_done, \
             CAST(rows_total AS BIGINT) AS rows_total, CAST(batch_size AS BIGINT) AS batch_size, \
             CAST(upper_key AS BIGINT) AS upper_key, last_error, {created} AS created_at, \
             {updated} AS updated_at, {finished} AS finished_at, {elapsed} AS elapsed_secs \
             FROM {backfills} WHERE $1 IS NULL OR name = $1 ORDER BY created_at, name",
            created = self.timestamp_text("created_at"),
            updated = self.timestamp_text("updated_at"),
            finished = self.timestamp_text("finished_at"),
            elapsed = self.elapsed_secs(),
        )
    }

    /// The rows of `workers` whose heartbeat is younger than `stale_secs` seconds.
    #[cfg(feature = "backfill")]
    fn workers_select(&self, workers: &str, stale_secs: i64) -> String {
        format!(
            "SELECT backfill, host, CAST(pid AS BIGINT) AS pid, thread, \
             CAST(rows_done AS BIGINT) AS rows_done, {heartbeat} AS heartbeat \
             FROM {workers} WHERE {recent} ORDER BY host, pid, thread",
            heartbeat = self.timestamp_text("heartbeat"),
            recent = self.heartbeat_within(stale_secs),
        )
    }

    /// How the timestamp `column` reads as UTC text.
    #[cfg(feature = "backfill")]
    fn timestamp_text(&self, column: &str) -> String;

    /// A backfill's seconds from `created_at` to `finished_at` (or now), as a float.
    #[cfg(feature = "backfill")]
    fn elapsed_secs(&self) -> &'static str;

    /// The condition of a worker row whose heartbeat is younger than `secs` seconds.
    #[cfg(feature = "backfill")]
    fn heartbeat_within(&self, secs: i64) -> String;

    /// Deletes the rows of `workers` whose heartbeat is older than `$1` seconds (a float).
    #[cfg(feature = "backfill")]
    fn delete_dead_workers(&self, workers: &str) -> String;

    /// The statement that measures replica lag (one row per replica: `name`, `bytes`,
    /// `replay_secs`, `since_reply`, `physical`, `no_replay`), or `None` on a backend without
    /// replicas.
    #[cfg(feature = "backfill")]
    fn replica_lag_sql(&self) -> Option<&'static str>;

    // --- The backfill engine (`running/backfill/`: claim, write, estimate, run) ---

    /// The claim of a batch: at most `$3` pending rows (`pending`, a predicate) of `table` with
    /// `key`s in `$1..=$2`, in key order, as rows `c` (the key looked at), `k` (the key if
    /// claimed, else NULL), `columns` (the inputs `i0..i3` as text) and `x` (the row's version
    /// as text, or NULL). `lease`: the workers' table, when the claim leaves out the keys other
    /// live workers lease and records this worker's lease (`$4` the backfill, `$5` the holder,
    /// `$6` the lease's seconds), on a backend whose workers take leases ([`Dialect::leases`]).
    #[cfg(feature = "backfill")]
    fn claim_sql(
        &self,
        table: &str,
        key: &str,
        pending: &str,
        columns: &str,
        lease: Option<&str>,
    ) -> String;

    /// `data_version` (a `BIGINT`): what the connection has seen committed, which changes when
    /// another connection commits and only then; `None` on a backend without it.
    #[cfg(feature = "backfill")]
    fn data_version_sql(&self) -> Option<&'static str>;

    /// How a batch is written back (an algorithm of its own per backend).
    #[cfg(feature = "backfill")]
    fn batch_writes(&self) -> BatchWrites;

    /// `n` (a float): the rows of the table `$1` from the database's statistics (NULL or no
    /// row when it has none).
    #[cfg(feature = "backfill")]
    fn statistics_sql(&self) -> &'static str;

    /// The catalog table that [`Dialect::statistics_sql`] reads, when it exists only once
    /// statistics were gathered (then, without it, there are none); `None`: always there.
    #[cfg(feature = "backfill")]
    fn statistics_table(&self) -> Option<&'static str>;

    // --- A backfill's finishing statements (`running/backfill/finish.rs`) ---

    /// `taken` (a boolean): takes the session lock of the finishing statements of the backfill
    /// `$2` in the lock class `$1` (an `INTEGER`) if it is free; `None` on a backend where one
    /// process at a time runs them anyway.
    #[cfg(feature = "backfill")]
    fn finish_lock_sql(&self) -> Option<&'static str>;

    /// `taken` (a boolean): whether the index `$1` of the current schema exists and is invalid
    /// (left by an interrupted build); `None` on a backend whose index builds leave none.
    #[cfg(feature = "backfill")]
    fn invalid_index_sql(&self) -> Option<&'static str>;

    /// Drops the index `name` if it exists.
    #[cfg(feature = "backfill")]
    fn drop_index(&self, name: &str) -> String;

    /// Creates the index `name` `on` (a table and its columns) if it does not exist, without
    /// blocking writes to the table where the backend can.
    #[cfg(feature = "backfill")]
    fn create_index(&self, name: &str, on: &str) -> String;

    // --- Table locks (`running/ddl_lock.rs`, `context.rs`) ---

    /// Whether sessions have `lock_timeout` and `statement_timeout` (set per migration, lifted
    /// for `CREATE INDEX CONCURRENTLY`) and the server tells who blocks whom: the DDL lock
    /// timeout and its blocker watch.
    fn lock_timeouts(&self) -> bool;

    // --- Backups (`records/backup.rs`) ---

    /// The extension of a backup file.
    fn backup_extension(&self) -> &'static str;

    /// The database's name, for backup file names and prompts.
    fn database_name(&self, db: &Database) -> Result<String>;

    /// Writes a backup of `db` into `out` (an empty file, created mode 0600).
    fn backup_into(&self, db: &Database, config: &Config, out: &Path) -> Result<()>;
}

/// How a backend writes a computed batch back: the two algorithms of `backfill/write.rs`.
#[cfg(feature = "backfill")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchWrites {
    /// One statement on any connection (the rows as one array per column, the progress and
    /// the lease's release as data-modifying `WITH` queries), guarded by the rows' versions
    /// as claimed; the claims take a connection from the pool each, so that a write overlaps
    /// the next claim.
    OneStatement,
    /// A transaction on the connection that claimed the batch (`BEGIN IMMEDIATE`, chunks of
    /// `UPDATE ... FROM (VALUES ...)`), whose [`Dialect::data_version_sql`] tells whether the
    /// inputs must be compared: one connection claims and writes every batch of a sweep.
    OnTheClaimingConnection,
}

/// The table a batch write updates, as the backfill names it: the statements of
/// `postgres::write` and `sqlite::write` are built from it.
#[cfg(feature = "backfill")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteTarget<'a> {
    /// The table.
    pub(crate) table: &'a str,
    /// Its integer key column.
    pub(crate) key: &'a str,
    /// The predicate of a row still pending.
    pub(crate) pending: &'a str,
    /// The columns written, in the order of the computed values.
    pub(crate) outputs: &'a [&'a str],
    /// The columns read, in the order of the claimed values.
    pub(crate) inputs: &'a [&'a str],
}

/// The backfill's progress that a PostgreSQL batch write records in the same statement.
#[cfg(feature = "backfill")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteProgress<'a> {
    /// The backfills' table, whose row advances.
    pub(crate) backfills: &'a str,
    /// The workers' table.
    pub(crate) workers: &'a str,
    /// Whether a worker's row advances too.
    pub(crate) worker_row: bool,
}

/// The lease that a PostgreSQL batch write releases (up to the batch's largest key) in the same
/// statement.
#[cfg(feature = "backfill")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteRelease<'a> {
    /// The workers' table.
    pub(crate) workers: &'a str,
    /// Whether the lease is on the worker row that [`WriteProgress`] advances (then one
    /// `UPDATE` does both: a statement may change a row once).
    pub(crate) same_row: bool,
}
