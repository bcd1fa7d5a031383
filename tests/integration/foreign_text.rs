//! No text written by another session reaches a record or an error: database errors are
//! stored and shown with their values redacted (PostgreSQL), and no SQLite error quotes one.
//! (The app's side, another session's open transaction blocking a migration and the password
//! it wrote never reaching a record, a log or a page, is examples/tests/app/foreign_text.rs.)

use crate::common;

use common::{texts, TestDb};
use diesel::connection::SimpleConnection;
use migrator::{config::Environment, connection::Backend, migration, Config, Context, Result};

const SECRET: &str = "SECRET-literal-7f3a9c";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} holds the secret:\n{text}");
}

#[migration("001_rejects_a_literal", transaction = false)]
fn rejects_a_literal(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute(&format!("SELECT CAST('{SECRET}' AS INTEGER)"))
}

#[test]
fn database_errors_are_recorded_without_literals() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let t = TestDb::new(backend);
        let db = t.connect();
        if backend == Backend::Sqlite {
            // SQLite casts anything; an unterminated literal is quoted in its error instead.
            let err = db
                .get()
                .unwrap()
                .batch_execute(&format!("SELECT '{SECRET}"))
                .map_err(migrator::Error::from)
                .unwrap_err();
            assert_clean("a SQLite syntax error", &format!("{err} / {err:?}"));
            continue;
        }
        let err = file_migrator!()
            .unwrap()
            .run(&db, &Config::new(Environment::Development))
            .unwrap_err();
        let shown = format!("{err} / {err:?}");
        assert_clean("the error", &shown);
        assert!(shown.contains("<redacted>"), "{shown}");
        let recorded = texts(
            &db,
            "SELECT COALESCE(error_message, '') AS v FROM applied_migrations",
        )
        .join("\n");
        assert_clean("applied_migrations", &recorded);
        assert!(
            recorded.contains("invalid input syntax for type integer"),
            "{recorded}"
        );
    }
}
