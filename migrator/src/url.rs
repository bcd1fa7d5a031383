//! `DATABASE_URL` parsing: the backend from the scheme, and a redacted form for every message.

use std::fmt;

use crate::error::{Error, Result};

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
/// Its `Display` and `Debug` show the redacted form (password replaced by `***`); the URL with
/// its password is only handed to the database driver.
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
        let invalid =
            |shown: String, reason: String| Error::InvalidDatabaseUrl { url: shown, reason };
        let Some((scheme, rest)) = url.split_once("://") else {
            // Without a scheme nothing tells which part is a password: show nothing of it.
            return Err(invalid(
                "<not shown>".into(),
                format!("no scheme: {ACCEPTED}"),
            ));
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                format!("{scheme}://<not shown>"),
                "it contains whitespace or control characters".into(),
            ));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let (redacted, secrets) = redact_postgres(scheme, rest);
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                let host = authority.rsplit('@').next().unwrap_or("");
                if authority.matches('@').count() > 1 {
                    return Err(invalid(
                        redacted,
                        "more than one '@' in the authority: percent-encode '@' in the \
                         user name or password as %40"
                            .into(),
                    ));
                }
                if let Some(port) = bad_port(host) {
                    return Err(invalid(
                        redacted,
                        format!("port {port:?} is not a number from 0 to 65535"),
                    ));
                }
                Ok(DatabaseUrl {
                    raw: url.to_owned(),
                    backend: Backend::Postgres,
                    redacted,
                    secrets,
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
            _ => Err(invalid(
                format!("{scheme}://<not shown>"),
                format!("unsupported scheme {scheme:?}: {ACCEPTED}"),
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
        let Some((scheme, rest)) = self.raw.split_once("://") else {
            return (self.raw.clone(), None);
        };
        let mut password = None;
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, pw)) => {
                    password = Some(percent_decode(pw));
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| match pair.split_once('=') {
                        Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                            password.get_or_insert_with(|| percent_decode(value));
                            false
                        }
                        _ => true,
                    })
                    .collect();
                if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            }
            None => tail.to_owned(),
        };
        (format!("{scheme}://{authority}{tail}"), password)
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

/// The first port in `hosts` (libpq accepts `h1:5432,h2:5433` and `[v6]:port`) that is not a
/// number from 0 to 65535.
fn bad_port(hosts: &str) -> Option<&str> {
    hosts.split(',').find_map(|host| {
        let port = if host.starts_with('[') {
            host.rsplit_once("]:").map(|(_, port)| port)
        } else {
            host.split_once(':').map(|(_, port)| port)
        };
        port.filter(|port| port.parse::<u16>().is_err())
    })
}

/// Redacts the password of `user:password@` and of a `password=` query parameter.
/// Returns the redacted URL and the secrets (raw and percent-decoded) to scrub from messages.
fn redact_postgres(scheme: &str, rest: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, password)) if !password.is_empty() => {
                secrets.push(password.to_owned());
                secrets.push(percent_decode(password));
                format!("{user}:***@{host}")
            }
            _ => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                        secrets.push(value.to_owned());
                        secrets.push(percent_decode(value));
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    secrets.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    (format!("{scheme}://{authority}{tail}"), secrets)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
}
