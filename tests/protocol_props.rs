//! Property tests of the two decisions the rest stands on, on PostgreSQL and SQLite, each
//! against a model small enough to be obviously right:
//!
//! - **The backfill's claim/write protocol.** Random interleavings of three workers' claims and
//!   writes (each worker a process of its own, driven a half-step at a time through
//!   [`migrator::testing::SteppedWorker`], which runs the worker threads' own code), crashes
//!   (a batch dropped unwritten, its lease left behind) and the clean-up of dead workers,
//!   application writes between a claim and its write (new inputs, the application's own output,
//!   cleared outputs, NULL inputs, deletes, inserts beyond `upper_key`, and on PostgreSQL a
//!   transaction left open on a row), and an operator's pause, resume and cancel. The model
//!   predicts every write exactly (which rows the guard lets through), so after every step the
//!   table, `status` and `rows_done` must equal the model's; claims must take only pending rows
//!   up to `upper_key`, never a row another live worker leased (PostgreSQL) or an open
//!   transaction holds; `finished` only when nothing is pending. At the end every batch in
//!   flight is written, the dead are cleaned up, a paused backfill resumed, and workers must
//!   finish it: every row computed from its current inputs.
//! - **The plan's decisions.** The policy table of DESIGN.md as a pure function of the
//!   variables (random values and spellings), confirmation (`--yes`, a terminal, a pinned plan
//!   that matches or not) and the tracking table's rows (none, `success`, `failed`, `skipped`,
//!   `running`), against [`Migrator::plan`]; then `up` (`Migrator::run`) must do what the plan
//!   says: apply everything pending when it allows it, change nothing when it refuses.
//!
//! Cases per property and backend: `PROPTEST_CASES`, else 32 runs of the protocol and 64 plans
//! (about 20 s in all on 2 cores). A failure prints the minimal sequence of steps, and its seed
//! is kept in `tests/proptest-regressions/protocol_props.txt` (tried first on the next run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::backfill::{self, Backfill, BackfillStatus, Control, Job};
use migrator::testing::{Claim, Migrations, Spec, SteppedWorker, TestDatabase};
use migrator::{
    migration, AnyConnection, Backend, BackfillMode, Config, Confirmation, Context, Database,
    Environment, Kind, MarkAs, Migrator, Result, Source,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestError, TestRunner};

const NAME: &str = "prop_rows";
const WORKERS: usize = 3;

/// The computation: a function of the input that no application value looks like.
fn compute(inputs: &[Option<&str>]) -> Result<Vec<Option<String>>> {
    Ok(vec![inputs[0].map(hashed)])
}

