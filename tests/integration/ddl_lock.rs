//! DDL that never queues the application behind a lock (PostgreSQL): every migration runs with
//! `lock_timeout` = `MIGRATION_DDL_LOCK_TIMEOUT_MS` and is retried while a long transaction
//! holds its table, naming the blocker; retries are bounded by `MIGRATION_DDL_LOCK_RETRIES`;
//! `statement_timeout` is the migration's own (`#[migration(.., statement_timeout = "1s")]`)
//! or none, whatever the role sets.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{exec, logs, texts, TestDb};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Integer;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use migrator::{connection::Backend, migration, report::Status, Config, Context, Database, Result};

#[migration("001_add_nickname")]
fn add_nickname(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS nickname TEXT")
}

#[migration("002_sleeps_past_its_statement_timeout", statement_timeout = "1s")]
fn sleeps_past_its_statement_timeout(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("SELECT pg_sleep(3)")
}

#[migration("003_sleeps_two_seconds")]
fn sleeps_two_seconds(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("SELECT pg_sleep(2)")
}

#[migration("004_sleeps_two_seconds_outside_a_transaction", transaction = false)]
fn sleeps_two_seconds_outside_a_transaction(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("SELECT pg_sleep(2)")
}

/// A development policy read from these variables, as the process environment would give them.
fn config(vars: &[(&str, &str)]) -> Config {
    let vars: HashMap<String, String> = [("ENVIRONMENT", "development")]
        .iter()
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

fn row(db: &Database, id: &str) -> migrator::report::AppliedMigration {
    file_migrator!()
        .unwrap()
        .status(db)
        .unwrap()
        .migrations
        .into_iter()
        .find(|m| m.id == id)
        .and_then(|m| m.row)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// A session of another application (a report, a stuck session) in a transaction that read
/// `user_profiles`: it holds `ACCESS SHARE` until `hold` has passed or it is released.
struct Holder {
    pid: i32,
    release: mpsc::Sender<()>,
    committed: Arc<Mutex<Option<Instant>>>,
    thread: JoinHandle<()>,
}

impl Holder {
    fn start(url: &str, hold: Duration) -> Holder {
        let (pid_tx, pid_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let committed = Arc::new(Mutex::new(None));
        let done = Arc::clone(&committed);
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
                .get_result::<Pid>(&mut conn)
                .unwrap()
                .pid;
            conn.batch_execute("BEGIN; LOCK TABLE user_profiles IN ACCESS SHARE MODE")
                .unwrap();
            pid_tx.send(pid).unwrap();
            let _ = release_rx.recv_timeout(hold);
            conn.batch_execute("COMMIT").unwrap();
            *done.lock().unwrap() = Some(Instant::now());
        });
        let pid = pid_rx.recv().unwrap();
        Holder {
            pid,
            release,
            committed,
            thread,
        }
    }

    /// Ends the transaction now (if it still runs) and returns when it committed.
    fn end(self) -> Instant {
        let _ = self.release.send(());
        self.thread.join().unwrap();
        let committed = *self.committed.lock().unwrap();
        committed.unwrap()
    }
}

/// The application reading `user_profiles` every 200 ms; each read's duration.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl Reader {
    fn start(url: &str) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let mut reads = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let start = Instant::now();
                conn.batch_execute("SELECT count(*) FROM user_profiles")
                    .unwrap();
                reads.push(start.elapsed());
                std::thread::sleep(Duration::from_millis(200));
            }
            reads
        });
        Reader { stop, thread }
    }

    fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn with_user_profiles() -> (TestDb, Database) {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    exec(
        &db,
        "CREATE TABLE user_profiles (id SERIAL PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO user_profiles (name) SELECT 'user ' || n FROM generate_series(1, 100) n;",
    );
    (t, db)
}

