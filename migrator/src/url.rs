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
                let parts = Parts::of(rest);
                let userinfo = [parts.user, parts.password].into_iter().flatten();
                if userinfo.into_iter().any(|s| s.contains(['@', '/', '?'])) {
                    return Err(invalid(
                        redacted,
                        "the user name or password contains '@', '/' or '?': percent-encode \
                         them (%40, %2F, %3F)"
                            .into(),
                    ));
                }
                let host = parts.after.split(['/', '?']).next().unwrap_or("");
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
        let parts = Parts::of(rest);
        let mut password = parts.password.map(percent_decode);
        let (location, query) = match parts.after.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (parts.after, None),
        };
        let kept: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| match pair.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                    password.get_or_insert_with(|| percent_decode(value));
                    false
                }
                _ => true,
            })
            .collect();
        let user = parts.user.map_or(String::new(), |u| format!("{u}@"));
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        (format!("{scheme}://{user}{location}{query}"), password)
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
    let parts = Parts::of(rest);
    if let Some(password) = parts.password.filter(|p| !p.is_empty()) {
        secrets.push(password.to_owned());
        secrets.push(percent_decode(password));
    }
    let (location, query) = match parts.after.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (parts.after, None),
    };
    let query = query.map(|query| {
        let pairs: Vec<String> = query
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
        format!("?{}", pairs.join("&"))
    });
    let userinfo = match (parts.user, parts.password) {
        (Some(user), Some(p)) if !p.is_empty() => format!("{user}:***@"),
        (Some(user), Some(_)) => format!("{user}:@"),
        (Some(user), None) => format!("{user}@"),
        (None, _) => String::new(),
    };
    secrets.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    (
        format!(
            "{scheme}://{userinfo}{location}{}",
            query.unwrap_or_default()
        ),
        secrets,
    )
}

/// `[user[:password]@]after`, split at the **last** `@`: a password with an unencoded `/`,
/// `?` or `@` then still counts as a password (and is redacted), where splitting at the first
/// `/` would print it as a host name.
struct Parts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    after: &'a str,
}

impl<'a> Parts<'a> {
    fn of(rest: &'a str) -> Parts<'a> {
        match rest.rsplit_once('@') {
            Some((userinfo, after)) => match userinfo.split_once(':') {
                Some((user, password)) => Parts {
                    user: Some(user),
                    password: Some(password),
                    after,
                },
                None => Parts {
                    user: Some(userinfo),
                    password: None,
                    after,
                },
            },
            None => Parts {
                user: None,
                password: None,
                after: rest,
            },
        }
    }
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
