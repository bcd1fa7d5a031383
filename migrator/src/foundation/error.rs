//! The crate's one error type; [`classify`] tells what a database error means.

use std::time::Duration;

use crate::foundation::report::Report;

mod classify;

use classify::{classify, Failure};

/// A `Result` whose error defaults to [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `": CAUSE"` after a message when a lower error is kept as its source, else nothing.
fn and_source(source: &Option<Box<dyn std::error::Error + Send + Sync + 'static>>) -> String {
    source
        .as_ref()
        .map(|source| format!(": {source}"))
        .unwrap_or_default()
}

/// What kind of failure an [`enum@Error`] is, to match on ([`Error::kind`]); the error itself
/// carries the details and, through [`source`](std::error::Error::source), the cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A variable, URL, migration ID or backfill definition is wrong (exit code 2).
    Configuration,
    /// The environment policy refused to run (exit code 3).
    Refused,
    /// A migration failed (the error's message names the cause).
    MigrationFailed,
    /// Migration code returned its own error ([`Error::custom`]).
    Custom,
    /// Migration code panicked.
    Panic,
    /// The migration lock, or a table lock a migration's DDL needed, was not taken in time.
    LockTimeout,
    /// The connection or the migration lock was lost: a fresh attempt may succeed.
    ConnectionLost,
    /// PostgreSQL cancelled a statement: its `statement_timeout` (SQLSTATE 57014, also an
    /// operator's `pg_cancel_backend`) or its `lock_timeout` (55P03).
    Timeout,
    /// Any other error of the database.
    Database,
    /// Anything else (backups, backfills, hashing, the tracking table's contents, the test
    /// support).
    Other,
}

