//! `migrator::connection::has_column`, the one column check of the library and the app: on
//! PostgreSQL it finds the table that `search_path` finds (as an unqualified name in a query
//! does), also once the application role has a schema of its own ahead of `public`; on SQLite
//! the table of the main database. The Kroger command's `verify` relies on it.

use crate::common;

use common::role_database;
use common::{count, exec, texts, users, TestDb};
use migrator::connection::has_column;
use migrator::testing::RoleDatabase;
use migrator::{connection::Backend, Database};
use smart_meal_planner::commands::VerifyOptions;
use smart_meal_planner::kroger;

fn connect(url: &str) -> Database {
    TestDb::at(url.to_owned(), Backend::Postgres).connect()
}

/// `user_profiles` in `public` with the hash columns, then the role's own schema (empty) ahead
/// of `public` on its `search_path`.
fn hashed_columns_in_public_behind_the_role_schema(r: &RoleDatabase) -> Database {
    let db = connect(&r.url);
    users::seed(&db, Backend::Postgres, 5);
    exec(
        &db,
        "ALTER TABLE user_profiles ADD COLUMN kroger_password_hash TEXT, \
         ADD COLUMN kroger_password_salt TEXT",
    );
    exec(
        &connect(&r.admin_url),
        &format!("CREATE SCHEMA {0} AUTHORIZATION {0}", r.role),
    );
    let db = connect(&r.url);
    assert_eq!(
        texts(&db, "SELECT current_schema() AS v"),
        std::slice::from_ref(&r.role),
        "the role's own schema comes first on its search_path"
    );
    db
}

#[test]
fn has_column_finds_the_table_search_path_finds_on_postgres() {
    let r = role_database();
    let db = hashed_columns_in_public_behind_the_role_schema(&r);
    let mut conn = db.get().unwrap();
    for (table, column, expected) in [
        ("user_profiles", "kroger_password_hash", true),
        ("user_profiles", "kroger_password_salt", true),
        ("user_profiles", "email", true),
        ("user_profiles", "no_such_column", false),
        ("public.user_profiles", "kroger_password_hash", true),
        ("no_such_table", "id", false),
    ] {
        assert_eq!(
            has_column(&mut conn, table, column).unwrap(),
            expected,
            "{table}.{column}"
        );
    }
    // A column dropped is gone.
    exec(
        &db,
        "ALTER TABLE user_profiles DROP COLUMN kroger_password_salt",
    );
    assert!(!has_column(&mut conn, "user_profiles", "kroger_password_salt").unwrap());
}

/// `verify` sees the hash columns of the table its queries read, not only those of
/// `current_schema()` (which is the role's own, empty schema here).
#[test]
fn verify_finds_the_hash_columns_behind_the_role_schema() {
    let r = role_database();
    let db = hashed_columns_in_public_behind_the_role_schema(&r);
    let report = kroger::verify(&db, &VerifyOptions::default()).unwrap();
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.contains("does not exist yet")),
        "{:?}",
        report.problems
    );
    let total = count(&db, "SELECT COUNT(*) AS n FROM user_profiles");
    assert!(
        report.counts.contains(&("total_users", total as u64))
            && report
                .counts
                .iter()
                .any(|(name, _)| *name == "hashed_passwords"),
        "{:?}",
        report.counts
    );
}

#[test]
fn has_column_reads_the_main_database_on_sqlite() {
    let t = TestDb::new(Backend::Sqlite);
    let db = t.connect();
    users::seed(&db, Backend::Sqlite, 3);
    let mut conn = db.get().unwrap();
    assert!(has_column(&mut conn, "user_profiles", "kroger_password").unwrap());
    assert!(!has_column(&mut conn, "user_profiles", "kroger_password_hash").unwrap());
    assert!(!has_column(&mut conn, "no_such_table", "id").unwrap());
    drop(conn);
    exec(
        &db,
        "ALTER TABLE user_profiles ADD COLUMN kroger_password_hash TEXT",
    );
    let mut conn = db.get().unwrap();
    assert!(has_column(&mut conn, "user_profiles", "kroger_password_hash").unwrap());
}
