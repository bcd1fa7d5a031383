//! The generic backfill engine on both backends: several inputs and outputs, NULLs, progress
//! (its last line logged once), misconfiguration, a failing or panicking computation (its
//! batch rolled back, the rest resumable), a predicate that never becomes false, and claimed
//! rows that the application can still reference by foreign key.

use crate::common;

use std::time::Duration;

use common::{count, exec, logs, TestDb};
use migrator::backfill::Backfill;
use migrator::{connection::Backend, context::Progress, Error};

const ROWS: i64 = 1000;

fn seed(t: &TestDb) -> migrator::Database {
    let db = t.connect();
    exec(
        &db,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, a TEXT, b TEXT, upper_a TEXT, joined TEXT)",
    );
    let insert = match t.backend {
        Backend::Postgres => format!(
            "INSERT INTO items (id, a, b) SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'a' || g END, \
             'b' || g FROM generate_series(1, {ROWS}) AS g"
        ),
        _ => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {ROWS}) \
             INSERT INTO items (id, a, b) SELECT x, CASE WHEN x % 10 = 0 THEN NULL ELSE 'a' || x END, \
             'b' || x FROM g"
        ),
    };
    exec(&db, &insert);
    db
}

fn items() -> Backfill {
    let mut backfill = Backfill::new("items", "id");
    backfill
        .input("a")
        .input("b")
        .output("upper_a")
        .output("joined")
        .pending_when("joined IS NULL")
        .batch_size(37)
        .threads(2);
    backfill
}

fn progress() -> Progress {
    Progress::new("test", Duration::from_secs(60))
}

fn compute(inputs: &[Option<&str>]) -> migrator::Result<Vec<Option<String>>> {
    Ok(vec![
        inputs[0].map(str::to_uppercase),
        Some(format!(
            "{}+{}",
            inputs[0].unwrap_or("NULL"),
            inputs[1].unwrap_or("NULL")
        )),
    ])
}

both!(computes_every_row_once_with_nulls_and_progress);
fn computes_every_row_once_with_nulls_and_progress(backend: Backend) {
    let t = TestDb::new(backend);
    let db = seed(&t);
    let progress = progress();
    let report = items().run(&db, &progress, compute).unwrap();
    assert_eq!(report.rows_updated, ROWS as u64);
    assert_eq!(report.batches, (ROWS as u64).div_ceil(37));
    let snapshot = progress.snapshot();
    assert_eq!((snapshot.done, snapshot.total), (ROWS as u64, ROWS as u64));
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM items WHERE joined IS NULL"),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE id = 7 AND upper_a = 'A7' AND joined = 'a7+b7'"
        ),
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM items WHERE id = 10 AND upper_a IS NULL AND joined = 'NULL+b10'"),
        1
    );
    assert_eq!(items().remaining(&db).unwrap(), 0);
    assert_eq!(
        items().run(&db, &progress, compute).unwrap().rows_updated,
        0
    );
}

both!(an_application_write_between_claim_and_write_wins);
/// The guard: a row whose input the application changes after the row was claimed (here,
/// while its batch computes) is not written with the stale output; a later sweep computes it
/// from the new input. On SQLite the write skips comparing the inputs only when nothing was
/// committed by another connection since the claim: this write is another connection's, so
/// the batch's inputs are compared and row 500 is left alone. Writes to other rows and tables
/// meanwhile (row 900, `other`) leave their batches' rows written all the same.
fn an_application_write_between_claim_and_write_wins(backend: Backend) {
    let t = TestDb::new(backend);
    let db = seed(&t);
    exec(&db, "CREATE TABLE other (n INTEGER)");
    let app = db.clone();
    let report = items()
        .run(&db, &progress(), |inputs| {
            match inputs[1] {
                // Row 500's input changes while its batch computes: the output computed from
                // "b500" must not be written.
                Some("b500") => exec(&app, "UPDATE items SET b = 'changed' WHERE id = 500"),
                // Commits that touch none of the batch's rows.
                Some("b700") => exec(&app, "INSERT INTO other (n) VALUES (1)"),
                Some("b800") => exec(&app, "UPDATE items SET b = 'b900x' WHERE id = 900"),
                _ => {}
            }
            compute(inputs)
        })
        .unwrap();
    // Row 500 was computed twice (once from the old input, skipped by the guard); 900 either
    // once (its batch was claimed after the change) or twice.
    assert!(report.rows_skipped >= 1, "{report:?}");
    assert_eq!(report.rows_updated, ROWS as u64, "{report:?}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE id = 500 AND joined = 'NULL+changed'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE id = 900 AND joined = 'NULL+b900x'"
        ),
        1
    );
    // Every row's output is its current inputs'.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE joined IS NULL OR joined <> \
             COALESCE(a, 'NULL') || '+' || COALESCE(b, 'NULL')"
        ),
        0
    );
}

