//! `#[migrator::test]` and `migrator::testing`: fresh databases from templates on a throwaway
//! PostgreSQL cluster and on SQLite, the options (`migrations`, `fixtures`, `backfills`), the
//! arguments a test may take, composition with other test attributes, and what failures say.
//! Child runs of this binary check what only a process can show: set-up failures (never a
//! skip), `KEEP_TEST_DB`, and a server of `MIGRATOR_TEST_DATABASE_URL` keeping its templates.

mod common;

use std::process::Command;

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use migrator::backfill::{Backfill, Job};
use migrator::connection::Count;
use migrator::testing::{Migrations, Spec};
use migrator::{
    connection::Backend, connection::PooledConnection, migration, AnyConnection, Config, Context,
    Database, Result,
};

#[migration("001_create_items")]
fn create_items(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
}

#[migration("002_seed_items")]
fn seed_items(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("INSERT INTO items (id, name) VALUES (1, 'apple'), (2, 'pear'), (3, 'fig')")
}

#[migration("003_upper_names", transaction = false)]
fn upper_names(ctx: &mut Context<'_>) -> Result<()> {
    if !migrator::connection::has_column(ctx.conn(), "items", "name_upper")? {
        ctx.batch_execute("ALTER TABLE items ADD COLUMN name_upper TEXT")?;
    }
    ctx.backfill("upper_names").map(drop)
}

migrator::register_backfill!("upper_names", upper_job);

fn upper_job(_config: &Config) -> Result<Job> {
    let mut backfill = Backfill::new("items", "id");
    backfill
        .input("name")
        .output("name_upper")
        .pending_when("name_upper IS NULL");
    Ok(Job::new(backfill, |inputs| {
        Ok(vec![inputs[0].map(str::to_uppercase)])
    }))
}

fn count(conn: &mut AnyConnection, sql: &str) -> i64 {
    match diesel::sql_query(sql).get_result::<Count>(conn) {
        Ok(row) => row.n,
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[derive(QueryableByName)]
struct OneText {
    #[diesel(sql_type = Text)]
    v: String,
}

fn one_text(conn: &mut AnyConnection, sql: &str) -> String {
    match diesel::sql_query(sql).get_result::<OneText>(conn) {
        Ok(row) => row.v,
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn has_table(conn: &mut AnyConnection, table: &str) -> bool {
    conn.batch_execute(&format!("SELECT 1 FROM {table} WHERE 1 = 0"))
        .is_ok()
}

#[migrator::test]
fn postgres_by_default_with_every_migration(db: Database) -> Result<()> {
    assert_eq!(db.backend(), Backend::Postgres);
    let mut conn = db.get()?;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) AS n FROM items"), 3);
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM applied_migrations WHERE status = 'success'"
        ),
        3
    );
    Ok(())
}

#[migrator::test(postgres, sqlite)]
fn both_backends_from_one_attribute(db: Database, conn: &mut PooledConnection) -> Result<()> {
    // Every test writes to a database of its own.
    conn.batch_execute("INSERT INTO items (id, name) VALUES (4, 'kiwi')")?;
    assert_eq!(count(conn, "SELECT COUNT(*) AS n FROM items"), 4);
    assert!(matches!(db.backend(), Backend::Postgres | Backend::Sqlite));
    Ok(())
}

#[migrator::test(sqlite, postgres)]
fn another_test_sees_none_of_those_writes(conn: &mut AnyConnection) {
    assert_eq!(count(conn, "SELECT COUNT(*) AS n FROM items"), 3);
}

#[migrator::test(postgres, sqlite, migrations = "up_to = 001_create_items")]
fn up_to_stops_at_that_migration(db: &Database) -> Result<()> {
    let mut conn = db.get()?;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) AS n FROM items"), 0);
    let status = migrator::Migrator::from_registry()?.status(db)?;
    assert_eq!(status.pending_count(), 2);
    Ok(())
}

