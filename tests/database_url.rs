//! Bad `DATABASE_URL`s: a clear error, no panic, and never the password.

mod common;

use common::{logs, pg, TestDb};
use migrator::{Backend, Config, Database, Environment, Error, Migrator};

fn connect_error(url: &str) -> Error {
    match Database::connect(url) {
        Ok(_) => panic!("connecting to {url} should fail"),
        Err(e) => e,
    }
}

fn assert_secret_free(err: &Error, secret: &str) {
    let shown = format!("{err} / {err:?}");
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
    let cluster = pg::cluster();
    let url = format!(
        "postgres://postgres:Wr0ngPassw0rd@127.0.0.1:{}/postgres",
        cluster.port
    );
    let err = connect_error(&url);
    let Error::Connect { reason, url: shown } = &err else {
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
            cluster.port
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

    let cluster = pg::cluster();
    let err = connect_error(&cluster.url("no_such_database"));
    assert!(
        err.to_string()
            .contains("\"no_such_database\" does not exist"),
        "{err}"
    );
    assert_secret_free(&err, pg::PASSWORD);
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
    assert!(!debug.contains(pg::PASSWORD), "{debug}");
    assert!(debug.contains("postgres:***@"), "{debug}");
    logs::take();
    let config = Config::new(Environment::Development);
    Migrator::from_registry()
        .unwrap()
        .run_on_startup(&db, &config)
        .unwrap();
    let lines = logs::take();
    assert!(
        lines.iter().any(|l| l.contains("postgres:***@")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(pg::PASSWORD)), "{lines:?}");
}

#[test]
fn a_query_password_parameter_is_redacted_too() {
    let cluster = pg::cluster();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?password={}",
        cluster.port,
        pg::PASSWORD
    );
    let db = Database::connect(&url).unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    assert!(!db.url().to_string().contains(pg::PASSWORD));
    assert!(db.url().to_string().ends_with("?password=***"));
}
