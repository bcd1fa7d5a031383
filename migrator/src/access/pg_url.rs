//! A PostgreSQL URL read the way libpq reads it, `[USER[:PASSWORD]@]HOSTS[/DATABASE][?QUERY]`,
//! and printed again from its parts with every secret replaced by `***`.
//!
//! libpq takes a user name and password only before the first `/` after the scheme, and ends
//! them at the first `@`. Where the text does not split one way only (an unencoded `@`, `/` or
//! `?` in a password, an `@` in the database name, a query parameter without `=`), the URL is
//! refused and nothing after the scheme is shown: any part of it could be the password.

/// Query parameters whose values are secrets (compared without case: they are never shown).
const SECRET_KEYS: [&str; 3] = ["password", "sslpassword", "oauth_client_secret"];

/// libpq's other connection parameters: their values are shown. A parameter not listed here
/// is shown as `***` whole (an unencoded `&` in a password makes its tail look like one).
const SHOWN_KEYS: [&str; 46] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslkeylogfile",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "oauth_issuer",
    "oauth_client_id",
    "oauth_scope",
];

/// Why a URL that does not split one way only is refused.
const AMBIGUOUS: &str = "the user name or password contains '@', '/' or '?': percent-encode \
                         them (%40, %2F, %3F); an '@' in the query also needs a '/' before the \
                         '?' (postgres://HOST/DATABASE?...)";

/// The parts of a PostgreSQL URL, as libpq reads them.
pub(crate) struct PgUrl<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    hosts: &'a str,
    dbname: Option<&'a str>,
    query: Option<Vec<(&'a str, &'a str)>>,
}

