//! Names of the variables [`Config::from_env`](crate::Config::from_env) reads. Every variable
//! the library reads, with its concern, default and meaning, is listed once in
//! [`crate::config::variables::table`].

/// `development`, `staging` or `production` (required).
pub const ENVIRONMENT: &str = "ENVIRONMENT";
/// Run pending migrations when the application starts.
pub const AUTO_MIGRATE_ON_STARTUP: &str = "AUTO_MIGRATE_ON_STARTUP";
/// Must be true for migrations to run in production.
pub const ENABLE_PROD_MIGRATIONS: &str = "ENABLE_PROD_MIGRATIONS";
/// Ask for confirmation before migrating.
pub const MIGRATION_REQUIRE_CONFIRMATION: &str = "MIGRATION_REQUIRE_CONFIRMATION";
/// Back the database up before migrating.
pub const MIGRATION_BACKUP_BEFORE: &str = "MIGRATION_BACKUP_BEFORE";
/// How long a runner waits for another runner's migration lock, in seconds.
pub const MIGRATION_LOCK_TIMEOUT_SECS: &str = "MIGRATION_LOCK_TIMEOUT_SECS";
/// How often long migrations log their progress, in seconds.
pub const MIGRATION_PROGRESS_INTERVAL_SECS: &str = "MIGRATION_PROGRESS_INTERVAL_SECS";
/// Rows per batch of backfills (default 128).
pub const MIGRATION_BATCH_SIZE: &str = "MIGRATION_BATCH_SIZE";
/// Threads that compute an inline backfill, i.e. one that runs inside a migration (default: all
/// cores). The background workers' count is [`MIGRATION_BACKFILL_THREADS`].
pub const MIGRATION_INLINE_BACKFILL_THREADS: &str = "MIGRATION_INLINE_BACKFILL_THREADS";
/// The old name of [`MIGRATION_INLINE_BACKFILL_THREADS`], still read (with a deprecation warning
/// in the log) when the new name is not set.
pub const MIGRATION_WORKER_THREADS: &str = "MIGRATION_WORKER_THREADS";
/// Where backups go (default `./backups`).
pub const MIGRATION_BACKUP_DIR: &str = "MIGRATION_BACKUP_DIR";
/// The `pg_dump` to run (default: `pg_dump` from `PATH`).
pub const MIGRATION_PG_DUMP: &str = "MIGRATION_PG_DUMP";
/// The pending migration IDs an unattended deploy confirms, comma-separated.
pub const MIGRATION_CONFIRM: &str = "MIGRATION_CONFIRM";
/// A direct URL to PostgreSQL for the migration run (lock, DDL, backfill) when `DATABASE_URL`
/// goes through a transaction-pooling PgBouncer; the application keeps `DATABASE_URL`. Holds a
/// password: shown redacted, like `DATABASE_URL`. Read by
/// [`crate::Database::from_env`], not by [`crate::Config`].
pub const MIGRATION_DATABASE_URL: &str = "MIGRATION_DATABASE_URL";
/// PostgreSQL: the `lock_timeout` of every migration, in milliseconds (default 5000).
pub const MIGRATION_DDL_LOCK_TIMEOUT_MS: &str = "MIGRATION_DDL_LOCK_TIMEOUT_MS";
/// PostgreSQL: how often a migration that hit its `lock_timeout` is retried (default 10).
pub const MIGRATION_DDL_LOCK_RETRIES: &str = "MIGRATION_DDL_LOCK_RETRIES";
/// Background backfills are held while a PostgreSQL replica is more than this many seconds
/// behind (default 30).
pub const MIGRATION_MAX_REPLICA_LAG_SECS: &str = "MIGRATION_MAX_REPLICA_LAG_SECS";
/// Background backfills are held while a PostgreSQL replica is more than this many MB (MiB) of
/// WAL behind (default 256).
pub const MIGRATION_MAX_REPLICA_LAG_MB: &str = "MIGRATION_MAX_REPLICA_LAG_MB";
/// Comma-separated `application_name`s of WAL receivers whose lag counts although they are not
/// physical streaming standbys that replay (logical/CDC consumers, `pg_receivewal`).
pub const MIGRATION_REPLICA_LAG_INCLUDE: &str = "MIGRATION_REPLICA_LAG_INCLUDE";
/// Comma-separated `application_name`s of standbys whose lag never holds background backfills
/// (delayed standbys with `recovery_min_apply_delay`, which the primary cannot tell apart).
pub const MIGRATION_REPLICA_LAG_EXCLUDE: &str = "MIGRATION_REPLICA_LAG_EXCLUDE";

/// How a migration's backfill runs: `inline`, `background` or `auto` (default).
pub const MIGRATION_BACKFILL: &str = "MIGRATION_BACKFILL";
/// `auto`: how long a backfill works inline before the rest goes to the background, in seconds
/// (default 30).
pub const MIGRATION_INLINE_BACKFILL_SECS: &str = "MIGRATION_INLINE_BACKFILL_SECS";
/// Background worker threads per process (default: half the cores, at least 1; 0 disables).
pub const MIGRATION_BACKFILL_THREADS: &str = "MIGRATION_BACKFILL_THREADS";
/// Milliseconds every background worker sleeps between batches (default 0).
pub const MIGRATION_BACKFILL_PAUSE_MS: &str = "MIGRATION_BACKFILL_PAUSE_MS";
/// The duration a background batch aims at, in milliseconds (default 1000): the batch size
/// adapts to it.
pub const MIGRATION_BATCH_TARGET_MS: &str = "MIGRATION_BATCH_TARGET_MS";

/// Every variable above, and `DATABASE_URL`.
pub const ALL: [&str; 26] = [
    ENVIRONMENT,
    AUTO_MIGRATE_ON_STARTUP,
    ENABLE_PROD_MIGRATIONS,
    MIGRATION_REQUIRE_CONFIRMATION,
    MIGRATION_BACKUP_BEFORE,
    MIGRATION_LOCK_TIMEOUT_SECS,
    MIGRATION_PROGRESS_INTERVAL_SECS,
    MIGRATION_BATCH_SIZE,
    MIGRATION_INLINE_BACKFILL_THREADS,
    MIGRATION_WORKER_THREADS,
    MIGRATION_BACKUP_DIR,
    MIGRATION_PG_DUMP,
    MIGRATION_CONFIRM,
    MIGRATION_DATABASE_URL,
    MIGRATION_DDL_LOCK_TIMEOUT_MS,
    MIGRATION_DDL_LOCK_RETRIES,
    MIGRATION_BACKFILL,
    MIGRATION_INLINE_BACKFILL_SECS,
    MIGRATION_BACKFILL_THREADS,
    MIGRATION_BACKFILL_PAUSE_MS,
    MIGRATION_BATCH_TARGET_MS,
    MIGRATION_MAX_REPLICA_LAG_SECS,
    MIGRATION_MAX_REPLICA_LAG_MB,
    MIGRATION_REPLICA_LAG_INCLUDE,
    MIGRATION_REPLICA_LAG_EXCLUDE,
    "DATABASE_URL",
];