#[migrator::test(postgres, sqlite, migrations = "none")]
fn none_is_an_empty_database(db: Database) -> Result<()> {
    let mut conn = db.get()?;
    assert!(!has_table(&mut conn, "items"));
    assert!(!has_table(&mut conn, "applied_migrations"));
    Ok(())
}

#[migrator::test(
    postgres,
    sqlite,
    migrations = "up_to = 002_seed_items",
    fixtures("fixtures/harness_items.sql", "fixtures/harness_more_items.sql")
)]
fn fixtures_run_after_the_migrations_in_order(mut conn: PooledConnection) {
    assert_eq!(count(&mut conn, "SELECT COUNT(*) AS n FROM items"), 5);
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM items WHERE name = 'date' AND id = 5"
        ),
        1
    );
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    name_upper: Option<String>,
}

fn upper_names_of(conn: &mut AnyConnection) -> Vec<Option<String>> {
    match diesel::sql_query("SELECT name_upper FROM items ORDER BY id").load::<Name>(conn) {
        Ok(rows) => rows.into_iter().map(|r| r.name_upper).collect(),
        Err(e) => panic!("read items: {e}"),
    }
}

#[migrator::test(postgres, sqlite, backfills = "inline")]
fn inline_backfills_are_done_before_the_body(conn: &mut AnyConnection) {
    assert_eq!(
        upper_names_of(conn),
        [
            Some("APPLE".into()),
            Some("PEAR".into()),
            Some("FIG".into())
        ]
    );
}

#[migrator::test(postgres, sqlite, backfills = "background")]
fn background_backfills_are_left_to_the_test(db: Database) -> Result<()> {
    assert_eq!(upper_names_of(&mut *db.get()?), [None, None, None]);
    let state = migrator::backfill::get(&db, "upper_names")?;
    assert!(state.is_some_and(|s| s.status == migrator::backfill::BackfillStatus::Active));
    // The test drives the workers itself.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let config = Config::new(migrator::config::Environment::Development);
    migrator::backfill::Workers::run_until_idle(db.clone(), &config, 1, &stop)?;
    assert_eq!(upper_names_of(&mut *db.get()?).iter().flatten().count(), 3);
    Ok(())
}

#[migrator::test(sqlite, migrations = "up_to = 002_seed_items")]
fn a_context_runs_migration_code(db: Database, ctx: &mut Context<'_>) -> Result<()> {
    // As a `transaction = false` migration sees it: the pool is there.
    upper_names(ctx)?;
    assert_eq!(ctx.database()?.url().redacted(), db.url().redacted());
    assert_eq!(upper_names_of(ctx.conn()).iter().flatten().count(), 3);
    Ok(())
}

#[migrator::test(sqlite)]
#[should_panic(expected = "no such table: nothing_here")]
fn composes_with_should_panic(conn: &mut AnyConnection) {
    if let Err(e) = conn.batch_execute("SELECT * FROM nothing_here") {
        panic!("{e}");
    }
}

#[migrator::test(sqlite)]
#[should_panic(expected = "database of harness::an_error_fails_and_names_the_database")]
fn an_error_fails_and_names_the_database(db: Database) -> Result<()> {
    db.get()?.batch_execute("SELECT * FROM nothing_here")?;
    Ok(())
}

#[migrator::test(sqlite)]
#[ignore = "run by child processes of this binary only"]
fn child_sqlite(_db: Database) {}

#[migrator::test]
#[ignore = "run by child processes of this binary only"]
fn child_postgres(db: Database) -> Result<()> {
    assert_eq!(count(&mut *db.get()?, "SELECT COUNT(*) AS n FROM items"), 3);
    println!("child pid {}", std::process::id());
    Ok(())
}

#[migrator::test(migrations = "up_to = 002_seed_items")]
#[ignore = "run by child processes of this binary only"]
fn child_postgres_up_to_002(db: Database) -> Result<()> {
    assert_eq!(count(&mut *db.get()?, "SELECT COUNT(*) AS n FROM items"), 3);
    Ok(())
}

