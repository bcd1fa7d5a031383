//! Background backfills through the library on real PostgreSQL and SQLite, with a backfill of
//! this test binary (`test_shout`): the `upper_key` bound, `finalize` (rows inserted after
//! scheduling included, whatever the state), a batch that keeps failing (bounded retries, then
//! `failed` with `last_error`, `resume` after the fix), and workers stopping cleanly.

use crate::common;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{count, exec, TestDb, BACKENDS};
use migrator::backfill::{self, Backfill, BackfillStatus, Control, Job, Workers};
use migrator::{
    config::BackfillMode, config::Environment, migration, Config, Context, Database, Error, Result,
};

const NAME: &str = "test_shout";

fn shout(_config: &Config) -> Result<Job> {
    let mut backfill = Backfill::new("notes", "id");
    backfill
        .input("body")
        .output("loud")
        .pending_when("body IS NOT NULL AND loud IS NULL")
        .batch_size(20);
    Ok(Job::new(backfill, |inputs| {
        let body = inputs[0].unwrap_or_default();
        if body == "boom" {
            return Err(Error::msg("cannot shout boom"));
        }
        Ok(vec![Some(body.to_uppercase())])
    }))
}

migrator::register_backfill!("test_shout", shout);

#[migration("001_shout_notes", transaction = false)]
fn shout_notes(ctx: &mut Context<'_>) -> Result<()> {
    ctx.backfill(NAME)?;
    Ok(())
}

#[migration("002_notes_must_be_loud", transaction = false)]
fn notes_must_be_loud(ctx: &mut Context<'_>) -> Result<()> {
    ctx.finalize_backfill(NAME)?;
    Ok(())
}

fn background() -> Config {
    let mut config = Config::new(Environment::Development);
    config.set_backfill_mode(BackfillMode::Background);
    config
}

fn seed(db: &Database, from: i64, to: i64, boom: Option<i64>) {
    exec(
        db,
        "CREATE TABLE IF NOT EXISTS notes (id BIGINT PRIMARY KEY, body TEXT, loud TEXT)",
    );
    let values: Vec<String> = (from..=to)
        .map(|id| {
            let body = if Some(id) == boom {
                "boom".to_owned()
            } else {
                format!("note {id}")
            };
            format!("({id}, '{body}')")
        })
        .collect();
    exec(
        db,
        &format!("INSERT INTO notes (id, body) VALUES {}", values.join(", ")),
    );
}

fn loud(db: &Database, from: i64, to: i64) -> i64 {
    count(
        db,
        &format!(
            "SELECT COUNT(*) AS n FROM notes WHERE id BETWEEN {from} AND {to} \
             AND loud = UPPER(body)"
        ),
    )
}

fn work(db: &Database, config: &Config) -> u64 {
    Workers::run_until_idle(db.clone(), config, 2, &AtomicBool::new(false))
        .unwrap()
        .rows_written
}

fn state(db: &Database) -> backfill::BackfillState {
    backfill::get(db, NAME)
        .unwrap()
        .expect("the backfill is scheduled")
}

#[test]
fn upper_key_bounds_the_workers_and_finalize_does_the_rest() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        seed(&db, 1, 500, None);
        let config = background();
        file_migration!("001_shout_notes")
            .run(&db, &config)
            .unwrap();
        let scheduled = state(&db);
        assert_eq!(scheduled.status, BackfillStatus::Active, "{backend}");
        assert_eq!(scheduled.upper_key, Some(500));
        assert_eq!(scheduled.rows_total, 500);
        assert_eq!(loud(&db, 1, 500), 0, "background: nothing inline");
        // The application inserts rows after scheduling: they are beyond upper_key.
        seed(&db, 501, 600, None);
        assert_eq!(work(&db, &config), 500, "{backend}");
        let done = state(&db);
        assert_eq!(done.status, BackfillStatus::Finished);
        assert_eq!((done.rows_done, loud(&db, 1, 500)), (500, 500));
        assert_eq!(
            loud(&db, 501, 600),
            0,
            "rows beyond upper_key are not the workers'"
        );
        // A later migration needs them all: finalize runs the rest inline, under the lock.
        file_migrator!().unwrap().run(&db, &config).unwrap();
        assert_eq!(loud(&db, 1, 600), 600, "{backend}");
        assert_eq!(state(&db).status, BackfillStatus::Finished);
    }
}