#[test]
fn a_migration_waits_out_a_long_transaction_without_queueing_the_app() {
    let (t, db) = with_user_profiles();
    let holder = Holder::start(&t.url, Duration::from_secs(15));
    let reader = Reader::start(&t.url);
    let config = config(&[("MIGRATION_DDL_LOCK_TIMEOUT_MS", "1000")]);

    let report = file_migration!("001_add_nickname").run(&db, &config);
    let reads = reader.stop();
    let committed = holder.pid;
    let holder_committed = holder.end();

    let report = report.unwrap_or_else(|e| panic!("the migration failed: {e}"));
    assert_eq!(report.applied().count(), 1);
    // It could only succeed once the holder's transaction had ended.
    assert!(holder_committed <= Instant::now());
    assert_eq!(
        texts(
            &db,
            "SELECT column_name AS v FROM information_schema.columns \
             WHERE table_name = 'user_profiles' AND column_name = 'nickname'"
        ),
        ["nickname"]
    );
    let r = row(&db, "001_add_nickname");
    assert_eq!((r.status, r.attempts), (Status::Success, 1));
    // The waits were logged with the blocker's pid, state, age and lock mode (never its query).
    let lines = logs::take();
    assert!(
        !lines.iter().any(|l| l.contains("LOCK TABLE")),
        "a log line holds the blocker's statement: {lines:#?}"
    );
    let blocked =
        format!("blocked by pid {committed} (idle in transaction, wait Client:ClientRead, open ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("could not take a table lock within 1000 ms")
                && l.contains(&blocked)),
        "no retry line naming {blocked:?} in {lines:#?}"
    );
    // The application's reads never queued behind the ALTER for longer than its lock timeout.
    assert!(reads.len() >= 30, "only {} reads", reads.len());
    let slowest = reads.iter().max().unwrap();
    assert!(
        *slowest <= Duration::from_secs(2),
        "a read took {slowest:?}: {reads:?}"
    );
}

#[test]
fn retries_are_bounded_and_the_failure_names_the_lock_timeout_and_the_blocker() {
    let (t, db) = with_user_profiles();
    let holder = Holder::start(&t.url, Duration::from_secs(120));
    let config = config(&[
        ("MIGRATION_DDL_LOCK_TIMEOUT_MS", "1000"),
        ("MIGRATION_DDL_LOCK_RETRIES", "1"),
    ]);

    let err = file_migration!("001_add_nickname")
        .run(&db, &config)
        .unwrap_err();
    let pid = holder.pid;
    holder.end();

    let message = err.to_string();
    for part in [
        "migration 001_add_nickname failed: could not take a table lock within the lock \
         timeout of 1000 ms (MIGRATION_DDL_LOCK_TIMEOUT_MS) in 2 attempt(s)",
        &format!("blocked by pid {pid} (idle in transaction, wait Client:ClientRead, open "),
        " s, application_name '', holds AccessShareLock)",
        "lock timeout)",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    let r = row(&db, "001_add_nickname");
    assert_eq!(r.status, Status::Failed);
    let recorded = r.error_message.unwrap_or_default();
    assert!(
        recorded.contains("MIGRATION_DDL_LOCK_TIMEOUT_MS") && recorded.contains(&pid.to_string()),
        "{recorded}"
    );
    assert!(!recorded.contains("LOCK TABLE"), "{recorded}");
    assert_eq!(
        logs::take()
            .iter()
            .filter(|l| l.contains("retrying in"))
            .count(),
        1
    );
}

#[test]
fn a_migrations_statement_timeout_cancels_it() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = file_migration!("002_sleeps_past_its_statement_timeout")
        .run(&db, &config(&[]))
        .unwrap_err();
    assert!(
        err.to_string().contains("statement timeout"),
        "{err}: not the statement timeout"
    );
    let r = row(&db, "002_sleeps_past_its_statement_timeout");
    assert_eq!((r.status, r.attempts), (Status::Failed, 1));
    // Not mistaken for a lock timeout: not retried.
    assert!(!logs::take().iter().any(|l| l.contains("retrying in")));
}

#[test]
fn a_role_level_statement_timeout_does_not_cancel_a_migration() {
    let rd = common::role_database();
    let name = rd.url.rsplit('/').next().unwrap();
    let mut admin = PgConnection::establish(&rd.admin_url).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE {name} SET statement_timeout = '1s'",
            rd.role
        ))
        .unwrap();
    let t = TestDb::at(rd.url.clone(), Backend::Postgres);
    // One connection: the one the migrations ran on is the one checked below.
    let db = Database::connect_with(&t.url, r2d2::Pool::builder().max_size(1).min_idle(Some(0)))
        .unwrap();
    let setting = || texts(&db, "SELECT current_setting('statement_timeout') AS v");
    assert_eq!(setting(), ["1s"]);

    for id in [
        "003_sleeps_two_seconds",
        "004_sleeps_two_seconds_outside_a_transaction",
    ] {
        file_migration!(id)
            .run(&db, &config(&[]))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(row(&db, id).status, Status::Success);
        // The connection went back to the pool with the role's settings.
        assert_eq!(setting(), ["1s"], "{id}");
        assert_eq!(
            texts(&db, "SELECT current_setting('lock_timeout') AS v"),
            ["0"],
            "{id}"
        );
    }
    let lines = logs::take();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("overriding the role-level statement_timeout of 1s"))
            .count(),
        2,
        "{lines:#?}"
    );
}

