//! The backfill engine under production conditions, on real PostgreSQL (and SQLite where it
//! applies), with a backfill of this binary (`test_engine`, table `items`): nothing held
//! while a batch computes (an application write to a row in the batch does not wait; a short
//! `idle_in_transaction_session_timeout` does not stop it), an open transaction on a pending
//! row stepped around, operator pause and cancel during an inline run, deterministic failures
//! recorded at once, keys checked, a worker of another definition leaving the backfill alone,
//! and DDL timeouts that fit the statement (`CONCURRENTLY` beside a long report, a
//! migration's own `lock_timeout`, an operator's cancel not retried).

use crate::common;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{count, exec, texts, TestDb, BACKENDS};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use migrator::backfill::{self, Backfill, BackfillStatus, Control, Job, Workers};
use migrator::{
    config::BackfillMode, config::Environment, connection::Backend, context::Progress, migration,
    Config, Context, Database, Error, Result,
};

const NAME: &str = "test_engine";

/// Rows whose body starts with `slow` take 100 ms each; `long` ones produce an output too long
/// for the table's check constraint (when the test adds one).
fn compute(inputs: &[Option<&str>]) -> Result<Vec<Option<String>>> {
    let body = inputs[0].unwrap_or_default();
    if body.starts_with("slow") {
        std::thread::sleep(Duration::from_millis(100));
    }
    if body.starts_with("long") {
        return Ok(vec![Some("x".repeat(50))]);
    }
    Ok(vec![Some(format!("<{body}>"))])
}

fn engine_backfill() -> Backfill {
    let mut backfill = Backfill::new("items", "id");
    backfill
        .input("body")
        .output("out")
        .pending_when("body IS NOT NULL AND out IS NULL")
        .batch_size(10)
        .threads(1);
    backfill
}

fn engine(_config: &Config) -> Result<Job> {
    Ok(Job::new(engine_backfill(), compute).parameters("v1"))
}

migrator::register_backfill!("test_engine", engine);

#[migration("001_engine_backfill", transaction = false)]
fn engine_backfill_migration(ctx: &mut Context<'_>) -> Result<()> {
    ctx.backfill(NAME)?;
    Ok(())
}

#[migration("002_engine_concurrent_index", transaction = false)]
fn concurrent_index(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS items_out ON items (out)")
}

#[migration("003_engine_patient_alter", lock_timeout = "20s")]
fn patient_alter(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("ALTER TABLE items ADD COLUMN IF NOT EXISTS extra INTEGER")
}

#[migration("004_engine_alter")]
fn impatient_alter(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("ALTER TABLE items ADD COLUMN IF NOT EXISTS other INTEGER")
}

fn config(mode: BackfillMode) -> Config {
    let mut config = Config::new(Environment::Development);
    config.set_backfill_mode(mode);
    config
}

/// `items` with rows `1..=n`, bodies `{prefix} {id}`.
fn seed(db: &Database, n: i64, prefix: &str) {
    exec(
        db,
        "CREATE TABLE IF NOT EXISTS items (id BIGINT PRIMARY KEY, body TEXT, out TEXT)",
    );
    let values: Vec<String> = (1..=n)
        .map(|id| format!("({id}, '{prefix} {id}')"))
        .collect();
    exec(
        db,
        &format!("INSERT INTO items (id, body) VALUES {}", values.join(", ")),
    );
}

/// Rows whose output is the computation of their body (as it is now).
fn done(db: &Database) -> i64 {
    count(
        db,
        "SELECT COUNT(*) AS n FROM items WHERE out = '<' || body || '>'",
    )
}

fn state(db: &Database) -> backfill::BackfillState {
    backfill::get(db, NAME).unwrap().expect("scheduled")
}

