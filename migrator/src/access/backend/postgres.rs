//! PostgreSQL's SQL: the tracking table's columns and UTC time expressions, catalog probes
//! through `to_regclass` (as an unqualified name in a query resolves), the audit and backfill
//! tables, replica lag from `pg_stat_replication`, and backups with the real `pg_dump`.

use std::path::Path;
use std::process::{Command, Stdio};

use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};

#[cfg(feature = "backfill")]
use super::dialect::BatchWrites;
use super::dialect::Dialect;
use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};

/// PostgreSQL.
#[derive(Debug)]
pub(crate) struct Postgres;

/// `name`: the schema in which `applied_migrations` is to be created (`current_schema()`).
pub(crate) const CURRENT_SCHEMA: &str = "SELECT CAST(current_schema() AS TEXT) AS name";

/// `name`: the table `$1` (schema-qualified) as text if it exists, else NULL.
pub(crate) const REGCLASS: &str = "SELECT CAST(to_regclass($1) AS TEXT) AS name";

/// On a server in recovery (itself a replica) `pg_current_wal_lsn()` fails: no rows there.
/// `bytes` stays NULL where `replay_lsn` is (`GREATEST` would skip the NULL and say 0).
#[cfg(feature = "backfill")]
const LAG_SQL: &str = "SELECT COALESCE(NULLIF(application_name, ''), host(client_addr), \
        'pid ' || pid::text) AS name, \
    CASE WHEN replay_lsn IS NOT NULL \
        THEN GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint END AS bytes, \
    EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_secs, \
    GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - reply_time), 0)::float8 AS since_reply, \
    NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid AND a.datid IS NOT NULL) \
        AS physical, \
    (replay_lsn IS NULL AND flush_lsn IS NOT NULL) AS no_replay \
    FROM pg_stat_replication r WHERE NOT pg_is_in_recovery() ORDER BY 1";

/// The statements of the PostgreSQL migration lock (`records/lock/postgres.rs` runs them): a
/// session advisory lock `(LOCK_CLASS, hashtext(DATABASE.SCHEMA.applied_migrations))`, the
/// schema bound as `$1`, taken and released only by the session's own backend (pid bound as
/// `$2`).
pub(crate) mod lock {
    /// The first key of the advisory lock: ASCII "migr".
    pub(crate) const LOCK_CLASS: i32 = 0x6D69_6772;

    /// The second key, from the tracking table's schema bound as `$1`.
    const KEY2: &str = "hashtext(current_database() || '.' || $1 || '.applied_migrations')";

    /// `pid`: the backend serving the statement.
    pub(crate) const BACKEND_PID: &str = "SELECT pg_backend_pid() AS pid";

    /// Names the lock's session (`application_name` = `$1`); `name` (the database) and `pid`.
    pub(crate) const PREPARE: &str = "SELECT current_database() AS name, pg_backend_pid() AS pid \
         FROM (SELECT set_config('application_name', $1, false)) AS configured";

    /// `taken, pid`: tries the lock, only on backend `$2`.
    pub(crate) fn take() -> String {
        format!(
            "SELECT CASE WHEN pg_backend_pid() = $2 \
             THEN pg_try_advisory_lock({LOCK_CLASS}, {KEY2}) ELSE false END AS taken, \
             pg_backend_pid() AS pid"
        )
    }

    /// `taken, pid`: whether this session holds the lock.
    pub(crate) fn held() -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objsubid = 2 \
             AND classid = CAST({LOCK_CLASS} AS oid) \
             AND objid = CAST(CAST({KEY2} AS BIGINT) & 4294967295 AS oid)) AS taken, \
             pg_backend_pid() AS pid"
        )
    }

    /// `pid, application_name, client, since` of the session holding the lock.
    pub(crate) fn holder() -> String {
        format!(
            "SELECT a.pid AS pid, COALESCE(a.application_name, '') AS application_name, \
             COALESCE(host(a.client_addr), 'local socket') AS client, \
             CAST(a.state_change AS TEXT) AS since \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid = CAST({LOCK_CLASS} AS oid) AND l.objid = CAST(CAST({KEY2} AS BIGINT) & 4294967295 AS oid) \
             LIMIT 1"
        )
    }

    /// `taken, pid`: releases the lock, only on backend `$2`.
    pub(crate) fn release() -> String {
        format!(
            "SELECT CASE WHEN pg_backend_pid() = $2 \
             THEN pg_advisory_unlock({LOCK_CLASS}, {KEY2}) ELSE false END AS taken, \
             pg_backend_pid() AS pid"
        )
    }
}