/// The SQLSTATE PostgreSQL sent with a database error, if any.
fn sqlstate(error: &diesel::result::Error) -> Option<String> {
    match error {
        diesel::result::Error::DatabaseError(_, info) => {
            info.sqlstate().map(|code| code.as_str().to_owned())
        }
        _ => None,
    }
}

#[test]
fn database_errors_are_classified_by_their_sqlstate_not_their_message() {
    use migrator::{Error, ErrorKind};
    let (t, _db) = with_user_profiles();
    let mut conn = PgConnection::establish(&t.url).unwrap();

    // statement_timeout: 57014, a timeout, transient.
    conn.batch_execute("SET statement_timeout = '100ms'")
        .unwrap();
    let raw = conn.batch_execute("SELECT pg_sleep(5)").unwrap_err();
    assert_eq!(sqlstate(&raw).as_deref(), Some("57014"), "{raw}");
    let err = Error::from(raw);
    assert!(err.is_timeout() && !err.is_connection_lost() && !err.is_deterministic());
    assert_eq!(err.kind(), ErrorKind::Timeout);
    conn.batch_execute("RESET statement_timeout").unwrap();

    // lock_timeout behind a long transaction: 55P03, a timeout, transient.
    let holder = Holder::start(&t.url, Duration::from_secs(30));
    conn.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let raw = conn
        .batch_execute("ALTER TABLE user_profiles ADD COLUMN blocked INTEGER")
        .unwrap_err();
    holder.end();
    assert_eq!(sqlstate(&raw).as_deref(), Some("55P03"), "{raw}");
    let err = Error::from(raw);
    assert!(err.is_timeout() && !err.is_connection_lost() && !err.is_deterministic());
    assert_eq!(err.kind(), ErrorKind::Timeout);
    conn.batch_execute("RESET lock_timeout").unwrap();

    // An undefined table: 42P01, the same on every retry.
    let raw = conn
        .batch_execute("SELECT * FROM no_such_table")
        .unwrap_err();
    assert_eq!(sqlstate(&raw).as_deref(), Some("42P01"), "{raw}");
    let err = Error::from(raw);
    assert!(err.is_deterministic() && !err.is_timeout() && !err.is_connection_lost());
    assert_eq!(err.kind(), ErrorKind::Database);

    // pg_terminate_backend: 57P01 (or, when libpq saw the socket close first, Diesel's
    // ClosedConnection without a code), a lost connection.
    let victim = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut conn)
        .unwrap()
        .pid;
    let mut operator = PgConnection::establish(&t.url).unwrap();
    operator
        .batch_execute(&format!("SELECT pg_terminate_backend({victim})"))
        .unwrap();
    let raw = conn.batch_execute("SELECT 1").unwrap_err();
    let code = sqlstate(&raw);
    assert!(
        code.as_deref() == Some("57P01")
            || matches!(
                raw,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection,
                    _
                )
            ),
        "{raw} ({code:?})"
    );
    let err = Error::from(raw);
    assert!(err.is_connection_lost() && !err.is_timeout() && !err.is_deterministic());
    assert_eq!(err.kind(), ErrorKind::ConnectionLost);
}

#[test]
fn a_failed_migrations_source_chain_reaches_the_diesel_error() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let err = file_migration!("002_sleeps_past_its_statement_timeout")
        .run(&db, &config(&[]))
        .unwrap_err();
    assert_eq!(err.kind(), migrator::ErrorKind::MigrationFailed);
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    let diesel_error = chain
        .iter()
        .find_map(|e| e.downcast_ref::<diesel::result::Error>())
        .unwrap_or_else(|| panic!("no Diesel error in the chain of {err}"));
    assert_eq!(sqlstate(diesel_error).as_deref(), Some("57014"));
    // The migrator error in between (the failed migration's cause, a `Box<Error>`) says what
    // it is, too.
    let cause = chain[1]
        .downcast_ref::<Box<migrator::Error>>()
        .unwrap_or_else(|| panic!("the source of {err} is not the cause"));
    assert!(cause.is_timeout() && !cause.is_deterministic(), "{cause}");
}