fn work(db: &Database, config: &Config) -> u64 {
    Workers::run_until_idle(db.clone(), config, 2, &AtomicBool::new(false))
        .unwrap()
        .rows_written
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin(t: &TestDb) -> PgConnection {
    PgConnection::establish(&t.url).expect("a session of its own")
}

#[test]
fn an_application_write_to_a_row_in_a_batch_does_not_wait_for_its_computation() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    seed(&db, 30, "slow");
    let running = {
        let db = db.clone();
        std::thread::spawn(move || {
            engine_backfill().run(
                &db,
                &Progress::new("test", Duration::from_secs(60)),
                compute,
            )
        })
    };
    // The first batch (keys 1-10, 1 s of computing) is claimed: the application updates a
    // row of it, and must not wait for the batch (before: its row lock held for the whole
    // computation, so this UPDATE hit its lock_timeout).
    std::thread::sleep(Duration::from_millis(300));
    let mut app = admin(&t);
    app.batch_execute(
        "SET lock_timeout = '500ms'; UPDATE items SET body = 'changed 5' WHERE id = 5",
    )
    .expect("the application's write does not wait for the batch's computation");
    let report = running.join().unwrap().expect("the backfill finishes");
    // The row changed after it was read was not written with the old value: it was computed
    // again from the new one.
    assert_eq!(
        texts(&db, "SELECT out AS v FROM items WHERE id = 5"),
        vec!["<changed 5>".to_owned()]
    );
    assert_eq!(done(&db), 30);
    assert!(report.rows_skipped >= 1, "{report:?}");
}

#[test]
fn a_short_idle_in_transaction_timeout_does_not_stop_the_workers() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let name = t.url.rsplit('/').next().unwrap().to_owned();
    exec(
        &db,
        &format!("ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '300ms'"),
    );
    let db = Database::connect(&t.url).unwrap();
    seed(&db, 40, "slow");
    let config = config(BackfillMode::Background);
    file_migration!("001_engine_backfill")
        .run(&db, &config)
        .unwrap();
    assert_eq!(work(&db, &config), 40);
    assert_eq!(done(&db), 40);
    assert_eq!(state(&db).status, BackfillStatus::Finished);
}

#[test]
fn an_open_transaction_on_a_pending_row_is_stepped_around_then_finished() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    seed(&db, 200, "fast");
    let config = config(BackfillMode::Background);
    file_migration!("001_engine_backfill")
        .run(&db, &config)
        .unwrap();
    // A support engineer's transaction, left open on a pending row.
    let mut operator = admin(&t);
    operator
        .batch_execute("BEGIN; UPDATE items SET body = 'fixed 7' WHERE id = 7")
        .unwrap();
    let workers = Workers::start(db.clone(), &{
        let mut c = config.clone();
        c.set_backfill_threads(2);
        c
    })
    .unwrap();
    wait_until("every other row is done", || done(&db) == 199);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&db).status, BackfillStatus::Active, "row 7 is left");
    // The locked row waits without failing the backfill; once committed, it is done.
    operator.batch_execute("COMMIT").unwrap();
    wait_until("the backfill finishes", || {
        state(&db).status == BackfillStatus::Finished
    });
    let report = workers.stop();
    assert_eq!(done(&db), 200);
    assert_eq!(
        texts(&db, "SELECT out AS v FROM items WHERE id = 7"),
        vec!["<fixed 7>".to_owned()]
    );
    assert_eq!(report.rows_written, 200);
    assert_eq!(state(&db).rows_done, 200);
}

