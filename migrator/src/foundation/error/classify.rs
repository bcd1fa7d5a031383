//! The one place that decides what a database error means for a retry: a timeout, a lost
//! connection, a conflict worth retrying, or a failure that would repeat.
//!
//! On PostgreSQL the decision comes from the error's SQLSTATE (Diesel 2.4's
//! [`DatabaseErrorInformation::sqlstate`](diesel::result::DatabaseErrorInformation::sqlstate)),
//! which does not depend on the server's `lc_messages`, and from Diesel's
//! [`DatabaseErrorKind`] (which libpq's client-side failures and SQLite's constraint codes map
//! to). Message text is read only as a fallback for errors that carry no code at all: libpq's
//! own messages when the connection broke before the server could answer, and SQLite's errors
//! (Diesel keeps SQLite's extended result code only for constraint violations; `SQLITE_BUSY`,
//! "no such table" and the like reach us as a message). See [`fallback`].

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What a database error means for the work that raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// SQLSTATE 57014 `query_canceled`: PostgreSQL's `statement_timeout` or an operator's
    /// `pg_cancel_backend`.
    Cancelled,
    /// SQLSTATE 55P03 `lock_not_available`: PostgreSQL's `lock_timeout` (or a `NOWAIT`).
    LockNotAvailable,
    /// The session is gone: class 08 (connection exception), 57P01 `admin_shutdown`
    /// (`pg_terminate_backend`, a fast shutdown), 57P02 `crash_shutdown`, 57P03
    /// `cannot_connect_now`, Diesel's `ClosedConnection` / `UnableToSendCommand`, or a
    /// transaction manager left broken by one of these.
    ConnectionLost,
    /// A conflict with other work that a retry may not meet: 40001 `serialization_failure`
    /// (also a standby's "conflict with recovery"), 40P01 `deadlock_detected`, SQLite's
    /// `database is locked`.
    Conflict,
    /// The same work would fail the same way again: a constraint violation (class 23), a data
    /// error (class 22), a syntax, permission or undefined-object error (class 42), an
    /// unsupported feature (0A), an invalid schema or catalog name (3D, 3F), a value Diesel
    /// cannot (de)serialize.
    Deterministic,
    /// Anything else.
    Other,
}

/// What `error` means (see [`Failure`]).
pub(crate) fn classify(error: &DieselError) -> Failure {
    match error {
        DieselError::DatabaseError(kind, info) => match info.sqlstate() {
            Some(code) => by_sqlstate(code.as_str()).unwrap_or_else(|| by_kind(*kind)),
            None => match by_kind(*kind) {
                Failure::Other => fallback(info.message()),
                known => known,
            },
        },
        DieselError::BrokenTransactionManager => Failure::ConnectionLost,
        DieselError::DeserializationError(_) | DieselError::SerializationError(_) => {
            Failure::Deterministic
        }
        _ => Failure::Other,
    }
}

/// PostgreSQL's SQLSTATE, when it says more than "other".
fn by_sqlstate(code: &str) -> Option<Failure> {
    Some(match code {
        "57014" => Failure::Cancelled,
        "55P03" => Failure::LockNotAvailable,
        "57P01" | "57P02" | "57P03" => Failure::ConnectionLost,
        "40001" | "40P01" => Failure::Conflict,
        _ => match code.get(..2)? {
            "08" => Failure::ConnectionLost,
            "22" | "23" | "42" | "0A" | "3D" | "3F" => Failure::Deterministic,
            _ => return None,
        },
    })
}

/// Diesel's kind: set from the SQLSTATE on PostgreSQL, from the extended result code for
/// SQLite's constraint violations, and by libpq's client for a lost connection.
fn by_kind(kind: DatabaseErrorKind) -> Failure {
    match kind {
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            Failure::ConnectionLost
        }
        DatabaseErrorKind::SerializationFailure => Failure::Conflict,
        DatabaseErrorKind::UniqueViolation
        | DatabaseErrorKind::ForeignKeyViolation
        | DatabaseErrorKind::NotNullViolation
        | DatabaseErrorKind::CheckViolation
        | DatabaseErrorKind::RestrictViolation
        | DatabaseErrorKind::ExclusionViolation => Failure::Deterministic,
        _ => Failure::Other,
    }
}