/// The statements of a migration's DDL lock timeout and its blocker watch
/// (`running/ddl_lock.rs` runs them, on a backend with [`Dialect::lock_timeouts`]).
pub(crate) mod ddl {
    /// `v`: the session's `statement_timeout` (the role's, database's or server's).
    pub(crate) const STATEMENT_TIMEOUT: &str = "SELECT current_setting('statement_timeout') AS v";

    /// Sets an attempt's `lock_timeout` and `statement_timeout` (milliseconds), for the
    /// transaction (`local`) or the session.
    pub(crate) fn set_timeouts(local: bool, lock_ms: u128, statement_ms: u128) -> String {
        let set = if local { "SET LOCAL" } else { "SET" };
        format!("{set} lock_timeout = {lock_ms}; {set} statement_timeout = {statement_ms};")
    }

    /// Undoes [`set_timeouts`]'s session-level settings.
    pub(crate) const RESET_TIMEOUTS: &str = "RESET lock_timeout; RESET statement_timeout;";

    /// `pid`: the backend serving the statement (the session the watch looks at).
    pub(crate) const BACKEND_PID: &str = super::lock::BACKEND_PID;

    /// The sessions blocking pid `$1`: identities, states and lock modes only (no `query` column).
    pub(crate) const BLOCKERS: &str = "SELECT a.pid AS pid, COALESCE(a.state, '') AS state, \
         COALESCE(a.wait_event_type || ':' || a.wait_event, '') AS wait_event, \
         CAST(floor(EXTRACT(EPOCH FROM clock_timestamp() - COALESCE(a.xact_start, a.state_change))) \
         AS INTEGER) AS age_secs, \
         COALESCE(a.application_name, '') AS application_name, \
         COALESCE((SELECT string_agg(DISTINCT h.mode, '+' ORDER BY h.mode) FROM pg_locks h \
           WHERE h.pid = a.pid AND h.granted AND h.relation IS NOT NULL \
           AND (h.relation IN (SELECT w.relation FROM pg_locks w WHERE w.pid = $1 AND NOT w.granted) \
           OR NOT EXISTS (SELECT 1 FROM pg_locks w WHERE w.pid = $1 AND NOT w.granted \
           AND w.relation IS NOT NULL))), '') AS modes \
         FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.pid";
}

/// A batch write's one statement (`backfill/write.rs` runs it on a backend whose
/// [`Dialect::batch_writes`] is [`BatchWrites::OneStatement`]).
#[cfg(feature = "backfill")]
pub(crate) mod write {
    use crate::access::backend::dialect::{WriteProgress, WriteRelease, WriteTarget};