impl<'a> PgUrl<'a> {
    /// Splits `rest` (the URL after `scheme://`). The error is a reason that shows nothing of
    /// the URL: print it with the scheme only.
    pub(crate) fn parse(scheme: &'a str, rest: &'a str) -> Result<PgUrl<'a>, &'static str> {
        let head = rest.split('/').next().unwrap_or(rest);
        let (user, password, after) = match head.split_once('@') {
            Some((userinfo, more)) => {
                // A second '@', or a '?' before the '@': the password (or a query value)
                // holds an unencoded character and its end cannot be told.
                if more.contains('@') || userinfo.contains('?') {
                    return Err(AMBIGUOUS);
                }
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                (Some(user), password, &rest[userinfo.len() + 1..])
            }
            None => (None, None, rest),
        };
        let hosts_end = after.find(['/', '?']).unwrap_or(after.len());
        let (hosts, tail) = after.split_at(hosts_end);
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let dbname = path.strip_prefix('/');
        // A database name with an '@' is a password with an unencoded '/' before it.
        if dbname.is_some_and(|name| name.contains('@')) {
            return Err(AMBIGUOUS);
        }
        let query = query
            .map(|query| {
                query
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| match pair.split_once('=') {
                        // An '@' in a name is the end of a user info with an unencoded '/'.
                        Some((key, _)) if key.contains('@') => Err(AMBIGUOUS),
                        Some(pair) => Ok(pair),
                        None => Err(
                            "a query parameter has no '=': percent-encode '&' in values \
                                     (%26)",
                        ),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(PgUrl {
            scheme,
            user,
            password,
            hosts,
            dbname,
            query,
        })
    }

    /// Checks the hosts and ports; the error is a reason that may be shown with
    /// [`PgUrl::redacted`].
    pub(crate) fn check(&self) -> Result<(), String> {
        for host in self.hosts.split(',') {
            let (_, port) = split_host(host).ok_or_else(|| {
                "a host is not HOST, HOST:PORT, [IPV6-ADDRESS] or [IPV6-ADDRESS]:PORT (an \
                 unmatched '[' or ']'?)"
                    .to_owned()
            })?;
            match port {
                Some(port) if port.parse::<u16>().is_err() => {
                    return Err(if is_digits(port) {
                        format!("port {port:?} is not a number from 0 to 65535")
                    } else {
                        "a port is not a number from 0 to 65535".into()
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The URL printed from its parts: passwords as `***`, the values of unknown query
    /// parameters too, ports that are not numbers too.
    pub(crate) fn redacted(&self) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = self.user {
            out.push_str(user);
            match self.password {
                Some("") => out.push(':'),
                Some(_) => out.push_str(":***"),
                None => {}
            }
            out.push('@');
        }
        let hosts: Vec<String> = self.hosts.split(',').map(redacted_host).collect();
        out.push_str(&hosts.join(","));
        if let Some(dbname) = self.dbname {
            out.push('/');
            out.push_str(dbname);
        }
        if let Some(query) = &self.query {
            let pairs: Vec<String> = query
                .iter()
                .map(|&(key, value)| {
                    let name = percent_decode(key);
                    if is_secret(&name) {
                        format!("{key}=***")
                    } else if SHOWN_KEYS.contains(&name.as_str()) {
                        format!("{key}={value}")
                    } else {
                        "***".into()
                    }
                })
                .collect();
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        out
    }

    /// The same URL naming database `dbname` instead (for the test harness's databases).
    #[cfg(feature = "testing")]
    pub(crate) fn with_database(&self, dbname: &str) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = self.user {
            out.push_str(user);
            if let Some(password) = self.password {
                out.push(':');
                out.push_str(password);
            }
            out.push('@');
        }
        out.push_str(self.hosts);
        out.push('/');
        out.push_str(dbname);
        if let Some(query) = &self.query {
            let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        out
    }

    /// Every secret (raw and percent-decoded), longest first, to scrub from driver messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let query_secrets = self
            .query
            .iter()
            .flatten()
            .filter_map(|&(key, value)| is_secret(&percent_decode(key)).then_some(value));
        let mut secrets: Vec<String> = self
            .password
            .into_iter()
            .chain(query_secrets)
            .flat_map(|secret| [secret.to_owned(), percent_decode(secret)])
            .filter(|secret| !secret.is_empty())
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }

    /// The URL without its password (for a tool's arguments), and the password (for the
    /// tool's environment), percent-decoded: the user info's, else the `password` parameter's.
    pub(crate) fn without_password(&self) -> (String, Option<String>) {
        let mut password = self.password.map(percent_decode);
        let mut out = format!("{}://", self.scheme);
        if let Some(user) = self.user {
            out.push_str(user);
            out.push('@');
        }
        out.push_str(self.hosts);
        if let Some(dbname) = self.dbname {
            out.push('/');
            out.push_str(dbname);
        }
        let kept: Vec<String> = self
            .query
            .iter()
            .flatten()
            .filter(|&&(key, value)| {
                if percent_decode(key).eq_ignore_ascii_case("password") {
                    password.get_or_insert_with(|| percent_decode(value));
                    false
                } else {
                    true
                }
            })
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        (out, password)
    }
}

fn is_secret(key: &str) -> bool {
    SECRET_KEYS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(key))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `host[:port]` or `[v6][:port]` as (host, port); `None` for unmatched brackets.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    if let Some(inner) = host.strip_prefix('[') {
        let (address, after) = inner.split_once(']')?;
        if address.is_empty() || address.contains('[') {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        Some((&host[..address.len() + 2], port))
    } else if host.contains(['[', ']']) {
        None
    } else {
        Some(match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        })
    }
}

/// A host as printed: a port that is not a number shown as `***`, a host that is not
/// `HOST[:PORT]` or `[V6][:PORT]` too (without user info, `USER:PASSWORD` reads as a host).
fn redacted_host(host: &str) -> String {
    match split_host(host) {
        Some((name, Some(port))) if !is_digits(port) => format!("{name}:***"),
        Some(_) => host.to_owned(),
        None => "***".into(),
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are).
pub(crate) fn percent_decode(text: &str) -> String {
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