/// The documented fallback for an error without a SQLSTATE and with no kind Diesel could
/// tell: libpq's client-side messages (a connection that broke under a query) and SQLite's
/// messages (Diesel drops SQLite's result code except for constraint violations). Server
/// errors from PostgreSQL always carry a SQLSTATE and never get here.
fn fallback(message: &str) -> Failure {
    const LOST: [&str; 5] = [
        "server closed the connection",
        "no connection to the server",
        "could not receive data from server",
        "could not send data to server",
        "terminating connection",
    ];
    const SQLITE_BUSY: [&str; 2] = ["database is locked", "database table is locked"];
    const SQLITE_DETERMINISTIC: [&str; 6] = [
        "no such table",
        "no such column",
        "syntax error",
        "datatype mismatch",
        "constraint failed",
        "has no column named",
    ];
    let any = |needles: &[&str]| needles.iter().any(|needle| message.contains(needle));
    if any(&LOST) {
        Failure::ConnectionLost
    } else if any(&SQLITE_BUSY) {
        Failure::Conflict
    } else if any(&SQLITE_DETERMINISTIC) {
        Failure::Deterministic
    } else {
        Failure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::{by_sqlstate, classify, fallback, Failure};
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    #[test]
    fn sqlstates_keep_statement_and_lock_timeouts_apart() {
        assert_eq!(by_sqlstate("57014"), Some(Failure::Cancelled));
        assert_eq!(by_sqlstate("55P03"), Some(Failure::LockNotAvailable));
        for lost in ["57P01", "57P02", "57P03", "08000", "08006", "08003"] {
            assert_eq!(by_sqlstate(lost), Some(Failure::ConnectionLost), "{lost}");
        }
        assert_eq!(by_sqlstate("40001"), Some(Failure::Conflict));
        assert_eq!(by_sqlstate("40P01"), Some(Failure::Conflict));
        for repeats in ["23505", "22P02", "42P01", "42501", "0A000", "3F000"] {
            assert_eq!(
                by_sqlstate(repeats),
                Some(Failure::Deterministic),
                "{repeats}"
            );
        }
        assert_eq!(by_sqlstate("53100"), None);
        assert_eq!(by_sqlstate("5"), None);
    }

    #[test]
    fn kinds_and_the_message_fallback() {
        let error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        assert_eq!(
            classify(&error(DatabaseErrorKind::ClosedConnection, "x")),
            Failure::ConnectionLost
        );
        assert_eq!(
            classify(&error(DatabaseErrorKind::UnableToSendCommand, "x")),
            Failure::ConnectionLost
        );
        assert_eq!(
            classify(&error(
                DatabaseErrorKind::UniqueViolation,
                "UNIQUE constraint failed: t.id"
            )),
            Failure::Deterministic
        );
        assert_eq!(
            classify(&error(DatabaseErrorKind::Unknown, "database is locked")),
            Failure::Conflict
        );
        assert_eq!(
            classify(&error(DatabaseErrorKind::Unknown, "no such table: t")),
            Failure::Deterministic
        );
        assert_eq!(
            classify(&DieselError::BrokenTransactionManager),
            Failure::ConnectionLost
        );
        assert_eq!(classify(&DieselError::NotFound), Failure::Other);
        assert_eq!(
            fallback("server closed the connection unexpectedly"),
            Failure::ConnectionLost
        );
        // Without a code, no timeout is guessed from the text.
        assert_eq!(
            fallback("canceling statement due to statement timeout"),
            Failure::Other
        );
    }
}
