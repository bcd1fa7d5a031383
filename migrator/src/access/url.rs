//! `DATABASE_URL` parsing: the backend from the scheme, and a redacted form for every message.

use std::fmt;

use crate::access::pg_url::PgUrl;
use crate::foundation::error::{Error, Result};

/// The database engines migrator runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// PostgreSQL (`postgres://` or `postgresql://`): production.
    Postgres,
    /// SQLite (`sqlite://PATH`), bundled: the embedded default.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        })
    }
}

/// A parsed `DATABASE_URL`.
///
/// A PostgreSQL URL is read as libpq reads it (a user name and password only before the first
/// `/`) and printed again from its parts: its `Display` and `Debug` show the redacted form,
/// with the password, the `password`, `sslpassword` and `oauth_client_secret` parameters and
/// any query parameter libpq does not know replaced by `***`. A URL whose password cannot be
/// told apart (an unencoded `@`, `/` or `?`) is refused, showing nothing after the scheme. The
/// URL with its password is only handed to the database driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    backend: Backend,
    redacted: String,
    secrets: Vec<String>,
}

const ACCEPTED: &str = "expected postgres://USER:PASSWORD@HOST:PORT/DATABASE, \
                        postgresql://... or sqlite://PATH";

impl DatabaseUrl {
    /// Parses a URL; the error never contains the password.
    pub fn parse(url: &str) -> Result<DatabaseUrl> {
        let invalid = |shown: String, reason: String| Error::InvalidDatabaseUrl {
            variable: "DATABASE_URL",
            url: shown,
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            // Without a scheme nothing tells which part is a password: show nothing of it.
            return Err(invalid(
                "<not shown>".into(),
                format!("no scheme: {ACCEPTED}"),
            ));
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            let scheme = if is_scheme(scheme) {
                scheme
            } else {
                "<not shown>"
            };
            return Err(invalid(
                format!("{scheme}://<not shown>"),
                "it contains whitespace or control characters".into(),
            ));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let pg = PgUrl::parse(scheme, rest)
                    .map_err(|reason| invalid(format!("{scheme}://<not shown>"), reason.into()))?;
                let redacted = pg.redacted();
                if let Err(reason) = pg.check() {
                    return Err(invalid(redacted, reason));
                }
                Ok(DatabaseUrl {
                    raw: url.to_owned(),
                    backend: Backend::Postgres,
                    redacted,
                    secrets: pg.secrets(),
                })
            }
            "sqlite" => {
                if rest.is_empty() {
                    return Err(invalid(
                        url.to_owned(),
                        "no file path: use sqlite://PATH (e.g. sqlite://app.db, \
                         sqlite:///var/lib/app.db) or sqlite://:memory:"
                            .into(),
                    ));
                }
                Ok(DatabaseUrl {
                    raw: url.to_owned(),
                    backend: Backend::Sqlite,
                    redacted: url.to_owned(),
                    secrets: Vec::new(),
                })
            }
            _ if is_scheme(scheme) => Err(invalid(
                format!("{scheme}://<not shown>"),
                format!("unsupported scheme {scheme:?}: {ACCEPTED}"),
            )),
            // Not a scheme at all (e.g. `user:pass://...`): show nothing of it.
            _ => Err(invalid(
                "<not shown>".into(),
                format!("no valid scheme: {ACCEPTED}"),
            )),
        }
    }

    /// The backend the scheme names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with its password replaced by `***`: safe to print.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The SQLite file path (`None` for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&str> {
        match self.backend {
            Backend::Sqlite => self.raw.split_once("://").map(|(_, path)| path),
            Backend::Postgres => None,
        }
    }

    /// Whether this is an in-memory SQLite database (one database per connection).
    pub fn is_sqlite_memory(&self) -> bool {
        self.sqlite_path() == Some(":memory:")
    }

    /// The URL as the driver needs it, password included. Never print it.
    pub(crate) fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL without its password (for a tool's arguments), and the password (for the tool's
    /// environment, e.g. `PGPASSWORD`), percent-decoded.
    pub(crate) fn split_password(&self) -> (String, Option<String>) {
        let parts = self
            .raw
            .split_once("://")
            .and_then(|(scheme, rest)| PgUrl::parse(scheme, rest).ok());
        match parts {
            Some(parts) if self.backend == Backend::Postgres => parts.without_password(),
            // Not reached for a parsed PostgreSQL URL; never hand out the raw URL.
            _ => (self.redacted.clone(), None),
        }
    }

    /// The same PostgreSQL server and credentials, naming database `dbname` (`None` for
    /// SQLite).
    #[cfg(feature = "testing")]
    pub(crate) fn with_database(&self, dbname: &str) -> Option<DatabaseUrl> {
        let (scheme, rest) = self.raw.split_once("://")?;
        let parts = PgUrl::parse(scheme, rest).ok()?;
        if self.backend != Backend::Postgres {
            return None;
        }
        DatabaseUrl::parse(&parts.with_database(dbname)).ok()
    }

    /// `text` with every secret of this URL replaced by `***` (for driver error messages).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.redacted);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

/// Whether `text` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        for url in ["postgres://u:p@h/db", "postgresql://h/db", "POSTGRES://h"] {
            assert_eq!(
                DatabaseUrl::parse(url).unwrap().backend(),
                Backend::Postgres
            );
        }
        let sqlite = DatabaseUrl::parse("sqlite://data/app.db").unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        assert_eq!(sqlite.sqlite_path(), Some("data/app.db"));
        assert_eq!(
            DatabaseUrl::parse("sqlite:///abs/app.db")
                .unwrap()
                .sqlite_path(),
            Some("/abs/app.db")
        );
    }

    #[test]
    fn redaction() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cr%40t@db:5432/prod?password=other&sslmode=require",
        )
        .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db:5432/prod?password=***&sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(
            url.scrub("bad s3cr@t and s3cr%40t, other"),
            "bad *** and ***, ***"
        );
    }

    #[test]
    fn unencoded_slashes_and_question_marks_stay_secret() {
        for url in [
            "postgres://app:Zx9+/Qw==@db/prod",
            "postgres://app:1234/x@db/prod",
            "postgres://app:a?b@db:5432/prod?sslmode=require",
            "postgres://app:p@ss@db/prod",
        ] {
            let err = DatabaseUrl::parse(url).unwrap_err().to_string();
            for secret in ["Zx9+/Qw==", "1234/x", "a?b", "p@ss"] {
                assert!(!err.contains(secret), "{url} -> {err}");
            }
            assert!(err.contains("percent-encode"), "{err}");
        }
        let encoded = DatabaseUrl::parse("postgres://app:Zx9+%2FQw==@db/prod").unwrap();
        assert_eq!(encoded.redacted(), "postgres://app:***@db/prod");
        assert_eq!(encoded.split_password().1.as_deref(), Some("Zx9+/Qw=="));
        assert_eq!(
            encoded.scrub("failed for Zx9+/Qw== and Zx9+%2FQw=="),
            "failed for *** and ***"
        );
    }

    #[test]
    fn a_password_in_the_query_after_a_path_is_read_as_libpq_reads_it() {
        // The user info ends before the first '/': the '@' belongs to the query's password.
        let url = DatabaseUrl::parse("postgresql://host/db?user=app&password=p@ss").unwrap();
        assert_eq!(url.redacted(), "postgresql://host/db?user=app&password=***");
        assert_eq!(
            url.split_password(),
            ("postgresql://host/db?user=app".into(), Some("p@ss".into()))
        );
        assert_eq!(url.scrub("no p@ss here"), "no *** here");
        // Without the '/', libpq would read "host?user=app&password=p" as a user name.
        let err = DatabaseUrl::parse("postgresql://host?user=app&password=p@ss")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("p@ss") && !err.contains("password=p"),
            "{err}"
        );
        assert!(err.contains("percent-encode"), "{err}");
        // Other secret parameters, unknown ones and non-numeric ports are not shown either.
        let url = DatabaseUrl::parse(
            "postgres://[::1]:5432,db:5433/app?sslpassword=k3y&sslmode=require&pw=x",
        )
        .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://[::1]:5432,db:5433/app?sslpassword=***&sslmode=require&***"
        );
        let err = DatabaseUrl::parse("postgres://app:s3cret@db:s3/app")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3"), "{err}");
    }

    #[test]
    fn password_split_for_tools() {
        let url =
            DatabaseUrl::parse("postgres://app:p%40ss@db:5432/prod?sslmode=require&password=x")
                .unwrap();
        assert_eq!(
            url.split_password(),
            (
                "postgres://app@db:5432/prod?sslmode=require".into(),
                Some("p@ss".into())
            )
        );
        let url = DatabaseUrl::parse("postgres://db/prod?password=only").unwrap();
        assert_eq!(
            url.split_password(),
            ("postgres://db/prod".into(), Some("only".into()))
        );
    }

    #[test]
    fn errors_never_echo_the_password() {
        for bad in [
            "mysql://root:hunter2@db/app",
            "root:hunter2@db/app",
            "postgres://root:hunter2@db:99999/app",
            "postgres://root:hunter2@x@db/app",
            "postgres://root:hunter2 @db/app",
            "sqlite://",
            "",
        ] {
            let err = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{bad} -> {err}");
            assert!(
                err.contains("DATABASE_URL") || err.contains("database URL"),
                "{err}"
            );
        }
    }

    /// The test harness names its databases on the server of `MIGRATOR_TEST_DATABASE_URL`:
    /// credentials and parameters are kept, the password is still hidden.
    #[cfg(feature = "testing")]
    #[test]
    fn with_database_keeps_credentials_and_parameters() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db:5433/app?sslmode=require").unwrap();
        let other = url.with_database("migrator_test_1").unwrap();
        assert_eq!(
            other.expose(),
            "postgres://app:s3cret@db:5433/migrator_test_1?sslmode=require"
        );
        assert!(!other.redacted().contains("s3cret"), "{}", other.redacted());
        let bare = DatabaseUrl::parse("postgresql://db").unwrap();
        assert_eq!(
            bare.with_database("x").unwrap().expose(),
            "postgresql://db/x"
        );
        assert!(DatabaseUrl::parse("sqlite://a.db")
            .unwrap()
            .with_database("x")
            .is_none());
    }
}