    /// The batch, its progress and the lease's release in one statement, so one round trip
    /// and one transaction (data-modifying `WITH` queries): the rows arrive as one array per
    /// column (`unnest`), whatever the batch size, so that the statement's text is the same
    /// for every batch and its parsing and planning do not grow with it. Returns the keys
    /// written (`k`). Its bind parameters, in order: the keys, one array per output, the
    /// versions, the smallest and largest keys; with `progress`, the backfill's name, the batch
    /// size and (with a worker row) the worker's id; with `release`, the batch's largest key
    /// and (unless the same row) the holder.
    pub(crate) fn batch(
        target: &WriteTarget<'_>,
        progress: Option<WriteProgress<'_>>,
        release: Option<WriteRelease<'_>>,
    ) -> String {
        let width = target.outputs.len();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let mut names = vec!["__k".to_owned()];
        names.extend((0..width).map(|i| format!("__o{i}")));
        names.push("__v".to_owned());
        let mut arrays = vec![format!("CAST({} AS BIGINT[])", next())];
        arrays.extend((0..=width).map(|_| format!("CAST({} AS TEXT[])", next())));
        // The batch's smallest and largest keys bound both scans of the table to the batch's
        // key range, whatever plan the join gets (a merge join would otherwise walk the key
        // index from its start: a batch would cost more the further it is in the table).
        let (lo, hi) = (next(), next());
        let set: Vec<String> = target
            .outputs
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = v.__o{i}"))
            .collect();
        // Rows another transaction holds are skipped, never waited for; a row is written only
        // if still pending and at the version it was read.
        let mut sql = format!(
            "WITH v ({names}) AS (SELECT * FROM unnest({arrays})), \
             l AS (SELECT t.{key} AS __k FROM {table} t JOIN v ON t.{key} = v.__k \
             WHERE t.{key} BETWEEN {lo} AND {hi} FOR NO KEY UPDATE OF t SKIP LOCKED), \
             u AS (UPDATE {table} SET {set} FROM v JOIN l ON l.__k = v.__k \
             WHERE {table}.{key} = v.__k AND {table}.{key} BETWEEN {lo} AND {hi} \
             AND ({pending}) \
             AND CAST({table}.xmin AS TEXT) = v.__v \
             RETURNING CAST({table}.{key} AS BIGINT) AS k)",
            names = names.join(", "),
            arrays = arrays.join(", "),
            key = target.key,
            table = target.table,
            set = set.join(", "),
            pending = target.pending,
        );
        // The worker row's updates (progress, the lease's release) go in one UPDATE: a
        // statement may change a row once.
        let mut worker_sets: Vec<(String, Vec<String>)> = Vec::new();
        if let Some(progress) = progress {
            let (name, size) = (next(), next());
            sql.push_str(&format!(
                ", s AS (UPDATE {} SET rows_done = rows_done + (SELECT COUNT(*) FROM u), \
                 batch_size = {size}, updated_at = CURRENT_TIMESTAMP WHERE name = {name})",
                progress.backfills
            ));
            if progress.worker_row {
                let id = next();
                worker_sets.push((
                    id,
                    vec![
                        "rows_done = rows_done + (SELECT COUNT(*) FROM u)".to_owned(),
                        format!("backfill = {name}"),
                        "heartbeat = CURRENT_TIMESTAMP".to_owned(),
                    ],
                ));
            }
        }
        if let Some(release) = release {
            let hi = next();
            let sets = vec![
                format!(
                    "lease_lo = CASE WHEN lease_hi > {hi} THEN GREATEST(lease_lo, {hi} + 1) END"
                ),
                format!("lease_until = CASE WHEN lease_hi > {hi} THEN lease_until END"),
                format!("lease_hi = CASE WHEN lease_hi > {hi} THEN lease_hi END"),
            ];
            match worker_sets.first_mut() {
                // The same worker row: one UPDATE.
                Some((_, worker)) if release.same_row => worker.extend(sets),
                _ => worker_sets.push((next(), sets)),
            }
        }
        let workers = progress
            .map(|p| p.workers)
            .or_else(|| release.map(|r| r.workers))
            .unwrap_or_default();
        for (i, (id, sets)) in worker_sets.iter().enumerate() {
            sql.push_str(&format!(
                ", w{i} AS (UPDATE {workers} SET {} WHERE id = {id})",
                sets.join(", ")
            ));
        }
        sql.push_str(" SELECT k FROM u");
        sql
    }

    /// Releases the part of the lease of the worker row `$2` of `workers` up to the key `$1`
    /// (its batches up to there are written or given up), alone: what [`batch`] does in its
    /// statement, for a batch given up.
    pub(crate) fn release_lease(workers: &str) -> String {
        format!(
            "UPDATE {workers} SET \
             lease_lo = CASE WHEN lease_hi > $1 THEN GREATEST(lease_lo, $1 + 1) END, \
             lease_until = CASE WHEN lease_hi > $1 THEN lease_until END, \
             lease_hi = CASE WHEN lease_hi > $1 THEN lease_hi END WHERE id = $2"
        )
    }
}