fn hashed(body: &str) -> String {
    format!("h({body})")
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

#[migration("002_prop_plan_a")]
fn prop_plan_a(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_a (id INTEGER)")
}

#[migration("003_prop_plan_b", transaction = false)]
fn prop_plan_b(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_b (id INTEGER)")
}

#[migration("004_prop_plan_c")]
fn prop_plan_c(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_c (id INTEGER)")
}

/// The plan tests' migrations, in run order, with whether each runs in a transaction.
const PLANNED: [(&str, bool); 3] = [
    ("002_prop_plan_a", true),
    ("003_prop_plan_b", false),
    ("004_prop_plan_c", true),
];

fn only(ids: &[&str]) -> Migrator {
    Migrator::from_migrations(migrator::registered().filter(|m| ids.contains(&m.id())))
        .expect("the test's migrations")
}

/// Cases per property: `PROPTEST_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs of the protocol per backend, by default (each is a database and up to 48 steps).
const PROTOCOL_CASES: u32 = 32;
/// Plans per backend, by default (each is a database, a plan and an `up`).
const PLAN_CASES: u32 = 64;

fn fresh(backend: Backend) -> TestDatabase {
    let mut spec = Spec::new();
    spec.migrations(Migrations::None);
    spec.create(backend)
        .unwrap_or_else(|e| panic!("a fresh {backend} database: {e}"))
}

/// Runs `sql` with `values` (text) then `key` (an integer) as its bind parameters.
fn exec(conn: &mut AnyConnection, sql: &str, values: &[Option<&str>], key: i64) {
    let query = diesel::sql_query(sql);
    let done = match values {
        [] => query.bind::<BigInt, _>(key).execute(conn),
        [a] => query
            .bind::<Nullable<Text>, _>(*a)
            .bind::<BigInt, _>(key)
            .execute(conn),
        [a, b] => query
            .bind::<Nullable<Text>, _>(*a)
            .bind::<Nullable<Text>, _>(*b)
            .bind::<BigInt, _>(key)
            .execute(conn),
        _ => unreachable!("at most two values"),
    };
    done.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The claim/write protocol.

/// A row as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    body: Option<String>,
    out: Option<String>,
    /// Bumped by every committed write to the row (PostgreSQL's guard is its `xmin`).
    version: u64,
}

impl Row {
    fn pending(&self) -> bool {
        self.body.is_some() && self.out.is_none()
    }
}

/// A claimed row as the claim read it.
#[derive(Clone, Debug)]
struct Snapshot {
    key: i64,
    body: Option<String>,
    version: u64,
}

/// What a worker slot holds: the batch in flight and its lease (PostgreSQL).
#[derive(Clone, Debug, Default)]
struct Slot {
    batch: Option<Vec<Snapshot>>,
}

impl Slot {
    fn lease(&self) -> Option<(i64, i64)> {
        let batch = self.batch.as_ref()?;
        Some((batch.first()?.key, batch.last()?.key))
    }
}

#[derive(Debug)]
struct Model {
    backend: Backend,
    rows: BTreeMap<i64, Row>,
    upper_key: i64,
    next_key: i64,
    status: BackfillStatus,
    rows_done: u64,
    slots: Vec<Slot>,
    /// Leases of crashed workers not yet cleaned up.
    dead_leases: Vec<(i64, i64)>,
    /// PostgreSQL: the row an open application transaction holds, and the body it writes.
    held: Option<(i64, String)>,
    /// Rows made pending again after the backfill finished (the application's to do).
    pending_after_finish: BTreeSet<i64>,
    counter: u64,
}

impl Model {
    fn fresh_value(&mut self, prefix: &str, key: i64) -> String {
        self.counter += 1;
        format!("{prefix}{key}.{}", self.counter)
    }

    fn key_at(&self, index: &Index) -> Option<i64> {
        if self.rows.is_empty() {
            return None;
        }
        self.rows.keys().nth(index.index(self.rows.len())).copied()
    }

    /// An application write to `key`, committed.
    fn app_write(&mut self, key: i64, body: Option<Option<String>>, out: Option<String>) {
        let finished = self.status == BackfillStatus::Finished;
        let row = self.rows.get_mut(&key).expect("the row exists");
        if let Some(body) = body {
            row.body = body;
        }
        row.out = out;
        row.version += 1;
        if finished && row.pending() {
            self.pending_after_finish.insert(key);
        }
    }

    fn pending_up_to_upper(&self) -> Vec<i64> {
        self.rows
            .iter()
            .filter(|(k, r)| **k <= self.upper_key && r.pending())
            .map(|(k, _)| *k)
            .collect()
    }

    /// Every row's output is empty, the application's own, or computed from its current input.
    fn check_outputs(&self) {
        for (key, row) in &self.rows {
            if let Some(out) = &row.out {
                let from_app = out.starts_with("app");
                let computed = row.body.as_deref().map(hashed).as_ref() == Some(out);
                assert!(
                    from_app || computed,
                    "row {key}: output {out:?} is neither the application's nor computed from \
                     its input {:?}",
                    row.body
                );
            }
        }
    }
}

/// One step of a run.
#[derive(Clone, Debug)]
enum Op {
    /// Worker `n` claims a batch (or ends a sweep, or finds nothing to do).
    Claim(usize),
    /// Worker `n` computes and writes its batch in flight.
    Write(usize),
    /// Worker `n`'s process dies: its batch is dropped unwritten, its lease stays; a new
    /// process takes the slot.
    Crash(usize),
    /// The dead workers' rows (and leases) are cleaned up.
    Reap,
    /// The application changes a row's input (its output must be computed again).
    Edit(Index),
    /// The application writes a row's output itself.
    Own(Index),
    /// The application clears a row's output (same input: pending again).
    Clear(Index),
    /// The application empties a row's input.
    Nullify(Index),
    /// The application deletes a row.
    Delete(Index),
    /// The application inserts a row (beyond `upper_key`: its own).
    Insert,
    /// PostgreSQL: an application transaction changes a row's input and stays open.
    Hold(Index),
    /// ... and commits.
    Release,
    /// An operator's action.
    Operator(Control),
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..WORKERS;
    // A cancel ends a run's interest (nobody works on the backfill again): about two runs in
    // five have one.
    prop_oneof![
        20 => slot.clone().prop_map(Op::Claim),
        20 => slot.clone().prop_map(Op::Write),
        10 => slot.prop_map(Op::Crash),
        3 => Just(Op::Reap),
        8 => any::<Index>().prop_map(Op::Edit),
        3 => any::<Index>().prop_map(Op::Own),
        4 => any::<Index>().prop_map(Op::Clear),
        3 => any::<Index>().prop_map(Op::Nullify),
        3 => any::<Index>().prop_map(Op::Delete),
        3 => Just(Op::Insert),
        4 => any::<Index>().prop_map(Op::Hold),
        4 => Just(Op::Release),
        4 => Just(Op::Operator(Control::Pause)),
        5 => Just(Op::Operator(Control::Resume)),
        2 => Just(Op::Operator(Control::Cancel)),
    ]
}

/// A row as the run starts: pending, with a NULL input, or with the application's output.
#[derive(Clone, Copy, Debug)]
enum Seed {
    Pending,
    NoInput,
    Done,
}

fn seed() -> impl Strategy<Value = Seed> {
    prop_oneof![6 => Just(Seed::Pending), 1 => Just(Seed::NoInput), 1 => Just(Seed::Done)]
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

    fn app(&self) -> migrator::PooledConnection {
        self.db.get().expect("an application connection")
    }
}

struct Run {
    model: Model,
    sys: System,
    log: Vec<String>,
}

/// What the runs of one property did, across its cases: a property whose runs never reach the
/// interesting states would pass without testing them, so the test checks that they do.
#[derive(Debug, Default)]
struct Coverage {
    batches: AtomicU64,
    rows_written: AtomicU64,
    /// Claimed rows that the write's guard left alone (changed or done meanwhile).
    guarded: AtomicU64,
    /// Claims that found only rows leased by others or locked (PostgreSQL).
    waits: AtomicU64,
    /// Claims made while pending rows were leased by another worker, live or dead (PostgreSQL).
    beside_leases: AtomicU64,
    finished: AtomicU64,
    crashes_with_batch: AtomicU64,
    cancelled: AtomicU64,
}

impl Coverage {
    const fn new() -> Coverage {
        Coverage {
            batches: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            guarded: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            beside_leases: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            crashes_with_batch: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// With enough cases (the default 32), every interesting state was reached at least once.
    fn check(&self, backend: Backend) {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        eprintln!("{backend}: {self:?}");
        if cases(PROTOCOL_CASES) < 16 {
            eprintln!("{backend}: fewer than 16 cases: coverage not checked");
            return;
        }
        let mut reached = vec![
            ("batches", count(&self.batches)),
            ("rows written", count(&self.rows_written)),
            ("rows left by the guard", count(&self.guarded)),
            ("finished backfills", count(&self.finished)),
            (
                "crashes with a batch in flight",
                count(&self.crashes_with_batch),
            ),
            ("cancelled backfills", count(&self.cancelled)),
        ];
        if backend == Backend::Postgres {
            reached.push((
                "claims beside rows leased by another worker",
                count(&self.beside_leases),
            ));
        }
        for (what, n) in reached {
            assert!(n > 0, "{backend}: no run reached any {what}: {self:?}");
        }
    }
}

static POSTGRES_COVERAGE: Coverage = Coverage::new();
static SQLITE_COVERAGE: Coverage = Coverage::new();

fn coverage(backend: Backend) -> &'static Coverage {
    match backend {
        Backend::Postgres => &POSTGRES_COVERAGE,
        _ => &SQLITE_COVERAGE,
    }
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
            Op::Edit(i) | Op::Own(i) | Op::Clear(i) | Op::Nullify(i) | Op::Delete(i) => {
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
        let covered = coverage(self.model.backend);
        Coverage::add(&covered.rows_written, written);
        Coverage::add(&covered.guarded, batch.len() as u64 - written);
    }

    fn app_write(&mut self, op: &Op, key: i64) {
        let mut conn = self.sys.app();
        match op {
            Op::Edit(_) => {
                let body = self.model.fresh_value("b", key);
                exec(
                    &mut conn,
                    "UPDATE prop_items SET body = $1, out = NULL WHERE id = $2",
                    &[Some(&body)],
                    key,
                );
                self.log.push(format!(
                    "the application sets row {key}'s input to {body:?}"
                ));
                self.model.app_write(key, Some(Some(body)), None);
            }
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

/// Runs `test` on `cases` values of `strategy`; a failure is shrunk to a minimal input,
/// printed, and its seed kept in `proptest-regressions/` (tried first on the next run).
fn check_property<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/protocol_props.txt"
        )))),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, |value| {
        test(value);
        Ok(())
    }) {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => {
            panic!("{name} failed: {reason}\nminimal failing input: {value:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("{name} aborted: {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The plan's decisions.

/// A migration's row in `applied_migrations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracked {
    NoRow,
    Success,
    Failed,
    Skipped,
    /// Interrupted: `running` with no runner holding the lock.
    Running,
}

impl Tracked {
    fn pending(self) -> bool {
        matches!(self, Tracked::NoRow | Tracked::Failed | Tracked::Running)
    }
}

fn tracked() -> impl Strategy<Value = Tracked> {
    prop_oneof![
        2 => Just(Tracked::NoRow),
        1 => Just(Tracked::Success),
        1 => Just(Tracked::Failed),
        1 => Just(Tracked::Skipped),
        1 => Just(Tracked::Running),
    ]
}

/// A boolean variable: unset, or set with one of its accepted spellings.
fn flag() -> impl Strategy<Value = Option<(bool, String)>> {
    let spelled = |value: bool, spellings: &'static [&'static str]| {
        (prop::sample::select(spellings), any::<bool>()).prop_map(move |(s, upper)| {
            Some((
                value,
                if upper {
                    s.to_uppercase()
                } else {
                    s.to_owned()
                },
            ))
        })
    };
    prop_oneof![
        Just(None),
        spelled(true, &["true", "1", "yes", "on", "True"]),
        spelled(false, &["false", "0", "no", "off", "False"]),
    ]
}

/// `MIGRATION_CONFIRM`: unset, the pending IDs (reordered, spaced), or a list that differs.
#[derive(Clone, Debug)]
enum Pin {
    Unset,
    Exact { reversed: bool, spaced: bool },
    Drop,
    Extra,
}

fn pin() -> impl Strategy<Value = Pin> {
    prop_oneof![
        1 => Just(Pin::Unset),
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(reversed, spaced)| Pin::Exact { reversed, spaced }),
        1 => Just(Pin::Drop),
        1 => Just(Pin::Extra),
    ]
}

#[derive(Clone, Debug)]
struct Policy {
    environment: Environment,
    environment_spelling: bool,
    auto: Option<(bool, String)>,
    enable_prod: Option<(bool, String)>,
    require_confirmation: Option<(bool, String)>,
    backup: Option<(bool, String)>,
    assume_yes: bool,
    interactive: bool,
    pin: Pin,
    tracked: [Tracked; 3],
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        (
            prop_oneof![
                Just(Environment::Development),
                Just(Environment::Staging),
                Just(Environment::Production),
            ],
            any::<bool>(),
            flag(),
            flag(),
            flag(),
            flag(),
        ),
        (
            // `--yes` and a terminal each settle confirmation before the pinned plan is read.
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.25),
            pin(),
            [tracked(), tracked(), tracked()],
        ),
    )
        .prop_map(
            |(
                (
                    environment,
                    environment_spelling,
                    auto,
                    enable_prod,
                    require_confirmation,
                    backup,
                ),
                (assume_yes, interactive, pin, tracked),
            )| Policy {
                environment,
                environment_spelling,
                auto,
                enable_prod,
                require_confirmation,
                backup,
                assume_yes,
                interactive,
                pin,
                tracked,
            },
        )
}