fn pressed_during_an_inline_run(backend: Backend, action: Control, expected: BackfillStatus) {
    let t = TestDb::new(backend);
    let db = t.connect();
    seed(&db, 100, "slow");
    let config = config(BackfillMode::Inline);
    let running = {
        let db = db.clone();
        let config = config.clone();
        std::thread::spawn(move || file_migration!("001_engine_backfill").run(&db, &config))
    };
    wait_until("some rows are done inline", || {
        backfill::get(&db, NAME)
            .ok()
            .flatten()
            .is_some_and(|s| s.rows_done >= 20)
    });
    backfill::control(&db, NAME, action).unwrap();
    running.join().unwrap().expect("the migration succeeds");
    let stopped = state(&db);
    assert_eq!(stopped.status, expected, "{backend}");
    assert!(
        stopped.rows_done < 100,
        "{backend}: stopped at once: {stopped:?}"
    );
    assert_eq!(stopped.rows_done as i64, done(&db), "{backend}");
    assert!(stopped.finished_at.is_none(), "{backend}");
    // Workers leave it alone until it is resumed; then it finishes.
    assert_eq!(work(&db, &config), 0, "{backend}");
    if expected == BackfillStatus::Paused {
        backfill::control(&db, NAME, Control::Resume).unwrap();
        work(&db, &config);
        let finished = state(&db);
        assert_eq!(
            (finished.status, finished.rows_done as i64, done(&db)),
            (BackfillStatus::Finished, 100, 100),
            "{backend}"
        );
        assert!(finished.finished_at.is_some());
    }
}

#[test]
fn pause_stops_an_inline_run_and_hands_the_rest_to_the_workers() {
    for backend in BACKENDS {
        pressed_during_an_inline_run(backend, Control::Pause, BackfillStatus::Paused);
    }
}

#[test]
fn cancel_stops_an_inline_run() {
    for backend in BACKENDS {
        pressed_during_an_inline_run(backend, Control::Cancel, BackfillStatus::Cancelled);
    }
}

#[test]
fn a_deterministic_write_error_fails_the_backfill_at_once_with_its_cause() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        exec(
            &db,
            "CREATE TABLE items (id BIGINT PRIMARY KEY, body TEXT, \
             out TEXT CHECK (length(out) < 20))",
        );
        exec(
            &db,
            "INSERT INTO items (id, body) VALUES (1, 'fine 1'), (2, 'long 2'), (3, 'fine 3')",
        );
        let config = config(BackfillMode::Background);
        file_migration!("001_engine_backfill")
            .run(&db, &config)
            .unwrap();
        work(&db, &config);
        let failed = state(&db);
        assert_eq!(failed.status, BackfillStatus::Failed, "{backend}");
        let error = failed.last_error.unwrap_or_default();
        assert!(error.contains("would fail again"), "{backend}: {error}");
        assert!(error.to_lowercase().contains("check"), "{backend}: {error}");
    }
}

#[test]
fn the_key_must_be_an_integer_not_null_and_unique() {
    for backend in BACKENDS {
        for (table, why) in [
            (
                "CREATE TABLE items (id TEXT PRIMARY KEY, body TEXT, out TEXT)",
                "type",
            ),
            (
                "CREATE TABLE items (id BIGINT, body TEXT, out TEXT)",
                "NULL",
            ),
            (
                "CREATE TABLE items (id BIGINT NOT NULL, body TEXT, out TEXT)",
                "not unique",
            ),
        ] {
            let t = TestDb::new(backend);
            let db = t.connect();
            exec(&db, table);
            let error = engine_backfill()
                .run(
                    &db,
                    &Progress::new("test", Duration::from_secs(60)),
                    compute,
                )
                .unwrap_err()
                .to_string();
            assert!(error.contains("key column id"), "{backend}: {error}");
            assert!(error.contains(why), "{backend}: {table}: {error}");
        }
    }
}

#[test]
fn workers_of_another_definition_leave_the_backfill_alone_and_say_why() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        seed(&db, 30, "fast");
        let config = config(BackfillMode::Background);
        file_migration!("001_engine_backfill")
            .run(&db, &config)
            .unwrap();
        let ours = state(&db);
        assert_eq!(ours.status, BackfillStatus::Active);
        // Scheduled by another version of the binary.
        exec(
            &db,
            "UPDATE migrator_backfills SET definition = '0123456789abcdef'",
        );
        assert_eq!(work(&db, &config), 0, "{backend}");
        let left = state(&db);
        assert_eq!(left.status, BackfillStatus::Active, "{backend}");
        assert_eq!(done(&db), 0);
        let why = left.last_error.unwrap_or_default();
        assert!(why.contains("different definition"), "{backend}: {why}");
    }
}