impl Dialect for Postgres {
    fn columns_sql(&self) -> &'static str {
        "SELECT CAST(attname AS TEXT) AS name, format_type(atttypid, atttypmod) AS ty \
         FROM pg_catalog.pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped"
    }

    fn table_exists_sql(&self) -> &'static str {
        "SELECT COUNT(*) AS n FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = $1"
    }

    fn table_schema_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT CAST(n.nspname AS TEXT) AS name FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)",
        )
    }

    #[cfg(feature = "backfill")]
    fn key_column_sql(&self) -> &'static str {
        "SELECT format_type(a.atttypid, a.atttypmod) AS ty, \
         CAST(a.attnotnull AS INTEGER) AS not_null, \
         CAST(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid \
           AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum \
           AND i.indpred IS NULL) AS INTEGER) AS uniq \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
         AND a.attnum > 0 AND NOT a.attisdropped"
    }

    fn tracking_columns(&self) -> &'static str {
        "(
    migration_name VARCHAR(255) PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum VARCHAR(64),
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)"
    }

    fn applied_at_read(&self, without_time_zone: bool) -> &'static str {
        if without_time_zone {
            // Holds UTC wall-clock time (see `applied_at_now`): format it as it is.
            "to_char(applied_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        } else {
            "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        }
    }

    /// A `TIMESTAMP` without time zone would take `CURRENT_TIMESTAMP` in the session's time
    /// zone, so it gets UTC wall-clock time explicitly.
    fn applied_at_now(&self, without_time_zone: bool) -> &'static str {
        if without_time_zone {
            "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
        } else {
            "CURRENT_TIMESTAMP"
        }
    }

    fn audit_columns(&self) -> &'static str {
        "(id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
         actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, \
         outcome TEXT NOT NULL, process TEXT)"
    }

    #[cfg(feature = "backfill")]
    fn backfill_columns(&self) -> (&'static str, &'static str) {
        (
            "(name TEXT PRIMARY KEY, migration TEXT NOT NULL, \
             status TEXT NOT NULL CHECK (status IN \
               ('active', 'paused', 'finished', 'failed', 'cancelled')), \
             rows_done BIGINT NOT NULL DEFAULT 0, rows_total BIGINT NOT NULL DEFAULT 0, \
             batch_size INTEGER NOT NULL DEFAULT 0, upper_key BIGINT, last_error TEXT, \
             created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             finished_at TIMESTAMPTZ, definition TEXT)",
            "(id TEXT PRIMARY KEY, backfill TEXT, host TEXT NOT NULL, pid BIGINT NOT NULL, \
             thread INTEGER NOT NULL, rows_done BIGINT NOT NULL DEFAULT 0, \
             started_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             heartbeat TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             lease_lo BIGINT, lease_hi BIGINT, lease_until TIMESTAMPTZ)",
        )
    }

    #[cfg(feature = "backfill")]
    fn add_lease_columns(&self, workers: &str) -> Option<String> {
        Some(format!(
            "ALTER TABLE {workers} ADD COLUMN IF NOT EXISTS lease_lo BIGINT, \
             ADD COLUMN IF NOT EXISTS lease_hi BIGINT, \
             ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ"
        ))
    }

    #[cfg(feature = "backfill")]
    fn leases(&self) -> bool {
        true
    }

    #[cfg(feature = "backfill")]
    fn timestamp_text(&self, column: &str) -> String {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    }

    #[cfg(feature = "backfill")]
    fn elapsed_secs(&self) -> &'static str {
        "CAST(EXTRACT(EPOCH FROM (COALESCE(finished_at, CURRENT_TIMESTAMP) - created_at)) \
         AS DOUBLE PRECISION)"
    }

    #[cfg(feature = "backfill")]
    fn heartbeat_within(&self, secs: i64) -> String {
        format!("heartbeat > CURRENT_TIMESTAMP - {secs} * INTERVAL '1 second'")
    }

    #[cfg(feature = "backfill")]
    fn delete_dead_workers(&self, workers: &str) -> String {
        format!(
            "DELETE FROM {workers} WHERE heartbeat < CURRENT_TIMESTAMP - make_interval(secs => $1)"
        )
    }

    #[cfg(feature = "backfill")]
    fn replica_lag_sql(&self) -> Option<&'static str> {
        Some(LAG_SQL)
    }

    /// The candidates `c` (the pending keys of the window, at most a batch), and of those `l`
    /// the rows still pending, not leased by another live worker and not locked by another
    /// transaction (`FOR NO KEY UPDATE SKIP LOCKED`: an open transaction is stepped around,
    /// never waited for), with their versions (`xmin`); with a lease, `w` records the claimed
    /// range as this worker's lease in the same statement (which commits when it ends). The
    /// lease then covers every batch this worker has in flight (from the oldest unwritten one,
    /// kept, to this one).
    #[cfg(feature = "backfill")]
    fn claim_sql(
        &self,
        table: &str,
        key: &str,
        pending: &str,
        columns: &str,
        lease: Option<&str>,
    ) -> String {
        let (leased, take) = match lease {
            Some(workers) => (
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM {workers} w WHERE w.backfill = $4 \
                     AND w.id <> $5 AND w.lease_until > CURRENT_TIMESTAMP \
                     AND {table}.{key} BETWEEN w.lease_lo AND w.lease_hi)",
                ),
                format!(
                    ", w AS (UPDATE {workers} SET backfill = $4, \
                     lease_lo = LEAST(COALESCE(lease_lo, m.lo), m.lo), \
                     lease_hi = GREATEST(COALESCE(lease_hi, m.hi), m.hi), \
                     lease_until = CURRENT_TIMESTAMP + make_interval(secs => $6), \
                     heartbeat = CURRENT_TIMESTAMP \
                     FROM (SELECT MIN(k) AS lo, MAX(k) AS hi FROM l) AS m \
                     WHERE id = $5 AND m.lo IS NOT NULL)",
                ),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "WITH c AS (SELECT {key} AS k FROM {table} \
             WHERE {key} >= $1 AND {key} <= $2 AND ({pending}) ORDER BY {key} LIMIT $3), \
             l AS (SELECT CAST({key} AS BIGINT) AS k, {columns}, \
             CAST({table}.xmin AS TEXT) AS x FROM {table} \
             WHERE {key} >= $1 AND {key} <= $2 AND {key} IN (SELECT k FROM c) \
             AND ({pending}){leased} \
             FOR NO KEY UPDATE OF {table} SKIP LOCKED){take} \
             SELECT CAST(c.k AS BIGINT) AS c, l.k, l.i0, l.i1, l.i2, l.i3, l.x \
             FROM c LEFT JOIN l ON l.k = c.k ORDER BY c.k",
        )
    }

    #[cfg(feature = "backfill")]
    fn data_version_sql(&self) -> Option<&'static str> {
        None
    }

    #[cfg(feature = "backfill")]
    fn batch_writes(&self) -> BatchWrites {
        BatchWrites::OneStatement
    }

    /// Never analysed: reltuples is -1 (PostgreSQL 14+) or 0 with relpages 0; else the rows
    /// per page of the last analysis times the pages now.
    #[cfg(feature = "backfill")]
    fn statistics_sql(&self) -> &'static str {
        "SELECT CAST(CASE WHEN c.reltuples >= 0 AND c.relpages > 0 \
         THEN c.reltuples / c.relpages * GREATEST(1, pg_relation_size(c.oid) \
           / CAST(current_setting('block_size') AS DOUBLE PRECISION)) END \
         AS DOUBLE PRECISION) AS n FROM pg_class c WHERE c.oid = to_regclass($1)"
    }

    #[cfg(feature = "backfill")]
    fn statistics_table(&self) -> Option<&'static str> {
        None
    }

    /// An advisory lock held by the session (released when its connection closes).
    #[cfg(feature = "backfill")]
    fn finish_lock_sql(&self) -> Option<&'static str> {
        Some("SELECT pg_try_advisory_lock($1, hashtext($2)) AS taken")
    }

    /// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would keep an invalid index that an
    /// interrupted build left: it is looked for first.
    #[cfg(feature = "backfill")]
    fn invalid_index_sql(&self) -> Option<&'static str> {
        Some(
            "SELECT EXISTS (SELECT 1 FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND n.nspname = current_schema() \
             AND NOT i.indisvalid) AS taken",
        )
    }

    #[cfg(feature = "backfill")]
    fn drop_index(&self, name: &str) -> String {
        format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")
    }

    #[cfg(feature = "backfill")]
    fn create_index(&self, name: &str, on: &str) -> String {
        format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {on}")
    }

    fn lock_timeouts(&self) -> bool {
        true
    }

    fn backup_extension(&self) -> &'static str {
        "dump"
    }

    fn database_name(&self, db: &Database) -> Result<String> {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let mut conn = db.get()?;
        let name: Name = diesel::sql_query("SELECT current_database() AS name")
            .get_result(&mut *conn)
            .map_err(Error::db("cannot read the database name"))?;
        Ok(name.name)
    }

    /// The real `pg_dump` (`MIGRATION_PG_DUMP`), custom format (restore with `pg_restore`).
    /// The password reaches it through `PGPASSWORD`, never its arguments.
    fn backup_into(&self, db: &Database, config: &Config, out: &Path) -> Result<()> {
        let program = config.pg_dump();
        let (url, password) = db.url().split_password();
        let mut command = Command::new(program);
        command
            .arg("--format=custom")
            .arg("--no-password")
            .arg("--file")
            .arg(out)
            .arg("--dbname")
            .arg(&url)
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        let output = command.output().map_err(|e| Error::Backup {
            context: format!(
                "cannot run {}; install the PostgreSQL client tools or set MIGRATION_PG_DUMP",
                program.display()
            ),
            source: Some(Box::new(e)),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Backup {
                context: format!("{} failed", program.display()),
                source: Some(Box::new(Exited {
                    status: output.status,
                    stderr: db.url().scrub(stderr.trim()),
                })),
            });
        }
        Ok(())
    }
}

/// A child process that exited unsuccessfully: its status and its standard error (a password
/// in it scrubbed).
#[derive(Debug)]
struct Exited {
    status: std::process::ExitStatus,
    stderr: String,
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for Exited {}