/// What DESIGN.md's table says, as a pure function.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    pending: Vec<&'static str>,
    decision_variables: Vec<&'static str>,
    decision_allows: Vec<bool>,
    decision_sources: Vec<Source>,
    confirmation: &'static str,
    confirm_with: Option<String>,
    backup_label: Option<String>,
    up_allowed: bool,
    startup_skips: bool,
}

fn pinned(policy: &Policy, pending: &[&str]) -> Option<String> {
    match &policy.pin {
        Pin::Unset => None,
        Pin::Exact { reversed, spaced } => {
            let mut ids: Vec<&str> = pending.to_vec();
            if *reversed {
                ids.reverse();
            }
            Some(ids.join(if *spaced { " , " } else { "," }))
        }
        Pin::Drop => Some(
            pending
                .iter()
                .skip(1)
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        ),
        Pin::Extra => {
            let mut ids: Vec<&str> = pending.to_vec();
            ids.push("009_prop_not_pending");
            Some(ids.join(","))
        }
    }
}

fn expected(policy: &Policy) -> Expected {
    let production = policy.environment == Environment::Production;
    let value = |flag: &Option<(bool, String)>, default: bool| {
        flag.as_ref().map_or(default, |(value, _)| *value)
    };
    let source = |flag: &Option<(bool, String)>| {
        if flag.is_some() {
            Source::Explicit
        } else {
            Source::Default
        }
    };
    let auto = value(&policy.auto, !production);
    let enabled = value(&policy.enable_prod, false);
    let require = value(&policy.require_confirmation, production);
    let backup = value(&policy.backup, production);
    let pending: Vec<&'static str> = PLANNED
        .iter()
        .zip(policy.tracked)
        .filter(|(_, t)| t.pending())
        .map(|((id, _), _)| *id)
        .collect();
    let env_allows = !production || enabled;
    let (mut variables, mut allows, mut sources) = if production {
        (
            vec!["ENABLE_PROD_MIGRATIONS"],
            vec![enabled],
            vec![source(&policy.enable_prod)],
        )
    } else {
        (vec!["ENVIRONMENT"], vec![true], vec![Source::Explicit])
    };
    let pin = pinned(policy, &pending);
    let confirmation = if pending.is_empty() || !require {
        "not_required"
    } else if policy.assume_yes {
        "assumed_yes"
    } else if policy.interactive {
        "terminal"
    } else {
        match (&policy.pin, &pin) {
            (_, None) => "missing",
            (Pin::Exact { .. }, Some(_)) => "pinned",
            // Dropping the only pending ID leaves an empty list; adding one is never exact.
            _ => "mismatch",
        }
    };
    let confirmation_allows = !matches!(confirmation, "missing" | "mismatch");
    if !pending.is_empty() {
        variables.extend(["MIGRATION_REQUIRE_CONFIRMATION", "MIGRATION_BACKUP_BEFORE"]);
        allows.extend([confirmation_allows, true]);
        sources.extend([source(&policy.require_confirmation), source(&policy.backup)]);
    }
    Expected {
        confirm_with: (!pending.is_empty()).then(|| pending.join(",")),
        backup_label: (backup && !pending.is_empty()).then(|| format!("before-{}", pending[0])),
        up_allowed: env_allows && (pending.is_empty() || confirmation_allows),
        startup_skips: !auto || !env_allows,
        pending,
        decision_variables: variables,
        decision_allows: allows,
        decision_sources: sources,
        confirmation,
    }
}