#[test]
fn each_spec_database_is_a_fresh_copy_of_one_template() -> Result<()> {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let mut spec = Spec::new();
        spec.migrations(Migrations::UpTo("002_seed_items".into()))
            .fixture(
                "one more",
                "INSERT INTO items (id, name) VALUES (9, 'plum')",
            );
        let first = spec.create(backend)?;
        let second = spec.create(backend)?;
        assert_ne!(first.name(), second.name());
        first.database().get()?.batch_execute("DELETE FROM items")?;
        let mut conn = second.database().get()?;
        assert_eq!(count(&mut conn, "SELECT COUNT(*) AS n FROM items"), 4);
        // One migration run per template: both copies carry its rows of applied_migrations.
        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM applied_migrations"),
            2
        );
    }
    Ok(())
}

#[test]
fn an_unknown_up_to_is_an_error_naming_the_registered_ids() {
    let mut spec = Spec::new();
    spec.migrations(Migrations::UpTo("009_missing".into()));
    let Err(e) = spec.create(Backend::Sqlite) else {
        panic!("an unknown migration was accepted");
    };
    let text = e.to_string();
    assert!(text.contains("009_missing"), "{text}");
    assert!(
        text.contains("001_create_items, 002_seed_items, 003_upper_names"),
        "{text}"
    );
}

/// Runs the ignored test `name` of this binary in a child process with `env`.
fn child(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("the test binary's path: {e}"),
    };
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("KEEP_TEST_DB")
    .env_remove("MIGRATOR_TEST_DATABASE_URL");
    for (key, value) in env {
        cmd.env(key, value);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("run {name} in a child process: {e}"),
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_harness_that_cannot_start_fails_saying_how_to_fix_it() {
    let out = child(
        "child_postgres",
        &[(
            "MIGRATOR_TEST_DATABASE_URL",
            "sqlite:///tmp/not-postgres.db",
        )],
    );
    let text = text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 failed"), "not a skip: {text}");
    assert!(text.contains("is not a PostgreSQL URL"), "{text}");
    assert!(text.contains("unset it for a throwaway cluster"), "{text}");

    let out = child(
        "child_postgres",
        &[("PG_BIN", "/nonexistent"), ("PATH", "/usr/bin:/bin")],
    );
    let text = self::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("PG_BIN=/nonexistent holds no initdb and pg_ctl"),
        "{text}"
    );
    assert!(text.contains("MIGRATOR_TEST_DATABASE_URL"), "{text}");
}

#[test]
fn keep_test_db_keeps_the_database_and_prints_its_name() {
    let out = child("child_sqlite", &[("KEEP_TEST_DB", "1")]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("KEEP_TEST_DB: keeping the SQLite database of"))
        .unwrap_or_else(|| panic!("no KEEP_TEST_DB line: {text}"));
    let path = line
        .split(": ")
        .nth(2)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no path in {line}"));
    assert!(std::path::Path::new(path).is_file(), "{line}");
    if let Some(dir) = std::path::Path::new(path).parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_server_of_migrator_test_database_url_keeps_its_templates() {
    // The child's server is this binary's own cluster, where this binary's tests make templates
    // and databases too: the child connects as a role of its own, whose databases are counted,
    // and builds a template (002, no fixtures) that no test of this process builds.
    common::cluster();
    let r = common::role_database();
    let admin = common::pg_url("postgres");
    let db = Database::connect(&admin).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.get().unwrap_or_else(|e| panic!("{e}"));
    conn.batch_execute(&format!("ALTER ROLE {} CREATEDB", r.role))
        .unwrap_or_else(|e| panic!("{e}"));
    for run in 0..2 {
        let out = child(
            "child_postgres_up_to_002",
            &[("MIGRATOR_TEST_DATABASE_URL", r.url.as_str())],
        );
        let text = text(&out);
        assert!(out.status.success(), "run {run}: {text}");
        assert!(text.contains("1 passed"), "run {run}: {text}");
        assert!(!text.contains(common::pg_password()), "{text}");
    }
    let mut owned = |pattern: &str| {
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
                 WHERE r.rolname = '{}' AND d.datname LIKE '{pattern}' AND d.datname <> '{}'",
                r.role, r.name
            ),
        )
    };
    // One template, reused by the second run; the tests' own databases are dropped (the
    // role's own database aside).
    assert_eq!(owned("migrator\\_tpl\\_%"), 1);
    assert_eq!(owned("migrator\\_test\\_%"), 0);
}

