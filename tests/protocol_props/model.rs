//! The model of the claim/write protocol: the table as it should be, the workers' batches in
//! flight and their leases, the backfill's status and `rows_done`; the steps a run is made of;
//! and what the runs reached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use migrator::backfill::{BackfillStatus, Control};
use migrator::connection::Backend;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::{cases, PROTOCOL_CASES};

/// Worker slots (each a process of its own).
pub(crate) const WORKERS: usize = 3;

/// What the computation makes of an input: nothing the application writes looks like it.
pub(crate) fn hashed(body: &str) -> String {
    format!("h({body})")
}

/// Inputs that start so make the computation fail.
pub(crate) const POISON: &str = "boom";

/// Whether the computation fails on `body`.
pub(crate) fn poisoned(body: Option<&str>) -> bool {
    body.is_some_and(|b| b.starts_with(POISON))
}

/// Failed batches in a row after which a worker marks the backfill `failed` (the engine's
/// `MAX_BATCH_RETRIES`, 5 retries, then this one).
pub(crate) const FAILED_AFTER: u32 = 6;

/// A row as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) body: Option<String>,
    pub(crate) out: Option<String>,
    /// Bumped by every committed write to the row (PostgreSQL's guard is its `xmin`).
    pub(crate) version: u64,
}

impl Row {
    pub(crate) fn pending(&self) -> bool {
        self.body.is_some() && self.out.is_none()
    }
}

/// A claimed row as the claim read it.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) key: i64,
    pub(crate) body: Option<String>,
    pub(crate) version: u64,
}

/// What a worker slot holds: the batch in flight and its lease (PostgreSQL).
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    pub(crate) batch: Option<Vec<Snapshot>>,
    /// Batches in a row whose computation failed (the worker's count; a crash resets it).
    pub(crate) failures: u32,
}

impl Slot {
    pub(crate) fn lease(&self) -> Option<(i64, i64)> {
        let batch = self.batch.as_ref()?;
        Some((batch.first()?.key, batch.last()?.key))
    }
}

#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) backend: Backend,
    pub(crate) rows: BTreeMap<i64, Row>,
    pub(crate) upper_key: i64,
    pub(crate) next_key: i64,
    pub(crate) status: BackfillStatus,
    pub(crate) rows_done: u64,
    pub(crate) slots: Vec<Slot>,
    /// Leases of crashed workers not yet cleaned up.
    pub(crate) dead_leases: Vec<(i64, i64)>,
    /// PostgreSQL: the row an open application transaction holds, and the body it writes.
    pub(crate) held: Option<(i64, String)>,
    /// Rows made pending again after the backfill finished (the application's to do).
    pub(crate) pending_after_finish: BTreeSet<i64>,
    pub(crate) counter: u64,
}

impl Model {
    pub(crate) fn fresh_value(&mut self, prefix: &str, key: i64) -> String {
        self.counter += 1;
        format!("{prefix}{key}.{}", self.counter)
    }

    pub(crate) fn key_at(&self, index: &Index) -> Option<i64> {
        if self.rows.is_empty() {
            return None;
        }
        self.rows.keys().nth(index.index(self.rows.len())).copied()
    }

    /// An application write to `key`, committed.
    pub(crate) fn app_write(
        &mut self,
        key: i64,
        body: Option<Option<String>>,
        out: Option<String>,
    ) {
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

    pub(crate) fn pending_up_to_upper(&self) -> Vec<i64> {
        self.rows
            .iter()
            .filter(|(k, r)| **k <= self.upper_key && r.pending())
            .map(|(k, _)| *k)
            .collect()
    }

    /// Every row's output is empty, the application's own, or computed from its current input.
    pub(crate) fn check_outputs(&self) {
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
pub(crate) enum Op {
    /// Worker `n` claims a batch (or ends a sweep, or finds nothing to do).
    Claim(usize),
    /// Worker `n` computes and writes its batch in flight.
    Write(usize),
    /// Worker `n` works alone for a while: rounds of claim and write while the backfill is
    /// active (enough to fail it on a row the computation fails on).
    Burst(usize),
    /// Worker `n`'s process dies: its batch is dropped unwritten, its lease stays; a new
    /// process takes the slot.
    Crash(usize),
    /// The dead workers' rows (and leases) are cleaned up.
    Reap,
    /// The application changes a row's input (its output must be computed again).
    Edit(Index),
    /// The application gives a row an input the computation fails on.
    Poison(Index),
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

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let slot = 0..WORKERS;
    // A cancel ends a run's interest (nobody works on the backfill again): about two runs in
    // five have one.
    prop_oneof![
        20 => slot.clone().prop_map(Op::Claim),
        20 => slot.clone().prop_map(Op::Write),
        3 => slot.clone().prop_map(Op::Burst),
        10 => slot.prop_map(Op::Crash),
        3 => Just(Op::Reap),
        8 => any::<Index>().prop_map(Op::Edit),
        3 => any::<Index>().prop_map(Op::Poison),
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

/// A row as the run starts: pending, with a NULL input, with the application's output, or
/// with an input the computation fails on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seed {
    Pending,
    NoInput,
    Done,
    /// Pending, with an input the computation fails on.
    Poisoned,
}

pub(crate) fn seed() -> impl Strategy<Value = Seed> {
    prop_oneof![
        12 => Just(Seed::Pending),
        2 => Just(Seed::NoInput),
        2 => Just(Seed::Done),
        1 => Just(Seed::Poisoned),
    ]
}

/// What the runs of one property did, across its cases: a property whose runs never reach the
/// interesting states would pass without testing them, so the test checks that they do.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    pub(crate) batches: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    /// Claimed rows that the write's guard left alone (changed or done meanwhile).
    pub(crate) guarded: AtomicU64,
    /// Claims that found only rows leased by others or locked (PostgreSQL).
    pub(crate) waits: AtomicU64,
    /// Claims made while pending rows were leased by another worker, live or dead (PostgreSQL).
    pub(crate) beside_leases: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) crashes_with_batch: AtomicU64,
    /// Batches whose computation failed (given back unwritten).
    pub(crate) failed_batches: AtomicU64,
    /// Backfills marked `failed` after too many failed batches in a row.
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

impl Coverage {
    pub(crate) const fn new() -> Coverage {
        Coverage {
            batches: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            guarded: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            beside_leases: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            crashes_with_batch: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// With enough cases (the default 32), every interesting state was reached at least once.
    pub(crate) fn check(&self, backend: Backend) {
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
            (
                "batches whose computation failed",
                count(&self.failed_batches),
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

pub(crate) static POSTGRES_COVERAGE: Coverage = Coverage::new();
pub(crate) static SQLITE_COVERAGE: Coverage = Coverage::new();

pub(crate) fn coverage(backend: Backend) -> &'static Coverage {
    match backend {
        Backend::Postgres => &POSTGRES_COVERAGE,
        _ => &SQLITE_COVERAGE,
    }
}