fn confirmation_name(confirmation: &Confirmation) -> &'static str {
    match confirmation {
        Confirmation::NotRequired => "not_required",
        Confirmation::AssumedYes => "assumed_yes",
        Confirmation::Terminal => "terminal",
        Confirmation::Pinned => "pinned",
        Confirmation::Missing => "missing",
        Confirmation::Mismatch { .. } => "mismatch",
        _ => "unknown",
    }
}

fn config_of(policy: &Policy, pending: &[&str], backups: &std::path::Path) -> Config {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    let environment = policy.environment.as_str();
    vars.insert(
        "ENVIRONMENT",
        if policy.environment_spelling {
            environment.to_uppercase()
        } else {
            environment.to_owned()
        },
    );
    for (name, flag) in [
        ("AUTO_MIGRATE_ON_STARTUP", &policy.auto),
        ("ENABLE_PROD_MIGRATIONS", &policy.enable_prod),
        (
            "MIGRATION_REQUIRE_CONFIRMATION",
            &policy.require_confirmation,
        ),
        ("MIGRATION_BACKUP_BEFORE", &policy.backup),
    ] {
        if let Some((_, spelling)) = flag {
            vars.insert(name, spelling.clone());
        }
    }
    if let Some(pin) = pinned(policy, pending) {
        vars.insert("MIGRATION_CONFIRM", pin);
    }
    vars.insert("MIGRATION_BACKUP_DIR", backups.display().to_string());
    let mut config = Config::from_lookup(|name| vars.get(name).cloned())
        .unwrap_or_else(|e| panic!("{vars:?}: {e}"));
    config
        .dangerous_assume_yes(policy.assume_yes)
        .set_interactive(policy.interactive);
    config
}

