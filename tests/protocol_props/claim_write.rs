//! The claim/write protocol against its model (see the crate's documentation): the system
//! under test, the steps applied to both, and the checks after every step and at the end.

use std::collections::{BTreeMap, BTreeSet};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::backfill::{self, Backfill, BackfillStatus, Control, Job};
use migrator::testing::{Claim, SteppedWorker, TestDatabase};
use migrator::{
    config::BackfillMode, config::Environment, connection::Backend, migration, AnyConnection,
    Config, Context, Database, Result,
};
use proptest::prelude::*;

use crate::model::{
    coverage, hashed, op, poisoned, seed, Coverage, Model, Op, Row, Seed, Slot, Snapshot,
    FAILED_AFTER, POISON, WORKERS,
};
use crate::{cases, check_property, exec, fresh, only, PROTOCOL_CASES};

const NAME: &str = "prop_rows";

/// The computation: a function of the input that no application value looks like.
fn compute(inputs: &[Option<&str>]) -> Result<Vec<Option<String>>> {
    if poisoned(inputs[0]) {
        return Err(migrator::Error::msg("the computation fails on this input"));
    }
    Ok(vec![inputs[0].map(hashed)])
}

fn prop_rows(_config: &Config) -> Result<Job> {
    let mut backfill = Backfill::new("prop_items", "id");
    backfill
        .input("body")
        .output("out")
        .pending_when("body IS NOT NULL AND out IS NULL")
        .batch_size(3)
        .threads(1);
    Ok(Job::new(backfill, compute))
}

migrator::register_backfill!("prop_rows", prop_rows);

#[migration("001_prop_schedule", transaction = false)]
fn prop_schedule(ctx: &mut Context<'_>) -> Result<()> {
    ctx.backfill(NAME)?;
    Ok(())
}

#[derive(QueryableByName, Debug)]
struct ItemRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    out: Option<String>,
}

/// The system under test: a database, three workers, the dead ones, an application session.
struct System {
    _test: TestDatabase,
    db: Database,
    config: Config,
    workers: Vec<SteppedWorker>,
    generation: usize,
    dead: Vec<SteppedWorker>,
    app: Option<AnyConnection>,
}

impl System {
    fn worker(&mut self, slot: usize) -> SteppedWorker {
        self.generation += 1;
        SteppedWorker::new(
            &self.db,
            &self.config,
            &format!("prop-{slot}-{}", self.generation),
        )
    }

    fn app(&self) -> migrator::connection::PooledConnection {
        self.db.get().expect("an application connection")
    }
}

/// One run: the model, the system under test, and the steps so far (printed on a failure).
struct Run {
    model: Model,
    sys: System,
    log: Vec<String>,
}