#[test]
fn finalize_finishes_a_paused_backfill() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        seed(&db, 1, 300, None);
        let config = background();
        file_migration!("001_shout_notes")
            .run(&db, &config)
            .unwrap();
        backfill::control(&db, NAME, Control::Pause).unwrap();
        assert_eq!(work(&db, &config), 0, "paused: workers leave it alone");
        file_migrator!().unwrap().run(&db, &config).unwrap();
        assert_eq!(loud(&db, 1, 300), 300, "{backend}");
        let done = state(&db);
        assert_eq!(done.status, BackfillStatus::Finished);
        assert_eq!(done.rows_done, 300);
    }
}

#[test]
fn a_batch_that_keeps_failing_marks_the_backfill_failed() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        seed(&db, 1, 200, Some(150));
        let config = background();
        file_migration!("001_shout_notes")
            .run(&db, &config)
            .unwrap();
        // An app's workers: they keep running (the app keeps serving) while the batch with
        // row 150 is retried, then the backfill is failed.
        let workers = Workers::start(db.clone(), &{
            let mut c = config.clone();
            c.set_backfill_threads(2);
            c
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while state(&db).status == BackfillStatus::Active {
            assert!(Instant::now() < deadline, "never marked failed");
            std::thread::sleep(Duration::from_millis(100));
        }
        let failed = state(&db);
        assert_eq!(failed.status, BackfillStatus::Failed, "{backend}");
        let error = failed.last_error.clone().unwrap_or_default();
        assert!(error.contains("cannot shout boom"), "{error}");
        assert!(error.contains("failed 6 times"), "{error}");
        assert!(loud(&db, 1, 200) < 200);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) AS n FROM notes WHERE id = 150 AND loud IS NOT NULL"
            ),
            0
        );
        let report = workers.stop();
        assert_eq!(
            report.rows_written, failed.rows_done,
            "rows_done counts committed batches"
        );
        // Fixed by hand, resumed: it finishes.
        exec(&db, "UPDATE notes SET body = 'fixed' WHERE id = 150");
        let resumed = backfill::control(&db, NAME, Control::Resume).unwrap();
        assert_eq!(
            (resumed.status, resumed.last_error),
            (BackfillStatus::Active, None)
        );
        work(&db, &config);
        assert_eq!(loud(&db, 1, 200), 200, "{backend}");
        assert_eq!(state(&db).status, BackfillStatus::Finished);
    }
}

#[test]
fn inline_mode_finishes_before_the_migration_is_recorded() {
    for backend in BACKENDS {
        let t = TestDb::new(backend);
        let db = t.connect();
        seed(&db, 1, 250, None);
        let mut config = Config::new(Environment::Development);
        config.set_backfill_mode(BackfillMode::Inline);
        file_migration!("001_shout_notes")
            .run(&db, &config)
            .unwrap();
        assert_eq!(loud(&db, 1, 250), 250, "{backend}");
        let done = state(&db);
        assert_eq!(
            (done.status, done.rows_done),
            (BackfillStatus::Finished, 250)
        );
        assert!(done.finished_at.is_some());
        assert!(done.workers.is_empty());
    }
}

#[test]
fn a_bad_mode_names_the_variable_and_the_values() {
    let error = Config::from_lookup(|name| match name {
        "ENVIRONMENT" => Some("development".into()),
        "MIGRATION_BACKFILL" => Some("later".into()),
        _ => None,
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("MIGRATION_BACKFILL"), "{error}");
    assert!(error.contains("inline, background, auto"), "{error}");
    for (variable, value) in [
        ("MIGRATION_BATCH_TARGET_MS", "0"),
        ("MIGRATION_BACKFILL_PAUSE_MS", "-1"),
        ("MIGRATION_BACKFILL_THREADS", "many"),
        ("MIGRATION_INLINE_BACKFILL_SECS", "1.5"),
    ] {
        let error = Config::from_lookup(|name| match name {
            "ENVIRONMENT" => Some("development".into()),
            n if n == variable => Some(value.into()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains(variable), "{error}");
    }
}