/// Everything that can go wrong in migrator.
///
/// Messages are lowercase, name the migration and the cause, and never contain a database
/// password. [`Error::report`] gives what a run did before it stopped.
///
/// A database's error is shown with every value from a row or a statement redacted (a
/// PostgreSQL `DETAIL`, a quoted literal, the statement near a SQLite syntax error), in
/// `Display` and `Debug` alike: these texts reach `applied_migrations.error_message`, logs and
/// pages. The driver's error is still the [`source`](std::error::Error::source) (Diesel's,
/// r2d2's, the I/O error), for matching and downcasting; its own `Display` is the driver's raw
/// text, unredacted, so code that prints a whole chain of causes must not print the source of
/// a database error where a value must not appear.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable has a value migrator does not accept.
    #[error("invalid {variable} value {value:?}: expected {expected}")]
    InvalidVariable {
        /// The variable, e.g. `AUTO_MIGRATE_ON_STARTUP`.
        variable: &'static str,
        /// The value found (these variables hold no secrets).
        value: String,
        /// What it accepts.
        expected: &'static str,
    },

    /// A numeric environment variable is outside the range migrator accepts.
    #[error("invalid {variable} value {value}: expected a whole number from {min} to {max}{why}")]
    VariableOutOfRange {
        /// The variable, e.g. `ARGON2_ITERATIONS`.
        variable: &'static str,
        /// The value found.
        value: u32,
        /// The smallest value accepted (with the other variables as they are).
        min: u32,
        /// The largest value accepted.
        max: u32,
        /// Why the range is what it is, when it depends on another variable (else empty).
        why: &'static str,
    },

    /// A required environment variable is not set.
    #[error("{variable} is not set: expected {expected}")]
    MissingVariable {
        /// The variable, e.g. `ENVIRONMENT`.
        variable: &'static str,
        /// What it accepts.
        expected: &'static str,
    },

    /// `DATABASE_URL` (or a URL given in code) or `MIGRATION_DATABASE_URL` (see
    /// [`crate::Database::with_migration_url`]) cannot be used.
    #[error("invalid {variable} {url}: {reason}")]
    InvalidDatabaseUrl {
        /// Which: `DATABASE_URL` or `MIGRATION_DATABASE_URL`.
        variable: &'static str,
        /// The URL, redacted (or `<not shown>` where no password could be told apart).
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The migration lock's PostgreSQL session does not stay on one server connection: a
    /// pooler in transaction pooling mode (PgBouncer's `pool_mode = transaction`) stands
    /// between migrator and PostgreSQL, and a session advisory lock cannot hold there. Found
    /// before the lock is taken, nothing was migrated; found by the lock's periodic check, the
    /// running migration stopped. Set `MIGRATION_DATABASE_URL` to a direct URL.
    #[error("the migration lock cannot hold through {url}: its PostgreSQL session moves between server connections, as behind PgBouncer in transaction pooling mode (pool_mode = transaction). Set MIGRATION_DATABASE_URL to a direct URL to PostgreSQL (or to a session-mode pool) for the migration run; the application keeps DATABASE_URL")]
    TransactionPooling {
        /// The redacted URL the lock session went through.
        url: String,
    },

    /// The database could not be reached or refused the connection.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// The driver's error, rebuilt with its texts scrubbed of the password (libpq may quote
        /// the URL, password included): `BadConnection` with the server's or libpq's message,
        /// `InvalidConnectionUrl`; a failed set-up query's error is redacted into
        /// `BadConnection`.
        #[source]
        source: diesel::ConnectionError,
    },

    /// No pooled connection became available.
    #[error("cannot get a database connection from the pool: {0}")]
    Pool(#[from] r2d2::Error),

    /// A query failed: one of migrator's own (`context` says what it was doing), or one in
    /// migration code, converted by `?` (`context` is empty).
    #[error("{context}{}{}", if context.is_empty() { "" } else { ": " }, crate::foundation::redact::DatabaseError(.source))]
    Database {
        /// What migrator was doing; empty for a query of migration code.
        context: String,
        /// The database's error.
        #[source]
        source: diesel::result::Error,
    },

    /// Diesel's SQL migrations failed.
    #[error("diesel SQL migrations failed: {source}")]
    SqlMigrations {
        /// Diesel's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// Two registered migrations share one ID.
    #[error("duplicate migration ID {id}: registered at {first} and at {second}")]
    DuplicateMigration {
        /// The ID.
        id: String,
        /// `file:line` of one registration.
        first: String,
        /// `file:line` of the other.
        second: String,
    },

    /// An operator named a migration this binary does not contain.
    #[error("unknown migration {id}: this binary contains no migration with that ID")]
    UnknownMigration {
        /// The ID given.
        id: String,
    },

    /// A migration registered by hand (not through the macro) has a malformed ID.
    #[error("invalid migration ID {id:?} at {location}: expected three or more digits, an underscore, then lowercase letters, digits and underscores")]
    InvalidMigrationId {
        /// The ID.
        id: String,
        /// `file:line` of the registration.
        location: String,
    },

    /// A migration failed; its transaction (if any) was rolled back and a `failed` row written.
    #[error("migration {id} failed: {cause}")]
    MigrationFailed {
        /// The migration's ID.
        id: String,
        /// Why, as recorded in `applied_migrations.error_message`; also the
        /// [`source`](std::error::Error::source) (a `Box<Error>`).
        #[source]
        cause: Box<Error>,
        /// What the run did up to the failure.
        report: Box<Report>,
    },

    /// A migration function returned an error of its own ([`Error::msg`], [`Error::custom`]).
    /// Only for migration code (and a backfill's computation): migrator never raises a
    /// `Custom` error itself.
    #[error("{0}")]
    Custom(Box<dyn std::error::Error + Send + Sync + 'static>),

    /// A run stopped under its lock for another reason than a failed migration (a refusal of
    /// the confirmation, a backup failing, the migration lock lost between two migrations, no
    /// connection for the next one), after doing what `report` lists. [`Error::kind`], [`Error::migration_id`] and the `is_*`
    /// methods answer for the `cause`; its message is the cause's. Made by
    /// [`Error::with_report`]; [`Error::without_report`] gives the cause to match on.
    #[error("{cause}")]
    Stopped {
        /// Why the run stopped (also the [`source`](std::error::Error::source)).
        #[source]
        cause: Box<Error>,
        /// What the run did before it stopped.
        report: Box<Report>,
    },

    /// The test support (the `testing` feature's harness, the stepped worker of the protocol
    /// tests) cannot do what was asked: no PostgreSQL server could be started, a template
    /// database could not be built, the test asks for something its set-up does not give.
    #[error("{reason}")]
    Testing {
        /// What failed and how to fix it (a database URL in it is redacted).
        reason: String,
    },

    /// A migration function panicked.
    #[error("panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },

    /// `applied_migrations` holds a value migrator does not understand.
    #[error("applied_migrations row {migration}: {reason}")]
    Tracking {
        /// The `migration_name` of the row.
        migration: String,
        /// What is wrong with it.
        reason: String,
    },

    /// PostgreSQL: no `applied_migrations` is visible on `search_path` and no schema on it
    /// exists (`current_schema()` is NULL), so there is nowhere to create the table.
    #[error("cannot create the applied_migrations table: no schema on search_path exists (current_schema() is NULL); create one or set search_path")]
    NoTrackingSchema,

    /// A backup before migrating failed; nothing was migrated.
    #[error("backup failed, nothing was migrated: {context}{}", and_source(.source))]
    Backup {
        /// What failed, or why a backup cannot be taken at all (an in-memory SQLite database).
        context: String,
        /// The lower error, when there is one: the I/O error, the database's error (an
        /// [`enum@Error`], redacted), `pg_dump`'s exit status with its standard error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A backfill is misconfigured or cannot progress.
    #[error("backfill of {table}: {reason}{}", and_source(.source))]
    Backfill {
        /// The table.
        table: String,
        /// Why.
        reason: String,
        /// The lower error, when there is one (the worker threads could not be started).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A named background backfill is unknown, misconfigured, or cannot change state.
    #[error("backfill {name}: {reason}{}", and_source(.source))]
    BackgroundBackfill {
        /// The backfill's name.
        name: String,
        /// Why.
        reason: String,
        /// The lower error, when there is one (its definition could not be built: the
        /// [`enum@Error`] its builder returned).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// Hashing a password failed (bad parameters, no OS randomness).
    #[error("password hashing failed: {context}: {source}")]
    Hashing {
        /// What failed.
        context: String,
        /// Why: the Argon2 engine's error (`migrator_hasher::Error`), the argon2 or
        /// password-hash crate's, the OS random number generator's, or the parameter out of
        /// bounds.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A stored password hash cannot be parsed.
    #[error("invalid password hash: {reason}{}", and_source(.source))]
    InvalidPasswordHash {
        /// Why (never the hash or the password).
        reason: String,
        /// The password-hash or argon2 crate's error, when one tells more.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// Another runner held the migration lock for longer than the lock timeout.
    #[error("timed out after {}s waiting for the migration lock{}; raise MIGRATION_LOCK_TIMEOUT_SECS or stop the holder", waited.as_secs(), holder.as_deref().map(|h| format!(" (held by {h})")).unwrap_or_default())]
    LockTimeout {
        /// How long this runner waited.
        waited: Duration,
        /// Who held it, when known.
        holder: Option<String>,
    },

    /// PostgreSQL: a migration's statement could not take a table lock within
    /// `MIGRATION_DDL_LOCK_TIMEOUT_MS` (`lock_timeout`) on any of its attempts.
    #[error("could not take a table lock within the lock timeout of {} ms (MIGRATION_DDL_LOCK_TIMEOUT_MS) in {attempts} attempt(s); {blockers}; raise MIGRATION_DDL_LOCK_TIMEOUT_MS or MIGRATION_DDL_LOCK_RETRIES, or end the blocking session ({cause})", timeout.as_millis())]
    DdlLockTimeout {
        /// The lock timeout of each attempt.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The sessions that blocked the last attempt (pid, state, wait event, age, `application_name`,
        /// lock mode; never their statements), as seen while it
        /// waited, or that none was seen.
        blockers: String,
        /// The database's error of the last attempt.
        #[source]
        cause: Box<Error>,
    },

    /// The migration lock was lost during the run (its PostgreSQL session ended); the run
    /// stopped without recording anything further.
    #[error("the migration lock was lost ({lock}); stopped: another runner may now be migrating")]
    LockLost {
        /// Which lock.
        lock: String,
    },

    /// An operation of the operating system failed: the migration lock's file could not be
    /// taken for a reason other than another holder, a worker thread or a signal handler could
    /// not be started, output could not be written.
    #[error("{context}: {source}")]
    Io {
        /// What migrator was doing, e.g. `cannot take the migration lock "/data/app.db.lock"`.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The environment policy forbids running (production not enabled, confirmation or backup
    /// required but not available).
    #[error("refused by policy: {reason}")]
    Refused {
        /// Which variable refuses, and how to allow it.
        reason: String,
    },

    /// A transactional migration asked for the pool (`ctx.pool()`, `ctx.database()`): work
    /// through it would escape the migration's transaction (committed even when the migration
    /// fails or is rehearsed by `up --dry-run`) and could wait forever on the migration's own
    /// locks.
    #[error("migration {migration} uses the connection pool inside its transaction: work through the pool would escape the transaction (committed even by a rollback or `up --dry-run`) and can wait forever on the migration's own locks; declare it #[migration(\"{migration}\", transaction = false)] to use ctx.pool() or ctx.database()")]
    PoolInTransaction {
        /// The migration's ID.
        migration: String,
    },
}

impl From<diesel::result::Error> for Error {
    /// A query of migration code that failed, as [`Error::Database`] without a context.
    fn from(source: diesel::result::Error) -> Error {
        Error::Database {
            context: String::new(),
            source,
        }
    }
}

impl std::fmt::Debug for Error {
    /// Like `Display` (values redacted), with the variant's name for the database errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::foundation::redact::DatabaseError;
        match self {
            Error::Database { context, source } => f
                .debug_struct("Database")
                .field("context", context)
                .field("source", &DatabaseError(source))
                .finish(),
            Error::MigrationFailed { id, cause, report } => f
                .debug_struct("MigrationFailed")
                .field("id", id)
                .field("cause", cause)
                .field("report", report)
                .finish(),
            Error::Stopped { cause, report } => f
                .debug_struct("Stopped")
                .field("cause", cause)
                .field("report", report)
                .finish(),
            other => f.debug_tuple("Error").field(&other.to_string()).finish(),
        }
    }
}

impl Error {
    /// What kind of failure this is. A failed migration is [`ErrorKind::MigrationFailed`]
    /// whatever its cause.
    ///
    /// ```
    /// let e = migrator::Error::msg("my migration's own check failed");
    /// assert_eq!(e.kind(), migrator::ErrorKind::Custom);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Stopped { cause, .. } => cause.kind(),
            Error::Refused { .. } => ErrorKind::Refused,
            Error::MigrationFailed { .. } => ErrorKind::MigrationFailed,
            Error::Custom(_) => ErrorKind::Custom,
            Error::Panic { .. } => ErrorKind::Panic,
            Error::LockTimeout { .. } | Error::DdlLockTimeout { .. } => ErrorKind::LockTimeout,
            _ if self.is_configuration() => ErrorKind::Configuration,
            _ if self.is_connection_lost() => ErrorKind::ConnectionLost,
            _ if self.is_timeout() => ErrorKind::Timeout,
            _ if self.database_source().is_some() => ErrorKind::Database,
            _ => ErrorKind::Other,
        }
    }

    /// An error from migration code, for causes that are not database errors.
    ///
    /// ```
    /// let err = migrator::Error::msg("user 42 has no email");
    /// assert_eq!(err.to_string(), "user 42 has no email");
    /// ```
    pub fn msg(message: impl std::fmt::Display) -> Error {
        Error::Custom(message.to_string().into())
    }

    /// Wraps any error from migration code.
    pub fn custom(error: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Custom(Box::new(error))
    }

    /// What the run did before it failed, when the error comes from a run that had started
    /// working (taken its backup, applied a migration): a failed migration's, or any other
    /// error's that stopped the run ([`Error::with_report`]).
    pub fn report(&self) -> Option<&Report> {
        match self {
            Error::MigrationFailed { report, .. } | Error::Stopped { report, .. } => Some(report),
            _ => None,
        }
    }

    /// This error with `report`, what the run did before it: a failed migration's report is
    /// replaced, any other error becomes [`Error::Stopped`] (its kind, message and exit code
    /// those of the error).
    ///
    /// ```
    /// use migrator::{report::Report, Error, ErrorKind};
    /// let lost = Error::LockLost { lock: "the migration lock".into() };
    /// let stopped = lost.with_report(Report::default());
    /// assert!(stopped.report().is_some());
    /// assert_eq!(stopped.kind(), ErrorKind::ConnectionLost);
    /// assert!(matches!(stopped.without_report(), Error::LockLost { .. }));
    /// ```
    pub fn with_report(self, report: Report) -> Error {
        match self {
            Error::MigrationFailed { id, cause, .. } => Error::MigrationFailed {
                id,
                cause,
                report: Box::new(report),
            },
            Error::Stopped { cause, .. } => Error::Stopped {
                cause,
                report: Box::new(report),
            },
            cause => Error::Stopped {
                cause: Box::new(cause),
                report: Box::new(report),
            },
        }
    }

    /// The error itself, seen through [`Error::Stopped`], to match its variant.
    pub fn without_report(&self) -> &Error {
        match self {
            Error::Stopped { cause, .. } => cause.without_report(),
            other => other,
        }
    }

    /// The ID of the migration that failed, if this error is a migration failure.
    pub fn migration_id(&self) -> Option<&str> {
        match self {
            Error::MigrationFailed { id, .. } => Some(id),
            Error::Stopped { cause, .. } => cause.migration_id(),
            _ => None,
        }
    }

    /// Whether the error is a configuration or usage problem (exit code 2 in the CLI).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self.without_report(),
            Error::InvalidVariable { .. }
                | Error::VariableOutOfRange { .. }
                | Error::MissingVariable { .. }
                | Error::InvalidDatabaseUrl { .. }
                | Error::TransactionPooling { .. }
                | Error::DuplicateMigration { .. }
                | Error::InvalidMigrationId { .. }
                | Error::UnknownMigration { .. }
                | Error::BackgroundBackfill { .. }
        )
    }

    /// Whether the environment policy refused to run (exit code 3 in the CLI).
    pub fn is_refusal(&self) -> bool {
        matches!(self.without_report(), Error::Refused { .. })
    }

    /// The database error this error carries (directly or as the cause of a failed DDL
    /// attempt), if any.
    fn database_source(&self) -> Option<&diesel::result::Error> {
        match self {
            Error::Database { source, .. } => Some(source),
            Error::DdlLockTimeout { cause, .. } | Error::Stopped { cause, .. } => {
                cause.database_source()
            }
            _ => None,
        }
    }

    /// What the database error this error carries means (see [`classify`]).
    fn failure(&self) -> Option<Failure> {
        self.database_source().map(classify)
    }

    /// Whether this is PostgreSQL's `lock_timeout` (SQLSTATE 55P03 `lock_not_available`), not a
    /// statement timeout or a cancel (57014).
    pub(crate) fn is_lock_not_available(&self) -> bool {
        self.failure() == Some(Failure::LockNotAvailable)
    }

    /// Whether PostgreSQL cancelled a statement: its `statement_timeout` or an operator's
    /// `pg_cancel_backend` (SQLSTATE 57014 `query_canceled`), or its `lock_timeout` (55P03
    /// `lock_not_available`). Told by the SQLSTATE, never by the message.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.failure(),
            Some(Failure::Cancelled | Failure::LockNotAvailable)
        )
    }

    /// Whether the error is a lost connection or a lost migration lock (a session terminated
    /// by an operator, a failover, a network cut): running again on a fresh connection may
    /// succeed, e.g. an application's start-up migrations. A failed migration counts when its
    /// cause does. A database error counts by its SQLSTATE (class 08, 57P01–57P03) or Diesel's
    /// kind (see `error/classify.rs`).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::LockLost { .. } | Error::Connect { .. } | Error::Pool(_) => true,
            Error::MigrationFailed { cause, .. } | Error::Stopped { cause, .. } => {
                cause.is_connection_lost()
            }
            _ => self.failure() == Some(Failure::ConnectionLost),
        }
    }

    /// Whether the same work would fail the same way if retried: a constraint violation, a
    /// missing permission, a type or syntax error, an undefined table or column, or a
    /// backfill's computation that returns the wrong shape. Connection losses, timeouts,
    /// cancellations, deadlocks and serialization failures are transient.
    pub fn is_deterministic(&self) -> bool {
        matches!(self.without_report(), Error::Backfill { .. })
            || self.failure() == Some(Failure::Deterministic)
    }

    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(diesel::result::Error) -> Error {
        let context = context.into();
        move |source| Error::Database { context, source }
    }

    /// An [`Error::Io`] with what migrator was doing.
    #[cfg_attr(
        not(any(feature = "backfill", feature = "testing")),
        allow(
            dead_code,
            reason = "the workers' threads and signals, the harness's fixtures"
        )
    )]
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The message of a caught panic (`catch_unwind`, a joined thread): the `&str` or `String` it
/// was raised with, or a placeholder for any other payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn panic_message_reads_str_and_string_payloads() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert_eq!(panic_message(&*literal), "boom");
        let formatted = std::panic::catch_unwind(|| panic!("row {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "row 7");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(42_u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "a non-string panic payload");
    }

    #[test]
    fn kinds() {
        use super::{Error, ErrorKind, Report};
        let timeout = Error::LockTimeout {
            waited: std::time::Duration::from_secs(1),
            holder: None,
        };
        assert_eq!(timeout.kind(), ErrorKind::LockTimeout);
        assert_eq!(Error::msg("no").kind(), ErrorKind::Custom);
        let closed = Error::from(diesel::result::Error::BrokenTransactionManager);
        assert_eq!(closed.kind(), ErrorKind::ConnectionLost);
        let failed = Error::MigrationFailed {
            id: "001_x".into(),
            cause: Box::new(closed),
            report: Box::new(Report::default()),
        };
        assert_eq!(failed.kind(), ErrorKind::MigrationFailed);
    }

    #[test]
    fn a_report_attaches_to_any_error_and_is_seen_through() {
        use super::{Error, ErrorKind, Report};
        let mut applied = Report::default();
        applied.sql_migrations.push("2026-01-01-000000_init".into());
        let refused = Error::Refused {
            reason: "ENABLE_PROD_MIGRATIONS is false".into(),
        };
        let message = refused.to_string();
        let stopped = refused.with_report(applied.clone());
        assert_eq!(stopped.report(), Some(&applied));
        assert_eq!(stopped.kind(), ErrorKind::Refused);
        assert!(stopped.is_refusal() && !stopped.is_configuration());
        assert_eq!(stopped.to_string(), message);
        assert!(matches!(stopped.without_report(), Error::Refused { .. }));
        assert_eq!(stopped.migration_id(), None);
        // Attached again, it replaces the report rather than wrapping twice.
        let again = stopped.with_report(Report::default());
        assert!(
            matches!(&again, Error::Stopped { cause, .. } if matches!(**cause, Error::Refused { .. }))
        );
        assert_eq!(again.report(), Some(&Report::default()));
        // A failed migration's own report is replaced; it stays a migration failure.
        let failed = Error::MigrationFailed {
            id: "001_x".into(),
            cause: Box::new(Error::msg("no")),
            report: Box::new(Report::default()),
        }
        .with_report(applied.clone());
        assert_eq!(failed.kind(), ErrorKind::MigrationFailed);
        assert_eq!(failed.migration_id(), Some("001_x"));
        assert_eq!(failed.report(), Some(&applied));
        // A database error's class is seen through too.
        let closed = Error::from(diesel::result::Error::BrokenTransactionManager)
            .with_report(Report::default());
        assert_eq!(closed.kind(), ErrorKind::ConnectionLost);
        assert!(closed.is_connection_lost());
    }

    #[test]
    fn lower_errors_are_kept_as_sources() {
        use super::Error;
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let backup = Error::Backup {
            context: "cannot create the backup directory /b".into(),
            source: Some(Box::new(io)),
        };
        assert_eq!(
            backup.to_string(),
            "backup failed, nothing was migrated: cannot create the backup directory /b: denied"
        );
        let source = backup.source().expect("the I/O error");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        let alone = Error::Backup {
            context: "an in-memory SQLite database cannot be backed up".into(),
            source: None,
        };
        assert_eq!(
            alone.to_string(),
            "backup failed, nothing was migrated: an in-memory SQLite database cannot be backed up"
        );
        assert!(alone.source().is_none());
        let query = Error::from(diesel::result::Error::NotFound);
        assert_eq!(query.to_string(), "Record not found");
        assert!(query
            .source()
            .and_then(|s| s.downcast_ref::<diesel::result::Error>())
            .is_some());
    }
}
