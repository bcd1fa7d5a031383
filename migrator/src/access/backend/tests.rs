//! Golden SQL: every statement the backends build at run time, pinned byte for byte per
//! backend, without a database. A change of generated SQL fails here and shows up as a
//! reviewed diff of this file (the integration tests check that the SQL works).

use super::{of, qualified, quote_ident, Dialect};
use crate::access::url::Backend;

fn postgres() -> &'static dyn Dialect {
    of(Backend::Postgres)
}

fn sqlite() -> &'static dyn Dialect {
    of(Backend::Sqlite)
}

/// `assert_eq!` that prints both statements whole, one per line, when they differ.
#[track_caller]
fn same(actual: impl AsRef<str>, expected: &str) {
    let actual = actual.as_ref();
    assert!(
        actual == expected,
        "generated SQL changed:\n  actual: {actual}\nexpected: {expected}"
    );
}

/// A schema name that needs every rule of quoting: a space, a capital and a `"`.
const ODD_SCHEMA: &str = "Tenant \"a\" one";
const ODD_TABLE: &str = r#""Tenant ""a"" one".applied_migrations"#;

#[test]
fn identifiers_are_always_quoted_and_quotes_doubled() {
    same(quote_ident("public"), r#""public""#);
    same(quote_ident(ODD_SCHEMA), r#""Tenant ""a"" one""#);
    same(quote_ident(""), r#""""#);
    same(qualified(Some(ODD_SCHEMA), "applied_migrations"), ODD_TABLE);
    same(
        qualified(Some("app"), "migrator_backfills"),
        r#""app".migrator_backfills"#,
    );
    // SQLite: no schema, the main database's table.
    same(qualified(None, "applied_migrations"), "applied_migrations");
}

#[test]
fn postgres_tracking_table_ddl_in_a_custom_schema() {
    same(
        postgres().create_tracking_table(ODD_TABLE),
        r#"CREATE TABLE IF NOT EXISTS "Tenant ""a"" one".applied_migrations (
    migration_name VARCHAR(255) PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum VARCHAR(64),
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)"#,
    );
}

#[test]
fn sqlite_tracking_table_ddl() {
    same(
        sqlite().create_tracking_table("applied_migrations"),
        "CREATE TABLE IF NOT EXISTS applied_migrations (
    migration_name TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms BIGINT,
    error_message TEXT,
    checksum TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    applied_by TEXT
)",
    );
}

#[test]
fn postgres_tracking_writes_utc_into_either_timestamp_type() {
    same(
        postgres().tracking_update(ODD_TABLE, false),
        r#"UPDATE "Tenant ""a"" one".applied_migrations SET status = $1, applied_at = CURRENT_TIMESTAMP, execution_time_ms = $2, error_message = $3, checksum = COALESCE($4, checksum), attempts = COALESCE(attempts, 0) + $5, applied_by = $6 WHERE migration_name = $7"#,
    );
    // An older tool's TIMESTAMP without time zone gets UTC wall-clock time.
    same(
        postgres().tracking_update(ODD_TABLE, true),
        r#"UPDATE "Tenant ""a"" one".applied_migrations SET status = $1, applied_at = (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), execution_time_ms = $2, error_message = $3, checksum = COALESCE($4, checksum), attempts = COALESCE(attempts, 0) + $5, applied_by = $6 WHERE migration_name = $7"#,
    );
    same(
        postgres().tracking_insert(ODD_TABLE, false),
        r#"INSERT INTO "Tenant ""a"" one".applied_migrations (migration_name, status, applied_at, execution_time_ms, error_message, checksum, attempts, applied_by) VALUES ($1, $2, CURRENT_TIMESTAMP, $3, $4, $5, $6, $7)"#,
    );
    same(
        postgres().tracking_insert(ODD_TABLE, true),
        r#"INSERT INTO "Tenant ""a"" one".applied_migrations (migration_name, status, applied_at, execution_time_ms, error_message, checksum, attempts, applied_by) VALUES ($1, $2, (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'), $3, $4, $5, $6, $7)"#,
    );
}

#[test]
fn sqlite_tracking_writes_current_timestamp() {
    for without_time_zone in [false, true] {
        same(
            sqlite().tracking_update("applied_migrations", without_time_zone),
            "UPDATE applied_migrations SET status = $1, applied_at = CURRENT_TIMESTAMP, execution_time_ms = $2, error_message = $3, checksum = COALESCE($4, checksum), attempts = COALESCE(attempts, 0) + $5, applied_by = $6 WHERE migration_name = $7",
        );
        same(
            sqlite().tracking_insert("applied_migrations", without_time_zone),
            "INSERT INTO applied_migrations (migration_name, status, applied_at, execution_time_ms, error_message, checksum, attempts, applied_by) VALUES ($1, $2, CURRENT_TIMESTAMP, $3, $4, $5, $6, $7)",
        );
    }
}

/// An older tool's table: name, status, time, duration and error only.
fn legacy(column: &str) -> bool {
    [
        "migration_name",
        "status",
        "applied_at",
        "execution_time_ms",
        "error_message",
    ]
    .contains(&column)
}

#[test]
fn postgres_tracking_reads_a_current_and_a_legacy_table() {
    same(
        postgres().tracking_select(ODD_TABLE, &|_| true, false),
        r#"SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS applied_at, CAST(execution_time_ms AS BIGINT) AS execution_time_ms, CAST(error_message AS TEXT) AS error_message, CAST(checksum AS TEXT) AS checksum, CAST(attempts AS BIGINT) AS attempts, CAST(applied_by AS TEXT) AS applied_by FROM "Tenant ""a"" one".applied_migrations ORDER BY migration_name"#,
    );
    same(
        postgres().tracking_select(r#""public".applied_migrations"#, &legacy, true),
        r#"SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, to_char(applied_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS applied_at, CAST(execution_time_ms AS BIGINT) AS execution_time_ms, CAST(error_message AS TEXT) AS error_message, CAST(NULL AS TEXT) AS checksum, CAST(NULL AS BIGINT) AS attempts, CAST(NULL AS TEXT) AS applied_by FROM "public".applied_migrations ORDER BY migration_name"#,
    );
}

#[test]
fn sqlite_tracking_reads_a_current_and_a_legacy_table() {
    same(
        sqlite().tracking_select("applied_migrations", &|_| true, false),
        "SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, CAST(applied_at AS TEXT) AS applied_at, CAST(execution_time_ms AS BIGINT) AS execution_time_ms, CAST(error_message AS TEXT) AS error_message, CAST(checksum AS TEXT) AS checksum, CAST(attempts AS BIGINT) AS attempts, CAST(applied_by AS TEXT) AS applied_by FROM applied_migrations ORDER BY migration_name",
    );
    same(
        sqlite().tracking_select("applied_migrations", &legacy, false),
        "SELECT CAST(migration_name AS TEXT) AS migration_name, CAST(status AS TEXT) AS status, CAST(applied_at AS TEXT) AS applied_at, CAST(execution_time_ms AS BIGINT) AS execution_time_ms, CAST(error_message AS TEXT) AS error_message, CAST(NULL AS TEXT) AS checksum, CAST(NULL AS BIGINT) AS attempts, CAST(NULL AS TEXT) AS applied_by FROM applied_migrations ORDER BY migration_name",
    );
}

#[test]
fn postgres_catalog_probes() {
    same(
        postgres().columns_sql(),
        "SELECT CAST(attname AS TEXT) AS name, format_type(atttypid, atttypmod) AS ty FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    );
    same(
        postgres().table_exists_sql(),
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
    );
    same(
        postgres().table_schema_sql().unwrap_or("none"),
        "SELECT CAST(n.nspname AS TEXT) AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
    );
    same(
        super::CURRENT_SCHEMA,
        "SELECT CAST(current_schema() AS TEXT) AS name",
    );
    same(
        super::REGCLASS,
        "SELECT CAST(to_regclass($1) AS TEXT) AS name",
    );
}

#[test]
fn sqlite_catalog_probes() {
    same(
        sqlite().columns_sql(),
        "SELECT name, type AS ty FROM pragma_table_info($1)",
    );
    same(
        sqlite().table_exists_sql(),
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1",
    );
    // No schemas: the tracking table is the main database's.
    assert_eq!(sqlite().table_schema_sql(), None);
}

#[test]
fn postgres_audit_table_ddl() {
    same(
        postgres().create_audit_table(r#""app".migrator_audit"#),
        r#"CREATE TABLE IF NOT EXISTS "app".migrator_audit (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, process TEXT)"#,
    );
}

#[test]
fn sqlite_audit_table_ddl() {
    same(
        sqlite().create_audit_table("migrator_audit"),
        "CREATE TABLE IF NOT EXISTS migrator_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, process TEXT)",
    );
}

#[test]
fn postgres_lock_statements() {
    use super::pg_lock;
    // ASCII "migr": operators and earlier versions know the lock by this class.
    assert_eq!(pg_lock::LOCK_CLASS, 1_835_624_306);
    same(pg_lock::BACKEND_PID, "SELECT pg_backend_pid() AS pid");
    same(
        pg_lock::PREPARE,
        "SELECT current_database() AS name, pg_backend_pid() AS pid FROM (SELECT set_config('application_name', $1, false)) AS configured",
    );
    same(
        pg_lock::take(),
        "SELECT CASE WHEN pg_backend_pid() = $2 THEN pg_try_advisory_lock(1835624306, hashtext(current_database() || '.' || $1 || '.applied_migrations')) ELSE false END AS taken, pg_backend_pid() AS pid",
    );
    same(
        pg_lock::held(),
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 2 AND classid = CAST(1835624306 AS oid) AND objid = CAST(CAST(hashtext(current_database() || '.' || $1 || '.applied_migrations') AS BIGINT) & 4294967295 AS oid)) AS taken, pg_backend_pid() AS pid",
    );
    same(
        pg_lock::holder(),
        "SELECT a.pid AS pid, COALESCE(a.application_name, '') AS application_name, COALESCE(host(a.client_addr), 'local socket') AS client, CAST(a.state_change AS TEXT) AS since FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.classid = CAST(1835624306 AS oid) AND l.objid = CAST(CAST(hashtext(current_database() || '.' || $1 || '.applied_migrations') AS BIGINT) & 4294967295 AS oid) LIMIT 1",
    );
    same(
        pg_lock::release(),
        "SELECT CASE WHEN pg_backend_pid() = $2 THEN pg_advisory_unlock(1835624306, hashtext(current_database() || '.' || $1 || '.applied_migrations')) ELSE false END AS taken, pg_backend_pid() AS pid",
    );
}

#[test]
fn postgres_ddl_lock_statements() {
    use super::pg_ddl;
    same(
        pg_ddl::STATEMENT_TIMEOUT,
        "SELECT current_setting('statement_timeout') AS v",
    );
    same(
        pg_ddl::set_timeouts(true, 5000, 0),
        "SET LOCAL lock_timeout = 5000; SET LOCAL statement_timeout = 0;",
    );
    same(
        pg_ddl::set_timeouts(false, 1, 60000),
        "SET lock_timeout = 1; SET statement_timeout = 60000;",
    );
    same(
        pg_ddl::RESET_TIMEOUTS,
        "RESET lock_timeout; RESET statement_timeout;",
    );
    same(pg_ddl::BACKEND_PID, "SELECT pg_backend_pid() AS pid");
    same(
        pg_ddl::BLOCKERS,
        "SELECT a.pid AS pid, COALESCE(a.state, '') AS state, COALESCE(a.wait_event_type || ':' || a.wait_event, '') AS wait_event, CAST(floor(EXTRACT(EPOCH FROM clock_timestamp() - COALESCE(a.xact_start, a.state_change))) AS INTEGER) AS age_secs, COALESCE(a.application_name, '') AS application_name, COALESCE((SELECT string_agg(DISTINCT h.mode, '+' ORDER BY h.mode) FROM pg_locks h WHERE h.pid = a.pid AND h.granted AND h.relation IS NOT NULL AND (h.relation IN (SELECT w.relation FROM pg_locks w WHERE w.pid = $1 AND NOT w.granted) OR NOT EXISTS (SELECT 1 FROM pg_locks w WHERE w.pid = $1 AND NOT w.granted AND w.relation IS NOT NULL))), '') AS modes FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.pid",
    );
}

#[test]
fn capabilities() {
    assert!(postgres().lock_timeouts());
    assert!(!sqlite().lock_timeouts());
    same(postgres().backup_extension(), "dump");
    same(sqlite().backup_extension(), "sqlite3");
}

#[cfg(feature = "backfill")]
mod backfill {
    use super::{postgres, same, sqlite};
    use crate::access::backend::{
        pg_write, sqlite_write, BatchWrites, WriteProgress, WriteRelease, WriteTarget,
    };

    const BACKFILLS: &str = r#""app".migrator_backfills"#;
    const WORKERS: &str = r#""app".migrator_backfill_workers"#;

    #[test]
    fn postgres_backfill_tables_ddl_and_upgrade() {
        same(
            postgres().create_backfill_tables(BACKFILLS, WORKERS),
            r#"CREATE TABLE IF NOT EXISTS "app".migrator_backfills (name TEXT PRIMARY KEY, migration TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'finished', 'failed', 'cancelled')), rows_done BIGINT NOT NULL DEFAULT 0, rows_total BIGINT NOT NULL DEFAULT 0, batch_size INTEGER NOT NULL DEFAULT 0, upper_key BIGINT, last_error TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, finished_at TIMESTAMPTZ, definition TEXT); CREATE TABLE IF NOT EXISTS "app".migrator_backfill_workers (id TEXT PRIMARY KEY, backfill TEXT, host TEXT NOT NULL, pid BIGINT NOT NULL, thread INTEGER NOT NULL, rows_done BIGINT NOT NULL DEFAULT 0, started_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, heartbeat TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, lease_lo BIGINT, lease_hi BIGINT, lease_until TIMESTAMPTZ);"#,
        );
        same(
            postgres().add_lease_columns(WORKERS).unwrap_or_default(),
            r#"ALTER TABLE "app".migrator_backfill_workers ADD COLUMN IF NOT EXISTS lease_lo BIGINT, ADD COLUMN IF NOT EXISTS lease_hi BIGINT, ADD COLUMN IF NOT EXISTS lease_until TIMESTAMPTZ"#,
        );
        assert!(postgres().leases());
    }

    #[test]
    fn sqlite_backfill_tables_ddl_without_leases() {
        same(
            sqlite().create_backfill_tables("migrator_backfills", "migrator_backfill_workers"),
            "CREATE TABLE IF NOT EXISTS migrator_backfills (name TEXT PRIMARY KEY, migration TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'finished', 'failed', 'cancelled')), rows_done INTEGER NOT NULL DEFAULT 0, rows_total INTEGER NOT NULL DEFAULT 0, batch_size INTEGER NOT NULL DEFAULT 0, upper_key INTEGER, last_error TEXT, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, finished_at TEXT, definition TEXT); CREATE TABLE IF NOT EXISTS migrator_backfill_workers (id TEXT PRIMARY KEY, backfill TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, thread INTEGER NOT NULL, rows_done INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, heartbeat TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);",
        );
        assert_eq!(
            sqlite().add_lease_columns("migrator_backfill_workers"),
            None
        );
        assert!(!sqlite().leases());
    }

    #[test]
    fn postgres_backfill_state_statements() {
        same(
            postgres().backfills_select(BACKFILLS),
            r#"SELECT name, migration, status, CAST(rows_done AS BIGINT) AS rows_done, CAST(rows_total AS BIGINT) AS rows_total, CAST(batch_size AS BIGINT) AS batch_size, CAST(upper_key AS BIGINT) AS upper_key, last_error, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated_at, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS finished_at, CAST(EXTRACT(EPOCH FROM (COALESCE(finished_at, CURRENT_TIMESTAMP) - created_at)) AS DOUBLE PRECISION) AS elapsed_secs FROM "app".migrator_backfills WHERE $1 IS NULL OR name = $1 ORDER BY created_at, name"#,
        );
        same(
            postgres().workers_select(WORKERS, 60),
            r#"SELECT backfill, host, CAST(pid AS BIGINT) AS pid, thread, CAST(rows_done AS BIGINT) AS rows_done, to_char(heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS heartbeat FROM "app".migrator_backfill_workers WHERE heartbeat > CURRENT_TIMESTAMP - 60 * INTERVAL '1 second' ORDER BY host, pid, thread"#,
        );
        same(
            postgres().delete_dead_workers(WORKERS),
            r#"DELETE FROM "app".migrator_backfill_workers WHERE heartbeat < CURRENT_TIMESTAMP - make_interval(secs => $1)"#,
        );
    }

    #[test]
    fn sqlite_backfill_state_statements() {
        same(
            sqlite().backfills_select("migrator_backfills"),
            "SELECT name, migration, status, CAST(rows_done AS BIGINT) AS rows_done, CAST(rows_total AS BIGINT) AS rows_total, CAST(batch_size AS BIGINT) AS batch_size, CAST(upper_key AS BIGINT) AS upper_key, last_error, CAST(created_at AS TEXT) AS created_at, CAST(updated_at AS TEXT) AS updated_at, CAST(finished_at AS TEXT) AS finished_at, CAST((julianday(COALESCE(finished_at, CURRENT_TIMESTAMP)) - julianday(created_at)) * 86400.0 AS REAL) AS elapsed_secs FROM migrator_backfills WHERE $1 IS NULL OR name = $1 ORDER BY created_at, name",
        );
        same(
            sqlite().workers_select("migrator_backfill_workers", 60),
            "SELECT backfill, host, CAST(pid AS BIGINT) AS pid, thread, CAST(rows_done AS BIGINT) AS rows_done, CAST(heartbeat AS TEXT) AS heartbeat FROM migrator_backfill_workers WHERE heartbeat > datetime('now', '-60 seconds') ORDER BY host, pid, thread",
        );
        same(
            sqlite().delete_dead_workers("migrator_backfill_workers"),
            "DELETE FROM migrator_backfill_workers WHERE julianday(heartbeat) < julianday('now') - $1 / 86400.0",
        );
    }

    #[test]
    fn key_column_checks() {
        same(
            postgres().key_column_sql(),
            "SELECT format_type(a.atttypid, a.atttypmod) AS ty, CAST(a.attnotnull AS INTEGER) AS not_null, CAST(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) AS INTEGER) AS uniq FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        );
        same(
            sqlite().key_column_sql(),
            r#"SELECT t.type AS ty, CASE WHEN t."notnull" = 1 OR (t.pk = 1 AND (SELECT COUNT(*) FROM pragma_table_info($1) WHERE pk > 0) = 1) THEN 1 ELSE 0 END AS not_null, CASE WHEN (t.pk = 1 AND (SELECT COUNT(*) FROM pragma_table_info($1) WHERE pk > 0) = 1) OR EXISTS (SELECT 1 FROM pragma_index_list($1) il WHERE il."unique" = 1 AND il.partial = 0 AND (SELECT COUNT(*) FROM pragma_index_info(il.name)) = 1 AND (SELECT name FROM pragma_index_info(il.name)) = $2) THEN 1 ELSE 0 END AS uniq FROM pragma_table_info($1) t WHERE t.name = $2"#,
        );
    }

    #[test]
    fn replica_lag_only_on_postgres() {
        same(
            postgres().replica_lag_sql().unwrap_or_default(),
            "SELECT COALESCE(NULLIF(application_name, ''), host(client_addr), 'pid ' || pid::text) AS name, CASE WHEN replay_lsn IS NOT NULL THEN GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint END AS bytes, EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_secs, GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - reply_time), 0)::float8 AS since_reply, NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid AND a.datid IS NOT NULL) AS physical, (replay_lsn IS NULL AND flush_lsn IS NOT NULL) AS no_replay FROM pg_stat_replication r WHERE NOT pg_is_in_recovery() ORDER BY 1",
        );
        assert_eq!(sqlite().replica_lag_sql(), None);
    }

    const TABLE: &str = "users";
    const KEY: &str = "id";
    const PENDING: &str = "pw_hash IS NULL";
    const INPUTS: &str = "CAST(password AS TEXT) AS i0, CAST(NULL AS TEXT) AS i1, CAST(NULL AS TEXT) AS i2, CAST(NULL AS TEXT) AS i3";

    #[test]
    fn postgres_claims_lock_and_lease_in_one_statement() {
        same(
            postgres().claim_sql(TABLE, KEY, PENDING, INPUTS, None),
            r#"WITH c AS (SELECT id AS k FROM users WHERE id >= $1 AND id <= $2 AND (pw_hash IS NULL) ORDER BY id LIMIT $3), l AS (SELECT CAST(id AS BIGINT) AS k, CAST(password AS TEXT) AS i0, CAST(NULL AS TEXT) AS i1, CAST(NULL AS TEXT) AS i2, CAST(NULL AS TEXT) AS i3, CAST(users.xmin AS TEXT) AS x FROM users WHERE id >= $1 AND id <= $2 AND id IN (SELECT k FROM c) AND (pw_hash IS NULL) FOR NO KEY UPDATE OF users SKIP LOCKED) SELECT CAST(c.k AS BIGINT) AS c, l.k, l.i0, l.i1, l.i2, l.i3, l.x FROM c LEFT JOIN l ON l.k = c.k ORDER BY c.k"#,
        );
        same(
            postgres().claim_sql(TABLE, KEY, PENDING, INPUTS, Some(WORKERS)),
            r#"WITH c AS (SELECT id AS k FROM users WHERE id >= $1 AND id <= $2 AND (pw_hash IS NULL) ORDER BY id LIMIT $3), l AS (SELECT CAST(id AS BIGINT) AS k, CAST(password AS TEXT) AS i0, CAST(NULL AS TEXT) AS i1, CAST(NULL AS TEXT) AS i2, CAST(NULL AS TEXT) AS i3, CAST(users.xmin AS TEXT) AS x FROM users WHERE id >= $1 AND id <= $2 AND id IN (SELECT k FROM c) AND (pw_hash IS NULL) AND NOT EXISTS (SELECT 1 FROM "app".migrator_backfill_workers w WHERE w.backfill = $4 AND w.id <> $5 AND w.lease_until > CURRENT_TIMESTAMP AND users.id BETWEEN w.lease_lo AND w.lease_hi) FOR NO KEY UPDATE OF users SKIP LOCKED), w AS (UPDATE "app".migrator_backfill_workers SET backfill = $4, lease_lo = LEAST(COALESCE(lease_lo, m.lo), m.lo), lease_hi = GREATEST(COALESCE(lease_hi, m.hi), m.hi), lease_until = CURRENT_TIMESTAMP + make_interval(secs => $6), heartbeat = CURRENT_TIMESTAMP FROM (SELECT MIN(k) AS lo, MAX(k) AS hi FROM l) AS m WHERE id = $5 AND m.lo IS NOT NULL) SELECT CAST(c.k AS BIGINT) AS c, l.k, l.i0, l.i1, l.i2, l.i3, l.x FROM c LEFT JOIN l ON l.k = c.k ORDER BY c.k"#,
        );
    }

    #[test]
    fn sqlite_claims_read_without_locks_or_leases() {
        same(
            sqlite().claim_sql(TABLE, KEY, PENDING, INPUTS, None),
            r#"SELECT CAST(id AS BIGINT) AS c, CAST(id AS BIGINT) AS k, CAST(password AS TEXT) AS i0, CAST(NULL AS TEXT) AS i1, CAST(NULL AS TEXT) AS i2, CAST(NULL AS TEXT) AS i3, CAST(NULL AS TEXT) AS x FROM users WHERE id >= $1 AND id <= $2 AND (pw_hash IS NULL) ORDER BY id LIMIT $3"#,
        );
        // No leases on SQLite: the workers' table changes nothing.
        same(
            sqlite().claim_sql(TABLE, KEY, PENDING, INPUTS, Some(WORKERS)),
            r#"SELECT CAST(id AS BIGINT) AS c, CAST(id AS BIGINT) AS k, CAST(password AS TEXT) AS i0, CAST(NULL AS TEXT) AS i1, CAST(NULL AS TEXT) AS i2, CAST(NULL AS TEXT) AS i3, CAST(NULL AS TEXT) AS x FROM users WHERE id >= $1 AND id <= $2 AND (pw_hash IS NULL) ORDER BY id LIMIT $3"#,
        );
    }

    #[test]
    fn data_version_and_batch_writes_per_backend() {
        assert_eq!(postgres().data_version_sql(), None);
        same(
            sqlite().data_version_sql().unwrap_or_default(),
            "PRAGMA data_version",
        );
        assert_eq!(postgres().batch_writes(), BatchWrites::OneStatement);
        assert_eq!(
            sqlite().batch_writes(),
            BatchWrites::OnTheClaimingConnection
        );
    }

    #[test]
    fn row_statistics_per_backend() {
        same(
            postgres().statistics_sql(),
            "SELECT CAST(CASE WHEN c.reltuples >= 0 AND c.relpages > 0 THEN c.reltuples / c.relpages * GREATEST(1, pg_relation_size(c.oid) / CAST(current_setting('block_size') AS DOUBLE PRECISION)) END AS DOUBLE PRECISION) AS n FROM pg_class c WHERE c.oid = to_regclass($1)",
        );
        assert_eq!(postgres().statistics_table(), None);
        same(
            sqlite().statistics_sql(),
            "SELECT CAST(MAX(CAST(stat AS INTEGER)) AS REAL) AS n FROM sqlite_stat1 WHERE tbl = $1",
        );
        assert_eq!(sqlite().statistics_table(), Some("sqlite_stat1"));
    }

    #[test]
    fn postgres_finishing_statements_lock_and_build_concurrently() {
        same(
            postgres().finish_lock_sql().unwrap_or_default(),
            "SELECT pg_try_advisory_lock($1, hashtext($2)) AS taken",
        );
        same(
            postgres().invalid_index_sql().unwrap_or_default(),
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND n.nspname = current_schema() AND NOT i.indisvalid) AS taken",
        );
        same(
            postgres().drop_index("users_email"),
            "DROP INDEX CONCURRENTLY IF EXISTS users_email",
        );
        same(
            postgres().create_index("users_email", "users (email)"),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email)",
        );
    }

    #[test]
    fn sqlite_finishing_statements_without_lock_or_invalid_indexes() {
        assert_eq!(sqlite().finish_lock_sql(), None);
        assert_eq!(sqlite().invalid_index_sql(), None);
        same(
            sqlite().drop_index("users_email"),
            "DROP INDEX IF EXISTS users_email",
        );
        same(
            sqlite().create_index("users_email", "users (email)"),
            "CREATE INDEX IF NOT EXISTS users_email ON users (email)",
        );
    }

    const USERS: WriteTarget<'static> = WriteTarget {
        table: "users",
        key: "id",
        pending: "pw_hash IS NULL",
        outputs: &["pw_hash", "pw_algo"],
        inputs: &["password"],
    };

    fn progress(worker_row: bool) -> WriteProgress<'static> {
        WriteProgress {
            backfills: BACKFILLS,
            workers: WORKERS,
            worker_row,
        }
    }

    fn release(same_row: bool) -> WriteRelease<'static> {
        WriteRelease {
            workers: WORKERS,
            same_row,
        }
    }

    #[test]
    fn postgres_batch_writes_in_one_statement() {
        same(
            pg_write::batch(&USERS, None, None),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k) SELECT k FROM u"#,
        );
        same(
            pg_write::batch(&USERS, Some(progress(true)), None),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET rows_done = rows_done + (SELECT COUNT(*) FROM u), backfill = $7, heartbeat = CURRENT_TIMESTAMP WHERE id = $9) SELECT k FROM u"#,
        );
        same(
            pg_write::batch(&USERS, Some(progress(false)), None),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7) SELECT k FROM u"#,
        );
        same(
            pg_write::batch(&USERS, None, Some(release(false))),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), w0 AS (UPDATE "app".migrator_backfill_workers SET lease_lo = CASE WHEN lease_hi > $7 THEN GREATEST(lease_lo, $7 + 1) END, lease_until = CASE WHEN lease_hi > $7 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $7 THEN lease_hi END WHERE id = $8) SELECT k FROM u"#,
        );
        // A batch given up releases its lease alone.
        same(
            pg_write::release_lease(WORKERS),
            r#"UPDATE "app".migrator_backfill_workers SET lease_lo = CASE WHEN lease_hi > $1 THEN GREATEST(lease_lo, $1 + 1) END, lease_until = CASE WHEN lease_hi > $1 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $1 THEN lease_hi END WHERE id = $2"#,
        );
    }

    #[test]
    fn postgres_batch_writes_release_the_lease_on_the_worker_row() {
        // The worker row that advances holds the lease: one UPDATE of it.
        same(
            pg_write::batch(&USERS, Some(progress(true)), Some(release(true))),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET rows_done = rows_done + (SELECT COUNT(*) FROM u), backfill = $7, heartbeat = CURRENT_TIMESTAMP, lease_lo = CASE WHEN lease_hi > $10 THEN GREATEST(lease_lo, $10 + 1) END, lease_until = CASE WHEN lease_hi > $10 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $10 THEN lease_hi END WHERE id = $9) SELECT k FROM u"#,
        );
        // Another row holds it: two.
        same(
            pg_write::batch(&USERS, Some(progress(true)), Some(release(false))),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET rows_done = rows_done + (SELECT COUNT(*) FROM u), backfill = $7, heartbeat = CURRENT_TIMESTAMP WHERE id = $9), w1 AS (UPDATE "app".migrator_backfill_workers SET lease_lo = CASE WHEN lease_hi > $10 THEN GREATEST(lease_lo, $10 + 1) END, lease_until = CASE WHEN lease_hi > $10 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $10 THEN lease_hi END WHERE id = $11) SELECT k FROM u"#,
        );
        same(
            pg_write::batch(&USERS, Some(progress(false)), Some(release(false))),
            r#"WITH v (__k, __o0, __o1, __v) AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS TEXT[]), CAST($3 AS TEXT[]), CAST($4 AS TEXT[]))), l AS (SELECT t.id AS __k FROM users t JOIN v ON t.id = v.__k WHERE t.id BETWEEN $5 AND $6 FOR NO KEY UPDATE OF t SKIP LOCKED), u AS (UPDATE users SET pw_hash = v.__o0, pw_algo = v.__o1 FROM v JOIN l ON l.__k = v.__k WHERE users.id = v.__k AND users.id BETWEEN $5 AND $6 AND (pw_hash IS NULL) AND CAST(users.xmin AS TEXT) = v.__v RETURNING CAST(users.id AS BIGINT) AS k), s AS (UPDATE "app".migrator_backfills SET rows_done = rows_done + (SELECT COUNT(*) FROM u), batch_size = $8, updated_at = CURRENT_TIMESTAMP WHERE name = $7), w0 AS (UPDATE "app".migrator_backfill_workers SET lease_lo = CASE WHEN lease_hi > $9 THEN GREATEST(lease_lo, $9 + 1) END, lease_until = CASE WHEN lease_hi > $9 THEN lease_until END, lease_hi = CASE WHEN lease_hi > $9 THEN lease_hi END WHERE id = $10) SELECT k FROM u"#,
        );
    }

    #[test]
    fn sqlite_batch_writes_in_chunks_comparing_inputs_when_asked() {
        let target = WriteTarget {
            table: "users",
            key: "id",
            pending: "o IS NULL",
            outputs: &["o"],
            inputs: &["a", "b"],
        };
        let (head, tail) = sqlite_write::chunk(&target, true);
        same(
            head,
            r#"UPDATE users SET o = v.__o0 FROM (SELECT column1 AS __k, column2 AS __o0, column3 AS __i0, column4 AS __i1 FROM (VALUES "#,
        );
        same(
            tail,
            r#")) AS v WHERE users.id = v.__k AND (o IS NULL) AND users.a IS v.__i0 AND users.b IS v.__i1"#,
        );
        let (head, tail) = sqlite_write::chunk(&target, false);
        same(
            head,
            r#"UPDATE users SET o = v.__o0 FROM (SELECT column1 AS __k, column2 AS __o0 FROM (VALUES "#,
        );
        same(tail, r#")) AS v WHERE users.id = v.__k AND (o IS NULL)"#);
    }
}