/// Writes the tracking table's rows as `policy` says (through `mark`, and by hand for an
/// interrupted `running` row, as the deployment guide does).
fn track(db: &Database, policy: &Policy) {
    let ids: Vec<&str> = PLANNED.iter().map(|(id, _)| *id).collect();
    let migrator = only(&ids);
    let dev = Config::new(Environment::Development);
    for ((id, _), state) in PLANNED.iter().zip(policy.tracked) {
        let mark = match state {
            Tracked::NoRow => MarkAs::Pending,
            Tracked::Success => MarkAs::Success,
            Tracked::Failed | Tracked::Running => MarkAs::Failed,
            Tracked::Skipped => MarkAs::Skipped,
        };
        migrator
            .mark(db, &dev, id, mark)
            .unwrap_or_else(|e| panic!("mark {id} {mark}: {e}"));
        if state == Tracked::Running {
            let mut conn = db.get().expect("a connection");
            diesel::sql_query(
                "UPDATE applied_migrations SET status = 'running' WHERE migration_name = $1",
            )
            .bind::<Text, _>(*id)
            .execute(&mut *conn)
            .expect("mark running by hand");
        }
    }
}

/// One case on `db` (shared by the cases of a backend: `track` sets every row, and `up` only
/// creates tables that exist already or are harmless).
fn plan_decisions(db: &Database, policy: &Policy) {
    let backend = db.backend();
    track(db, policy);
    let ids: Vec<&str> = PLANNED.iter().map(|(id, _)| *id).collect();
    let migrator = only(&ids);
    let want = expected(policy);
    let backups = tempfile::tempdir().expect("a backup directory");
    let config = config_of(policy, &want.pending, backups.path());
    let plan = migrator.plan(db, &config).expect("plan");
    let got = Expected {
        pending: plan
            .pending
            .iter()
            .map(|m| {
                let (id, transactional) = PLANNED
                    .iter()
                    .find(|(id, _)| *id == m.id)
                    .unwrap_or_else(|| panic!("unknown pending {}", m.id));
                assert_eq!((m.kind, m.transactional), (Kind::Code, *transactional));
                *id
            })
            .collect(),
        decision_variables: plan.decisions.iter().map(|d| d.variable).collect(),
        decision_allows: plan.decisions.iter().map(|d| d.allows).collect(),
        decision_sources: plan.decisions.iter().map(|d| d.source).collect(),
        confirmation: confirmation_name(&plan.confirmation),
        confirm_with: plan.confirm_with.clone(),
        backup_label: plan.backup.as_ref().map(|b| {
            assert_eq!(b.dir, backups.path());
            b.label.clone()
        }),
        up_allowed: plan.up_allowed,
        startup_skips: plan.startup_skip.is_some(),
    };
    assert_eq!(got, want, "{backend}: {policy:?}");
    assert_eq!(plan.environment, policy.environment);
    assert_eq!(plan.refusal.is_some(), !plan.up_allowed);
    assert_eq!(
        plan.would_apply(),
        plan.up_allowed && !want.pending.is_empty()
    );
    // `up` does what the plan says (a terminal's question is not asked here).
    if want.confirmation == "terminal" {
        return;
    }
    let result = migrator.run(db, &config);
    let after = migrator.status(db).expect("status");
    let still: Vec<&str> = after.pending().map(|m| m.id.as_str()).collect();
    if want.up_allowed {
        result.unwrap_or_else(|e| panic!("{backend}: the plan allows `up`, which fails: {e}"));
        assert!(still.is_empty(), "{backend}: left pending: {still:?}");
        let backed_up = std::fs::read_dir(backups.path()).unwrap().count() > 0;
        assert_eq!(
            backed_up,
            want.backup_label.is_some(),
            "{backend}: a backup iff the plan names one"
        );
    } else {
        assert!(
            result.is_err(),
            "{backend}: the plan refuses `up` ({:?}), which succeeds",
            plan.refusal
        );
        assert_eq!(
            still, want.pending,
            "{backend}: a refused `up` changes nothing"
        );
    }
}

#[test]
fn plan_follows_the_policy_table_on_postgres() {
    let test = fresh(Backend::Postgres);
    check_property(
        "plan_follows_the_policy_table_on_postgres",
        cases(PLAN_CASES),
        policy(),
        |policy| plan_decisions(test.database(), &policy),
    );
}

#[test]
fn plan_follows_the_policy_table_on_sqlite() {
    let test = fresh(Backend::Sqlite);
    check_property(
        "plan_follows_the_policy_table_on_sqlite",
        cases(PLAN_CASES),
        policy(),
        |policy| plan_decisions(test.database(), &policy),
    );
}