/// A session holding a snapshot (a long `REPEATABLE READ` report on another table) for
/// `hold`, then committing.
fn long_report(t: &TestDb, hold: Duration) -> std::thread::JoinHandle<()> {
    let url = t.url.clone();
    let (ready, started) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut report = PgConnection::establish(&url).unwrap();
        report
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT COUNT(*) FROM report_source",
            )
            .unwrap();
        ready.send(()).unwrap();
        std::thread::sleep(hold);
        report.batch_execute("COMMIT").unwrap();
    });
    started.recv().unwrap();
    handle
}

#[test]
fn create_index_concurrently_waits_for_a_long_report_instead_of_failing() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    seed(&db, 10, "fast");
    exec(&db, "CREATE TABLE report_source (n INTEGER)");
    let mut config = config(BackfillMode::Inline);
    config.set_ddl_lock_timeout(Duration::from_millis(100));
    config.set_ddl_lock_retries(0);
    let report = long_report(&t, Duration::from_secs(2));
    file_migration!("002_engine_concurrent_index")
        .run(&db, &config)
        .expect("the index build waits for the report, not for the DDL lock timeout");
    report.join().unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'items_out' AND i.indisvalid"
        ),
        1
    );
}

/// A session holding `items` locked (an open transaction that wrote to it).
fn hold_items(t: &TestDb) -> PgConnection {
    let mut holder = admin(t);
    holder
        .batch_execute("BEGIN; LOCK TABLE items IN ROW EXCLUSIVE MODE")
        .unwrap();
    holder
}

#[test]
fn a_migrations_own_lock_timeout_overrides_the_default() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    seed(&db, 5, "fast");
    let mut config = config(BackfillMode::Inline);
    config.set_ddl_lock_timeout(Duration::from_millis(100));
    config.set_ddl_lock_retries(0);
    assert_eq!(
        file_migrations!()
            .into_iter()
            .find(|m| m.id() == "003_engine_patient_alter")
            .and_then(|m| m.lock_timeout()),
        Some(Duration::from_secs(20))
    );
    // The default (100 ms, no retry) gives up while the table is held...
    let mut holder = hold_items(&t);
    let error = file_migration!("004_engine_alter")
        .run(&db, &config)
        .unwrap_err();
    assert!(
        matches!(&error, Error::MigrationFailed { cause, .. } if matches!(**cause, Error::DdlLockTimeout { .. })),
        "{error}"
    );
    // ...while the migration that declares 20 s waits for the holder to end.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        holder.batch_execute("COMMIT").unwrap();
    });
    let mut holder2 = hold_items(&t);
    let release2 = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        holder2.batch_execute("COMMIT").unwrap();
    });
    file_migration!("003_engine_patient_alter")
        .run(&db, &config)
        .expect("its own lock_timeout outlasts the holders");
    release.join().unwrap();
    release2.join().unwrap();
}

#[test]
fn an_operators_cancel_is_not_a_lock_timeout_and_is_not_retried() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    seed(&db, 5, "fast");
    let mut config = config(BackfillMode::Inline);
    config.set_ddl_lock_retries(5);
    let mut holder = hold_items(&t);
    let running = {
        let db = db.clone();
        let config = config.clone();
        std::thread::spawn(move || file_migration!("003_engine_patient_alter").run(&db, &config))
    };
    // The migration waits on the holder's lock; an operator cancels it.
    let mut operator = admin(&t);
    wait_until("the migration waits for the lock", || {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "SELECT COUNT(pg_cancel_backend(pid)) AS n FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE items%'",
        )
        .get_result::<N>(&mut operator)
        .unwrap()
        .n > 0
    });
    let error = running.join().unwrap().unwrap_err();
    holder.batch_execute("ROLLBACK").unwrap();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::MigrationFailed { cause, .. } if !matches!(**cause, Error::DdlLockTimeout { .. })),
        "{text}"
    );
    assert!(text.contains("user request"), "{text}");
}