both!(a_failing_batch_is_rolled_back_and_the_rest_resumes);
fn a_failing_batch_is_rolled_back_and_the_rest_resumes(backend: Backend) {
    let t = TestDb::new(backend);
    let db = seed(&t);
    let err = items()
        .run(&db, &progress(), |inputs| {
            if inputs[1] == Some("b500") {
                return Err(Error::msg("cannot compute row 500"));
            }
            compute(inputs)
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "cannot compute row 500");
    // The failing batch (rows 482..=518) wrote nothing.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE id BETWEEN 482 AND 518 AND joined IS NOT NULL"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE joined IS NOT NULL"
        ) >= 481
    );
    let report = items().run(&db, &progress(), compute).unwrap();
    assert!(report.rows_updated > 0);
    assert_eq!(items().remaining(&db).unwrap(), 0);
}

both!(a_panicking_computation_is_an_error_and_leaves_no_open_transaction);
fn a_panicking_computation_is_an_error_and_leaves_no_open_transaction(backend: Backend) {
    let t = TestDb::new(backend);
    let db = migrator::Database::connect_with(
        &t.url,
        r2d2::Pool::builder().max_size(3).min_idle(Some(0)),
    )
    .unwrap();
    exec(
        &db,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, a TEXT, b TEXT, upper_a TEXT, joined TEXT)",
    );
    exec(
        &db,
        "INSERT INTO items (id, a, b) VALUES (1, 'x', 'y'), (2, 'p', 'q')",
    );
    let err = items()
        .run(&db, &progress(), |_| panic!("boom in compute"))
        .unwrap_err();
    assert!(matches!(err, Error::Panic { .. }), "{err:?}");
    assert_eq!(err.to_string(), "panicked: boom in compute");
    // Every pooled connection is usable and its row locks are gone: the rows can be claimed.
    assert_eq!(
        items().run(&db, &progress(), compute).unwrap().rows_updated,
        2
    );
}

#[test]
fn a_predicate_that_never_becomes_false_is_reported() {
    let t = TestDb::new(Backend::Sqlite);
    let db = seed(&t);
    let mut backfill = items();
    backfill.pending_when("upper_a IS NULL OR 1 = 1");
    let err = backfill.run(&db, &progress(), compute).unwrap_err();
    assert!(err.to_string().contains("no progress"), "{err}");
}

#[test]
fn misconfiguration_is_an_error_before_touching_the_database() {
    let t = TestDb::new(Backend::Sqlite);
    let db = seed(&t);
    let mut bad = Backfill::new("items; DROP TABLE items", "id");
    bad.input("a")
        .output("joined")
        .pending_when("joined IS NULL");
    assert_eq!(
        bad.run(&db, &progress(), compute).unwrap_err().to_string(),
        "backfill of items; DROP TABLE items: \"items; DROP TABLE items\" is not a plain SQL identifier"
    );
    let mut no_predicate = Backfill::new("items", "id");
    no_predicate.input("a").output("joined");
    assert!(no_predicate
        .run(&db, &progress(), compute)
        .unwrap_err()
        .to_string()
        .contains("pending_when"));
    let mut no_output = Backfill::new("items", "id");
    no_output.input("a").pending_when("joined IS NULL");
    assert!(no_output
        .run(&db, &progress(), compute)
        .unwrap_err()
        .to_string()
        .contains("output columns"));
    let err = items()
        .run(&db, &progress(), |_| Ok(vec![Some("one".into())]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("returned 1 values for 2 output columns"),
        "{err}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) AS n FROM items WHERE joined IS NOT NULL"
        ),
        0
    );
}

both!(the_last_progress_line_is_logged_once);
fn the_last_progress_line_is_logged_once(backend: Backend) {
    let t = TestDb::new(backend);
    let db = seed(&t);
    logs::take();
    // A line at every batch: the last batch's line is the final one.
    let progress = Progress::new("progress_once", Duration::ZERO);
    items().run(&db, &progress, compute).unwrap();
    let lines = logs::take();
    let last = lines
        .iter()
        .filter(|l| l.contains("Migration progress_once progress: 1000/1000 rows"))
        .count();
    assert_eq!(last, 1, "{lines:#?}");
}

#[test]
fn claimed_rows_can_still_be_referenced_by_foreign_keys() {
    let t = TestDb::new(Backend::Postgres);
    let db = seed(&t);
    exec(
        &db,
        "CREATE TABLE item_notes (item_id INTEGER NOT NULL REFERENCES items (id), note TEXT)",
    );
    let report = items().run(&db, &progress(), |inputs| {
        if inputs[1] == Some("b500") {
            // While row 500's batch is claimed, the application adds a row that references it
            // (its foreign key check takes a KEY SHARE lock on row 500).
            use diesel::connection::SimpleConnection;
            let mut app = db.get()?;
            app.batch_execute(
                "SET lock_timeout = '3s';
                 INSERT INTO item_notes (item_id, note) VALUES (500, 'added meanwhile');
                 RESET lock_timeout;",
            )?;
        }
        compute(inputs)
    });
    assert_eq!(report.unwrap().rows_updated, ROWS as u64);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM item_notes"), 1);
}