impl Run {
    fn start(backend: Backend, seeds: &[Seed]) -> Run {
        let test = fresh(backend);
        let db = test.database().clone();
        let mut counter = 0;
        let mut rows = BTreeMap::new();
        {
            let mut conn = db.get().expect("a connection");
            conn.batch_execute(
                "CREATE TABLE prop_items (id BIGINT PRIMARY KEY, body TEXT, out TEXT)",
            )
            .expect("create prop_items");
            for (i, seed) in seeds.iter().enumerate() {
                let key = i as i64 + 1;
                counter += 1;
                let row = match seed {
                    Seed::Pending => Row {
                        body: Some(format!("b{key}.{counter}")),
                        out: None,
                        version: 0,
                    },
                    Seed::NoInput => Row {
                        body: None,
                        out: None,
                        version: 0,
                    },
                    Seed::Done => Row {
                        body: Some(format!("b{key}.{counter}")),
                        out: Some(format!("app{key}.{counter}")),
                        version: 0,
                    },
                    Seed::Poisoned => Row {
                        body: Some(format!("{POISON}{key}.{counter}")),
                        out: None,
                        version: 0,
                    },
                };
                exec(
                    &mut conn,
                    "INSERT INTO prop_items (body, out, id) VALUES ($1, $2, $3)",
                    &[row.body.as_deref(), row.out.as_deref()],
                    key,
                );
                rows.insert(key, row);
            }
        }
        let mut config = Config::new(Environment::Development);
        // Leases last ten batch targets: ten minutes, so that none expires during a run (a
        // dead worker's rows come back when it is cleaned up, a step of its own).
        config
            .set_backfill_mode(BackfillMode::Background)
            .set_batch_target(std::time::Duration::from_secs(60));
        only(&["001_prop_schedule"])
            .run(&db, &config)
            .expect("the migration schedules the backfill");
        let upper_key = seeds.len() as i64;
        let model = Model {
            backend,
            rows_done: 0,
            upper_key,
            next_key: upper_key + 1,
            status: BackfillStatus::Active,
            rows,
            slots: vec![Slot::default(); WORKERS],
            dead_leases: Vec::new(),
            held: None,
            pending_after_finish: BTreeSet::new(),
            counter,
        };
        let mut sys = System {
            _test: test,
            db,
            config,
            workers: Vec::new(),
            generation: 0,
            dead: Vec::new(),
            app: None,
        };
        sys.workers = (0..WORKERS).map(|slot| sys.worker(slot)).collect();
        let run = Run {
            model,
            sys,
            log: Vec::new(),
        };
        let state = backfill::get(&run.sys.db, NAME)
            .unwrap()
            .expect("scheduled");
        assert_eq!(state.upper_key, Some(upper_key));
        run.check();
        run
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "{} on {}: {message}\nsteps so far:\n  {}",
            NAME,
            self.model.backend,
            self.log.join("\n  ")
        )
    }

    /// The table, `status` and `rows_done` equal the model's.
    fn check(&self) {
        let mut conn = self.sys.app();
        let rows: Vec<ItemRow> = diesel::sql_query(
            "SELECT CAST(id AS BIGINT) AS id, body, out FROM prop_items ORDER BY id",
        )
        .load(&mut *conn)
        .expect("read prop_items");
        let actual: BTreeMap<i64, (Option<String>, Option<String>)> =
            rows.into_iter().map(|r| (r.id, (r.body, r.out))).collect();
        let expected: BTreeMap<i64, (Option<String>, Option<String>)> = self
            .model
            .rows
            .iter()
            .map(|(k, r)| (*k, (r.body.clone(), r.out.clone())))
            .collect();
        if actual != expected {
            let differ: Vec<String> = expected
                .keys()
                .chain(actual.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| actual.get(k) != expected.get(k))
                .map(|k| {
                    format!(
                        "row {k}: table {:?}, model {:?}",
                        actual.get(k),
                        expected.get(k)
                    )
                })
                .collect();
            self.fail(format!(
                "the table differs from the model:\n    {}",
                differ.join("\n    ")
            ));
        }
        self.model.check_outputs();
        let state = backfill::get(&self.sys.db, NAME)
            .unwrap()
            .expect("scheduled");
        if (state.status, state.rows_done) != (self.model.status, self.model.rows_done) {
            self.fail(format!(
                "status and rows_done are {} and {}; the model says {} and {}",
                state.status, state.rows_done, self.model.status, self.model.rows_done
            ));
        }
    }

    fn apply(&mut self, op: &Op) {
        let pg = self.model.backend == Backend::Postgres;
        // Steps that do not apply in this state are left out (shrinking keeps the rest valid).
        let held_key = self.model.held.as_ref().map(|(k, _)| *k);
        match op {
            Op::Claim(slot) if self.model.slots[*slot].batch.is_none() => self.claim(*slot),
            Op::Write(slot) if self.model.slots[*slot].batch.is_some() => self.write(*slot),
            Op::Burst(slot) => {
                // A sweep's end takes a round of its own, so a row the computation fails on
                // comes back every other round at least.
                for _ in 0..3 * FAILED_AFTER {
                    if self.model.slots[*slot].batch.is_none() {
                        if self.model.status != BackfillStatus::Active {
                            break;
                        }
                        self.claim(*slot);
                        self.check();
                    }
                    if self.model.slots[*slot].batch.is_some() {
                        self.write(*slot);
                        self.check();
                    }
                }
            }
            Op::Crash(slot) => {
                let fresh = self.sys.worker(*slot);
                let mut dead = std::mem::replace(&mut self.sys.workers[*slot], fresh);
                dead.crash();
                self.sys.dead.push(dead);
                if self.model.slots[*slot].batch.is_some() {
                    Coverage::add(&coverage(self.model.backend).crashes_with_batch, 1);
                }
                if let Some(lease) = self.model.slots[*slot].lease().filter(|_| pg) {
                    self.model.dead_leases.push(lease);
                }
                self.model.slots[*slot] = Slot::default();
                self.log.push(format!("worker {slot} crashes"));
            }
            Op::Reap => {
                for dead in self.sys.dead.drain(..) {
                    dead.reap().expect("remove a dead worker");
                }
                self.model.dead_leases.clear();
                self.log.push("the dead workers are cleaned up".into());
            }
            Op::Edit(i)
            | Op::Poison(i)
            | Op::Own(i)
            | Op::Clear(i)
            | Op::Nullify(i)
            | Op::Delete(i) => {
                let Some(key) = self.model.key_at(i).filter(|k| Some(*k) != held_key) else {
                    return;
                };
                self.app_write(op, key);
            }
            Op::Insert => {
                let key = self.model.next_key;
                self.model.next_key += 1;
                let body = self.model.fresh_value("b", key);
                exec(
                    &mut self.sys.app(),
                    "INSERT INTO prop_items (body, id) VALUES ($1, $2)",
                    &[Some(&body)],
                    key,
                );
                self.model.rows.insert(
                    key,
                    Row {
                        body: Some(body),
                        out: None,
                        version: 0,
                    },
                );
                self.log.push(format!("the application inserts row {key}"));
            }
            Op::Hold(i) if pg && held_key.is_none() => {
                let Some(key) = self.model.key_at(i) else {
                    return;
                };
                let body = self.model.fresh_value("b", key);
                let mut conn = self.sys.db.dedicated_connection().expect("a session");
                conn.batch_execute("BEGIN").expect("BEGIN");
                exec(
                    &mut conn,
                    "UPDATE prop_items SET body = $1, out = NULL WHERE id = $2",
                    &[Some(&body)],
                    key,
                );
                self.sys.app = Some(conn);
                self.log.push(format!(
                    "an application transaction sets row {key}'s input to {body:?} and stays open"
                ));
                self.model.held = Some((key, body));
            }
            Op::Release if held_key.is_some() => self.release(),
            Op::Operator(action) => self.operator(*action),
            _ => {}
        }
    }

    fn claim(&mut self, slot: usize) {
        let outcome = match self.sys.workers[slot].claim() {
            Ok(outcome) => outcome,
            Err(e) => self.fail(format!("worker {slot} cannot claim: {e}")),
        };
        self.log.push(format!("worker {slot} claims: {outcome:?}"));
        let active = self.model.status == BackfillStatus::Active;
        if (outcome == Claim::Idle) == active {
            self.fail(format!(
                "a claim on a backfill that is {} did {outcome:?}",
                self.model.status
            ));
        }
        let covered = coverage(self.model.backend);
        match &outcome {
            Claim::Batch(_) => Coverage::add(&covered.batches, 1),
            Claim::Wait => Coverage::add(&covered.waits, 1),
            _ => {}
        }
        if let Claim::Batch(keys) = &outcome {
            let pg = self.model.backend == Backend::Postgres;
            if keys.is_empty() || keys.windows(2).any(|w| w[0] >= w[1]) {
                self.fail(format!("a batch must be keys in order: {keys:?}"));
            }
            let mut leased: Vec<(i64, i64)> = self.model.dead_leases.clone();
            leased.extend(
                (0..WORKERS)
                    .filter(|s| *s != slot)
                    .filter_map(|s| self.model.slots[s].lease()),
            );
            let in_leases = self
                .model
                .rows
                .iter()
                .filter(|(k, r)| r.pending() && leased.iter().any(|(lo, hi)| lo <= *k && *k <= hi))
                .count();
            if pg && in_leases > 0 {
                Coverage::add(&covered.beside_leases, 1);
            }
            for key in keys {
                let Some(row) = self.model.rows.get(key) else {
                    self.fail(format!("claimed row {key} does not exist"));
                };
                if *key > self.model.upper_key {
                    self.fail(format!(
                        "claimed row {key} beyond upper_key {}",
                        self.model.upper_key
                    ));
                }
                if !row.pending() {
                    self.fail(format!("claimed row {key}, which is not pending: {row:?}"));
                }
                if self.model.held.as_ref().is_some_and(|(k, _)| k == key) {
                    self.fail(format!(
                        "claimed row {key}, which an open transaction holds"
                    ));
                }
                if pg {
                    if let Some((lo, hi)) = leased.iter().find(|(lo, hi)| lo <= key && key <= hi) {
                        self.fail(format!(
                            "claimed row {key}, leased by another worker ({lo}..={hi})"
                        ));
                    }
                }
            }
            let batch = keys
                .iter()
                .map(|key| {
                    let row = &self.model.rows[key];
                    Snapshot {
                        key: *key,
                        body: row.body.clone(),
                        version: row.version,
                    }
                })
                .collect();
            self.model.slots[slot].batch = Some(batch);
        }
        // A claim may end a sweep that finds nothing: the backfill is finished.
        let status = backfill::get(&self.sys.db, NAME)
            .unwrap()
            .expect("scheduled")
            .status;
        if status != self.model.status {
            if status != BackfillStatus::Finished || !active {
                self.fail(format!(
                    "a claim moved the backfill from {} to {status}",
                    self.model.status
                ));
            }
            let pending = self.model.pending_up_to_upper();
            if !pending.is_empty() {
                self.fail(format!(
                    "the backfill is finished with rows {pending:?} pending"
                ));
            }
            self.model.status = BackfillStatus::Finished;
            Coverage::add(&covered.finished, 1);
        }
    }

    fn write(&mut self, slot: usize) {
        let written = match self.sys.workers[slot].finish() {
            Ok(written) => written,
            Err(e) => self.fail(format!("worker {slot} cannot write: {e}")),
        };
        let batch = self.model.slots[slot].batch.take().expect("in flight");
        let covered = coverage(self.model.backend);
        if batch.iter().any(|s| poisoned(s.body.as_deref())) {
            // The computation fails: nothing is written, the keys are given back, and the
            // worker's count of failed batches in a row decides whether the backfill fails.
            self.log.push(format!(
                "worker {slot} fails to compute {:?}: {written} rows",
                batch.iter().map(|s| s.key).collect::<Vec<_>>()
            ));
            if written != 0 {
                self.fail(format!(
                    "worker {slot} wrote {written} rows of a failed batch"
                ));
            }
            Coverage::add(&covered.failed_batches, 1);
            let failures = &mut self.model.slots[slot].failures;
            *failures += 1;
            if *failures >= FAILED_AFTER {
                *failures = 0;
                if self.model.status == BackfillStatus::Active {
                    self.model.status = BackfillStatus::Failed;
                    Coverage::add(&covered.failed, 1);
                }
            }
            return;
        }
        self.model.slots[slot].failures = 0;
        let pg = self.model.backend == Backend::Postgres;
        let held = self.model.held.as_ref().map(|(k, _)| *k);
        let mut expected = Vec::new();
        for snap in &batch {
            let Some(row) = self.model.rows.get_mut(&snap.key) else {
                continue;
            };
            // The guard: still pending, and unchanged since the claim (PostgreSQL: the row's
            // version; SQLite: the inputs); PostgreSQL skips rows another transaction holds.
            let unchanged = if pg {
                row.version == snap.version && held != Some(snap.key)
            } else {
                row.body == snap.body
            };
            if row.pending() && unchanged {
                row.out = Some(hashed(
                    snap.body.as_deref().expect("pending rows have input"),
                ));
                row.version += 1;
                expected.push(snap.key);
            }
        }
        self.log.push(format!(
            "worker {slot} writes {:?}: {written} rows",
            batch.iter().map(|s| s.key).collect::<Vec<_>>()
        ));
        if written != expected.len() as u64 {
            self.fail(format!(
                "worker {slot} wrote {written} rows; the guard lets exactly {expected:?} through"
            ));
        }
        self.model.rows_done += written;
        Coverage::add(&covered.rows_written, written);
        Coverage::add(&covered.guarded, batch.len() as u64 - written);
    }

    fn app_write(&mut self, op: &Op, key: i64) {
        let mut conn = self.sys.app();
        match op {
            Op::Edit(_) => self.edit(key, "b"),
            Op::Poison(_) => self.edit(key, POISON),
            Op::Own(_) => {
                let out = self.model.fresh_value("app", key);
                exec(
                    &mut conn,
                    "UPDATE prop_items SET out = $1 WHERE id = $2",
                    &[Some(&out)],
                    key,
                );
                self.log
                    .push(format!("the application writes row {key}'s output {out:?}"));
                self.model.app_write(key, None, Some(out));
            }
            Op::Clear(_) => {
                exec(
                    &mut conn,
                    "UPDATE prop_items SET out = NULL WHERE id = $1",
                    &[],
                    key,
                );
                self.log
                    .push(format!("the application clears row {key}'s output"));
                self.model.app_write(key, None, None);
            }
            Op::Nullify(_) => {
                exec(
                    &mut conn,
                    "UPDATE prop_items SET body = NULL, out = NULL WHERE id = $1",
                    &[],
                    key,
                );
                self.log
                    .push(format!("the application empties row {key}'s input"));
                self.model.app_write(key, Some(None), None);
            }
            Op::Delete(_) => {
                exec(&mut conn, "DELETE FROM prop_items WHERE id = $1", &[], key);
                self.log.push(format!("the application deletes row {key}"));
                self.model.rows.remove(&key);
                self.model.pending_after_finish.remove(&key);
            }
            _ => unreachable!("not an application write: {op:?}"),
        }
    }

    /// The application sets row `key`'s input to a new value starting with `prefix`.
    fn edit(&mut self, key: i64, prefix: &str) {
        let body = self.model.fresh_value(prefix, key);
        exec(
            &mut self.sys.app(),
            "UPDATE prop_items SET body = $1, out = NULL WHERE id = $2",
            &[Some(&body)],
            key,
        );
        self.log.push(format!(
            "the application sets row {key}'s input to {body:?}"
        ));
        self.model.app_write(key, Some(Some(body)), None);
    }

    fn release(&mut self) {
        let mut conn = self.sys.app.take().expect("the open transaction");
        conn.batch_execute("COMMIT").expect("COMMIT");
        let (key, body) = self.model.held.take().expect("held");
        self.log
            .push(format!("the application transaction on row {key} commits"));
        self.model.app_write(key, Some(Some(body)), None);
    }

    fn operator(&mut self, action: Control) {
        use BackfillStatus::*;
        let from = self.model.status;
        let to = match (action, from) {
            (Control::Pause, Active | Paused) => Some(Paused),
            (Control::Resume, Paused | Failed | Active) => Some(Active),
            (Control::Cancel, Active | Paused | Failed | Cancelled) => Some(Cancelled),
            _ => None,
        };
        let result = backfill::control(&self.sys.db, NAME, action);
        self.log.push(format!(
            "an operator: {action:?} ({from} -> {:?})",
            result.as_ref().map(|s| s.status)
        ));
        match (result, to) {
            (Ok(state), Some(to)) if state.status == to => {
                if to == Cancelled {
                    Coverage::add(&coverage(self.model.backend).cancelled, 1);
                }
                self.model.status = to;
            }
            (Err(_), None) => {}
            (result, to) => self.fail(format!(
                "{action:?} on a {from} backfill: {:?}, expected {to:?}",
                result.map(|s| s.status)
            )),
        }
    }

    /// The end of a run: the open transaction commits, every batch in flight is written, the
    /// dead are cleaned up, a paused or failed backfill is resumed; then one worker must finish
    /// the backfill (a cancelled one stays as it is).
    fn drain(&mut self) {
        self.log.push("-- drain --".into());
        if self.model.held.is_some() {
            self.release();
            self.check();
        }
        for slot in 0..WORKERS {
            if self.model.slots[slot].batch.is_some() {
                self.write(slot);
                self.check();
            }
        }
        self.apply(&Op::Reap);
        // The application's data is fixed, as an operator would before resuming.
        let poisoned: Vec<i64> = self
            .model
            .rows
            .iter()
            .filter(|(_, r)| poisoned(r.body.as_deref()))
            .map(|(k, _)| *k)
            .collect();
        for key in poisoned {
            self.edit(key, "b");
            self.check();
        }
        if matches!(
            self.model.status,
            BackfillStatus::Paused | BackfillStatus::Failed
        ) {
            self.operator(Control::Resume);
        }
        for _ in 0..200 {
            self.claim(0);
            self.check();
            if self.model.slots[0].batch.is_some() {
                self.write(0);
                self.check();
            } else if self.model.status != BackfillStatus::Active {
                break;
            }
        }
        match self.model.status {
            BackfillStatus::Cancelled => {}
            BackfillStatus::Finished => {
                let left: Vec<i64> = self
                    .model
                    .pending_up_to_upper()
                    .into_iter()
                    .filter(|k| !self.model.pending_after_finish.contains(k))
                    .collect();
                if !left.is_empty() {
                    self.fail(format!("finished with rows {left:?} never computed"));
                }
            }
            status => self.fail(format!("the workers did not finish the backfill: {status}")),
        }
    }
}

fn protocol(backend: Backend, seeds: &[Seed], ops: &[Op]) {
    let mut run = Run::start(backend, seeds);
    for op in ops {
        run.apply(op);
        run.check();
    }
    run.drain();
}

#[test]
fn claim_write_protocol_on_postgres() {
    let runs = (
        prop::collection::vec(seed(), 1..16),
        prop::collection::vec(op(), 1..48),
    );
    check_property(
        "claim_write_protocol_on_postgres",
        cases(PROTOCOL_CASES),
        runs,
        |(seeds, ops)| protocol(Backend::Postgres, &seeds, &ops),
    );
    coverage(Backend::Postgres).check(Backend::Postgres);
}

#[test]
fn claim_write_protocol_on_sqlite() {
    let runs = (
        prop::collection::vec(seed(), 1..16),
        prop::collection::vec(op(), 1..48),
    );
    check_property(
        "claim_write_protocol_on_sqlite",
        cases(PROTOCOL_CASES),
        runs,
        |(seeds, ops)| protocol(Backend::Sqlite, &seeds, &ops),
    );
    coverage(Backend::Sqlite).check(Backend::Sqlite);
}
