//! Bad `DATABASE_URL`s: a clear error, no panic, and never the password.

use crate::common;

use common::{cluster, logs, pg_password, pg_url, TestDb};
use migrator::{config::Environment, connection::Backend, Config, Database, Error};

fn connect_error(url: &str) -> Error {
    match Database::connect(url) {
        Ok(_) => panic!("connecting to {url} should fail"),
        Err(e) => e,
    }
}

/// Neither the error nor any of its sources, displayed or debugged, shows `secret`.
fn assert_secret_free(err: &Error, secret: &str) {
    let mut shown = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        shown.push_str(&format!(" / {cause} / {cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains(secret), "{shown}");
}

#[test]
fn malformed_urls_are_clear_errors() {
    let cases = [
        (
            "mysql://root:hunter2@db/app",
            "unsupported scheme \"mysql\"",
        ),
        ("root:hunter2@db/app", "no scheme"),
        (
            "postgres://root:hunter2@db:99999/app",
            "port \"99999\" is not a number",
        ),
        ("postgres://root:hunter2@x@db/app", "percent-encode"),
        ("postgres://root:hun/ter2@db/app", "percent-encode"),
        ("postgres://root:hunter2@db/app name", "whitespace"),
        ("sqlite://", "no file path"),
        ("", "no scheme"),
    ];
    for (url, expected) in cases {
        let err = connect_error(url);
        assert!(
            matches!(err, Error::InvalidDatabaseUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(err.is_configuration());
        assert!(err.to_string().contains(expected), "{url}: {err}");
        assert!(err.to_string().starts_with("invalid DATABASE_URL"), "{err}");
        assert_secret_free(&err, "hunter2");
        assert_secret_free(&err, "hun/ter2");
    }
}

#[test]
fn a_wrong_password_is_reported_without_echoing_it() {
    let cluster = cluster();
    let url = format!(
        "postgres://postgres:Wr0ngPassw0rd@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let err = connect_error(&url);
    // The driver's error is the source, scrubbed.
    let Error::Connect {
        source: diesel::ConnectionError::BadConnection(reason),
        url: shown,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        reason.contains("password authentication failed"),
        "{reason}"
    );
    assert_eq!(
        shown,
        &format!(
            "postgres://postgres:***@127.0.0.1:{}/postgres",
            cluster.port()
        )
    );
    assert_secret_free(&err, "Wr0ngPassw0rd");
}

#[test]
fn an_unreachable_server_and_a_missing_database_are_clear() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect_error(&format!("postgresql://app:s3cret-pw@127.0.0.1:{port}/app"));
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert_secret_free(&err, "s3cret-pw");

    let err = connect_error(&pg_url("no_such_database"));
    assert!(
        err.to_string()
            .contains("\"no_such_database\" does not exist"),
        "{err}"
    );
    assert_secret_free(&err, pg_password());
}

#[test]
fn an_unopenable_sqlite_path_is_clear() {
    let err = connect_error("sqlite:///nonexistent-dir-for-migrator/app.db");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/nonexistent-dir-for-migrator/app.db"),
        "{err}"
    );
}

#[test]
fn the_password_never_reaches_debug_output_or_logs() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let debug = format!("{db:?} {:?} {}", db.url(), db.url());
    assert!(!debug.contains(pg_password()), "{debug}");
    assert!(debug.contains("postgres:***@"), "{debug}");
    logs::take();
    let config = Config::new(Environment::Development);
    file_migrator!()
        .unwrap()
        .run_on_startup(&db, &config)
        .unwrap();
    let lines = logs::take();
    assert!(
        lines.iter().any(|l| l.contains("postgres:***@")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(pg_password())),
        "{lines:?}"
    );
}

#[test]
fn a_query_password_parameter_is_redacted_too() {
    let cluster = cluster();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?password={}",
        cluster.port(),
        pg_password()
    );
    let db = Database::connect(&url).unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    assert!(!db.url().to_string().contains(pg_password()));
    assert!(db.url().to_string().ends_with("?password=***"));
}

/// Generated URLs: passwords with every reserved character (raw or percent-encoded) in the
/// user info and in the query, IPv6 hosts, several hosts, broken brackets. No password shows
/// in the `Display`/`Debug` of the parsed URL or of the error built from it.
mod generated {
    use migrator::{connection::DatabaseUrl, Database, Error};
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    use super::cluster;

    /// Every password starts with this; no other part of a URL or of a message contains it.
    const MARK: &str = "Zq";
    const RESERVED: &str = ":/?#[]@!$&'()*+,;=%";

    fn password() -> impl Strategy<Value = String> {
        let reserved: Vec<char> = RESERVED.chars().collect();
        let other = vec![
            'é', '🔑', '~', '-', '_', '.', '"', '\\', '<', '>', '^', '`', '|',
        ];
        proptest::collection::vec(
            prop_oneof![
                4 => select(reserved),
                3 => proptest::char::range('a', 'z'),
                1 => proptest::char::range('0', '9'),
                1 => select(other),
            ],
            1..16,
        )
        .prop_map(|chars| format!("{MARK}{}", chars.into_iter().collect::<String>()))
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[derive(Clone, Copy, Debug)]
    enum Place {
        UserInfo,
        Query(&'static str),
        Both(&'static str),
    }

    fn place() -> impl Strategy<Value = Place> {
        let keys = ["password", "PASSWORD", "sslpassword", "pass%77ord"];
        prop_oneof![
            Just(Place::UserInfo),
            select(keys.to_vec()).prop_map(Place::Query),
            select(keys.to_vec()).prop_map(Place::Both),
        ]
    }

    const HOSTS: [&str; 15] = [
        "db",
        "db:5432",
        "127.0.0.1:5432",
        "[::1]",
        "[::1]:5432",
        "[fe80::1%25eth0]:5432",
        "[2001:db8::1]:5432,db:5433",
        "h1:5432,h2:5433",
        "[::1",
        "::1]",
        "[::1]x",
        "[]",
        "",
        "db:99999",
        "db:54x",
    ];

    /// A URL with `passwords[0]` (and `passwords[1]`) placed as `place` says, raw or encoded.
    #[allow(clippy::too_many_arguments)]
    fn url(
        scheme: &str,
        user: &str,
        host: &str,
        path: &str,
        others: &[&str],
        place: Place,
        passwords: &[String; 2],
        encoded: bool,
    ) -> String {
        let form = |p: &String| if encoded { encode(p) } else { p.clone() };
        let userinfo = match place {
            Place::UserInfo | Place::Both(_) => format!("{user}:{}@", form(&passwords[0])),
            Place::Query(_) if user.is_empty() => String::new(),
            Place::Query(_) => format!("{user}@"),
        };
        let mut query: Vec<String> = others.iter().map(|s| (*s).to_owned()).collect();
        if let Place::Query(key) | Place::Both(key) = place {
            query.insert(query.len() / 2, format!("{key}={}", form(&passwords[1])));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!("{scheme}://{userinfo}{host}{path}{query}")
    }

    fn check_hidden(shown: &str, passwords: &[String; 2]) -> Result<(), TestCaseError> {
        for password in passwords {
            for form in [password.clone(), encode(password)] {
                prop_assert!(!shown.contains(&form), "{form:?} in {shown}");
            }
        }
        prop_assert!(!shown.contains(MARK), "the start of a password in {shown}");
        Ok(())
    }

    fn shown(result: Result<DatabaseUrl, Error>) -> String {
        match result {
            Ok(url) => format!("{url} / {url:?} / {}", url.redacted()),
            Err(err) => format!("{err} / {err:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_password_shows_in_a_parsed_url_or_its_error(
            scheme in select(vec!["postgres", "postgresql", "POSTGRES"]),
            user in select(vec!["app", "", "u-1.x"]),
            host in select(HOSTS.to_vec()),
            path in select(vec!["", "/", "/prod", "/my-db"]),
            others in subsequence(
                vec!["sslmode=require", "application_name=a@b", "user=app", "connect_timeout=5"],
                0..=4,
            ),
            place in place(),
            passwords in [password(), password()],
            encoded in any::<bool>(),
        ) {
            let url = url(scheme, user, host, path, &others, place, &passwords, encoded);
            check_hidden(&shown(DatabaseUrl::parse(&url)), &passwords)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The same URLs, pointed at the test cluster with wrong passwords: libpq's own
        /// messages (some quote the URL) reach the error scrubbed.
        #[test]
        fn no_password_shows_in_a_connection_error(
            place in place(),
            passwords in [password(), password()],
            encoded in any::<bool>(),
        ) {
            let host = format!("127.0.0.1:{}", cluster().port());
            let url = url("postgres", "postgres", &host, "/postgres", &[], place, &passwords, encoded);
            let shown = match Database::connect(&url) {
                Ok(_) => panic!("connected with a wrong password: {url}"),
                Err(err) => format!("{err} / {err:?}"),
            };
            check_hidden(&shown, &passwords)?;
        }
    }
}