#[test]
fn the_server_handle_gives_databases_and_shows_no_password() -> Result<()> {
    let server = migrator::testing::postgres()?;
    let password = server.password();
    assert!(password.len() >= 16, "a weak password");
    assert!(!server.is_external());
    let cluster = server.cluster()?;
    let r = server.role_database()?;
    let debug = format!("{server:?} {cluster:?} {r:?}");
    assert!(!debug.contains(password), "{debug}");
    assert!(debug.contains(&r.role), "{debug}");
    assert!(debug.contains(&cluster.port().to_string()), "{debug}");

    // The role's URL connects as the role, to the database it owns.
    let db = Database::connect(&r.url)?;
    let mut conn = db.get()?;
    assert_eq!(
        one_text(&mut conn, "SELECT current_user::text AS v"),
        r.role
    );
    assert_eq!(
        one_text(&mut conn, "SELECT current_database()::text AS v"),
        r.name
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba \
             WHERE d.datname = current_database() AND o.rolname = current_user"
        ),
        1
    );

    // A fresh database is empty, on the same cluster (its port), as the superuser.
    let url = server.fresh_database()?;
    assert!(url.contains(&format!(":{}/", cluster.port())), "port");
    let db = Database::connect(&url)?;
    let mut conn = db.get()?;
    assert_eq!(
        one_text(&mut conn, "SELECT current_user::text AS v"),
        "postgres"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'"
        ),
        0
    );
    // What reached the server is in its log; a tool of its installation runs.
    conn.batch_execute("DO $$ BEGIN RAISE LOG 'harness-log-marker'; END $$")?;
    assert!(cluster.log().contains("harness-log-marker"));
    let out = cluster
        .command("pg_ctl")
        .arg("--version")
        .output()
        .map_err(migrator::Error::custom)?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("PostgreSQL"));
    assert!(cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()))
        .exists());
    Ok(())
}

#[migrator::test(migrations = "none")]
#[ignore = "run by child processes of this binary only"]
fn child_needs_the_cluster(_db: Database) -> Result<()> {
    let server = migrator::testing::postgres()?;
    assert!(server.is_external());
    let Err(e) = server.cluster() else {
        panic!("a cluster of a server of MIGRATOR_TEST_DATABASE_URL");
    };
    println!("cluster: {e}");
    Ok(())
}

#[test]
fn tests_that_need_the_cluster_say_so_on_a_server_of_the_variable() {
    let admin = common::pg_url("postgres");
    let out = child(
        "child_needs_the_cluster",
        &[("MIGRATOR_TEST_DATABASE_URL", admin.as_str())],
    );
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("this test needs the throwaway PostgreSQL cluster"),
        "{text}"
    );
    assert!(text.contains("unset MIGRATOR_TEST_DATABASE_URL"), "{text}");
    assert!(!text.contains(common::pg_password()), "{text}");
    assert!(text.contains("postgres:***@"), "{text}");
}

#[test]
fn the_throwaway_cluster_is_gone_after_the_binary_exits() {
    let out = child("child_postgres", &[]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    let pid = text
        .lines()
        .find_map(|l| l.split("child pid ").nth(1))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no pid: {text}"));
    let dir = std::env::temp_dir().join(format!("migrator-test-pg-{pid}"));
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !dir.exists()
    });
    assert!(gone, "{} is still there 10 s after exit", dir.display());
}
