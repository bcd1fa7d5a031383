//! Background workers: threads that work on the active backfills, a batch at a time.
//!
//! Each worker thread loops: read which backfills are active (so a pause or a cancel reaches it
//! within one batch), throttle (replica lag, `MIGRATION_BACKFILL_PAUSE_MS`), claim a batch of
//! keys in a short transaction (PostgreSQL: rows locked by others skipped, the claim recorded
//! as this thread's lease so that other processes step around it), compute it with no
//! connection held, then write it (guarded) and advance `rows_done` in one short transaction.
//! The batch size adapts to `MIGRATION_BATCH_TARGET_MS`. An application's workers run under
//! `SCHED_IDLE` on Linux (only on a core nothing else wants; nice 10 where that is refused, and
//! for the CLI's `work`), on a connection pool of their
//! own (one connection per thread, plus one), never the application's; a thread holds no
//! connection while it computes, waits for replica lag or idles.
//!
//! Failures are never only logged: a deterministic one (a constraint, a permission, a type, an
//! undefined column) marks the backfill `failed` at once with its cause in `last_error`;
//! others are retried with a growing backoff, and after [`MAX_BATCH_RETRIES`] failed batches
//! in a row the backfill is `failed` too. A worker whose definition of a backfill (see
//! [`Job::checksum`]) differs from the one that scheduled it leaves it alone and says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::claim::{Batch, Lease, Sweep, LOCKED_WAIT};
use super::lag::hold_for_replicas;
use super::named::{self, Job};
use super::Backfill;
use crate::access::backend::BatchWrites;
use crate::access::connection::{Database, PooledConnection};
use crate::foundation::backoff::{Backoff, Waits};
use crate::foundation::config::Config;
use crate::foundation::error::{panic_message, Error, Result};
use crate::records::backfill::state::{self, BackfillStatus};
use crate::records::backfill::store::{self, Sink, Tables};

#[cfg(feature = "testing")]
pub(crate) mod stepped;

/// Retries of a batch whose computation fails before the backfill is marked `failed`.
pub(crate) const MAX_BATCH_RETRIES: u32 = 5;

/// An idle worker's looks for active backfills: 500 ms, doubling while it stays idle, up to
/// 4 s.
const IDLE_POLL: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
/// The waits before a failed batch (or a failed step) is tried again: 200 ms, doubling with
/// each failure in a row up to 25.6 s, jittered so that the threads and processes that met
/// one failure do not retry in step.
const RETRY: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_millis(25_600)).jittered();
/// How often an idle worker records its heartbeat.
const HEARTBEAT_IDLE: Duration = Duration::from_secs(10);
/// Worker rows whose heartbeat is older than this are removed (their process died).
const DEAD_WORKER: Duration = Duration::from_secs(300);

/// The longest a worker holds for replica lag at a time before it records its heartbeat and
/// reads the backfills' statuses again (then holds again if the replica is still behind).
const HOLD_SLICE: Duration = Duration::from_secs(20);

/// The nice value of worker threads (Linux): below the application's request handling.
const WORKER_NICE: i32 = 10;

/// What workers did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// Rows this process wrote.
    pub rows_written: u64,
    /// Batches this process committed.
    pub batches: u64,
}

/// Background worker threads of one process. Dropping it stops them like [`Workers::stop`].
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// One backfill as this process works on it.
struct Lane {
    job: Job,
    /// The job's definition checksum (see [`Job::checksum`]).
    checksum: String,
    /// This process's sweep over the keys, shared by its threads.
    sweep: Mutex<Sweep>,
    /// The waits while the only pending rows are locked or leased by others.
    locked_waits: Mutex<Waits>,
    batch_size: AtomicUsize,
    /// Failed batches in a row.
    failures: AtomicU32,
    last_log: Mutex<Instant>,
    /// Whether a definition mismatch was reported already.
    mismatch_logged: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    db: Database,
    config: Config,
    stop: AtomicBool,
    until_idle: bool,
    lanes: Mutex<HashMap<String, Option<Arc<Lane>>>>,
    rows: AtomicU64,
    batches: AtomicU64,
    /// Every thread's last fatal error (`work` reports it).
    error: Mutex<Option<Error>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("job", &self.job).finish()
    }
}

impl Workers {
    /// Starts `MIGRATION_BACKFILL_THREADS` worker threads (0: none) that work on the active
    /// backfills of `db` until [`Workers::stop`]. For an application, after its start-up
    /// migrations.
    pub fn start(db: Database, config: &Config) -> Result<Workers> {
        let threads = config.backfill_threads();
        Workers::spawn(db, config, threads, false)
    }

    /// Runs `threads` workers in the foreground until no backfill is active (a paused one is
    /// not), or `stop` is set (e.g. by SIGTERM): the CLI's `work`.
    pub fn run_until_idle(
        db: Database,
        config: &Config,
        threads: usize,
        stop: &AtomicBool,
    ) -> Result<WorkReport> {
        let mut workers = Workers::spawn(db, config, threads.max(1), true)?;
        while !workers.threads.iter().all(JoinHandle::is_finished) {
            if stop.load(Ordering::Relaxed) {
                workers.shared.stop.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        workers.join();
        let error = workers
            .shared
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match error {
            Some(error) => Err(error),
            None => Ok(workers.report()),
        }
    }

    fn spawn(db: Database, config: &Config, threads: usize, until_idle: bool) -> Result<Workers> {
        // A pool of their own, never the application's: one connection per thread and one
        // for the bookkeeping, opened on demand and closed when idle.
        let pool_size = u32::try_from(threads.saturating_add(1)).unwrap_or(u32::MAX);
        let shared = Arc::new(Shared {
            db: db.with_own_pool(pool_size),
            config: config.clone(),
            stop: AtomicBool::new(false),
            until_idle,
            lanes: Mutex::new(HashMap::new()),
            rows: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("backfill-worker-{index}"))
                .spawn(move || WorkerThread::new(index.to_string(), index).run(&shared))
                .map_err(Error::io("cannot start a backfill worker thread"))?;
            handles.push(handle);
        }
        if threads == 0 {
            log::info!("Background backfill workers disabled (MIGRATION_BACKFILL_THREADS=0)");
        } else if !until_idle {
            log::info!("Started {threads} background backfill workers");
        }
        Ok(Workers {
            shared,
            threads: handles,
        })
    }

    /// What the workers did so far.
    pub fn report(&self) -> WorkReport {
        WorkReport {
            rows_written: self.shared.rows.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
        }
    }

    /// Stops the workers: each finishes (commits or rolls back) the batch in flight, never
    /// half; then returns what they did.
    pub fn stop(mut self) -> WorkReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join();
        self.report()
    }

    fn join(&mut self) {
        for handle in self.threads.drain(..) {
            if let Err(panic) = handle.join() {
                log::error!("A backfill worker panicked: {}", panic_message(&*panic));
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join();
    }
}

/// Lowers this thread's CPU priority (Linux). An application's workers (`idle`) run under
/// `SCHED_IDLE`: only on a core that nothing else wants, so request handling never waits for
/// their hashing, however many there are. The CLI's `work`, which has the machine to itself,
/// and any thread where `SCHED_IDLE` is refused, run at nice 10.
#[allow(
    unsafe_code,
    reason = "libc calls that set this thread's scheduling policy"
)]
fn lower_priority(idle: bool) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes nothing; sched_setscheduler reads the sched_param it is given,
        // which lives on this stack for the call; setpriority takes no pointers. Failure only
        // leaves the priority as it was.
        let result = unsafe {
            let tid = libc::gettid();
            let param = libc::sched_param { sched_priority: 0 };
            if idle && libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0 {
                0
            } else {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE)
            }
        };
        if result != 0 {
            log::debug!("Could not lower the priority of a backfill worker thread");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = idle;
}

/// Sleeps `duration`, waking early once the workers stop; returns false if they did.
fn nap(shared: &Shared, duration: Duration) -> bool {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    !shared.stop.load(Ordering::Relaxed)
}

/// How long a worker waits while another process runs a complete backfill's finishing
/// statements.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// One worker thread: who it is, its own state, and the loop of its steps. Each step claims,
/// computes and writes one batch, or does the bookkeeping that stands in for one (and says
/// which, as a [`Step`]); the loop decides from it what next ([`WorkerThread::after`]).
pub(super) struct WorkerThread {
    /// Its row's id in `migrator_backfill_workers` (`host:pid:thread`).
    id: String,
    index: usize,
    /// Which active backfill is next (round robin).
    round: usize,
    /// The tables, once found.
    tables: Option<Tables>,
    /// The idle polls (growing while there is nothing to do).
    idle: Waits,
    /// When it last recorded its heartbeat while idle.
    last_heartbeat: Option<Instant>,
    /// Steps in a row that failed with an error (a database that cannot be reached).
    failures: u32,
}

/// What one step of a worker thread did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A batch was claimed, computed and written: `written` of its `claimed` rows (the guard
    /// left the others, changed or done meanwhile, for a later sweep).
    Wrote { written: u64, claimed: usize },
    /// This process's sweep over the keys ended; the next one starts at once (from the
    /// smallest key left behind, or from the first key to confirm that nothing is left).
    SweepEnded,
    /// A whole sweep found nothing pending: the finishing statements ran and the backfill is
    /// now `finished`.
    Finished,
    /// The backfill is complete and another process is running its finishing statements.
    FinishingElsewhere,
    /// The only pending rows left are locked or leased by others: wait this long.
    Locked(Duration),
    /// A batch (its claim, computation or write) or the finishing statements failed, `attempt`
    /// times in a row: try again after `wait`.
    Retry { attempt: u32, wait: Duration },
    /// A batch failed for good (a deterministic error, or too many attempts): the backfill is
    /// now `failed`, its cause recorded.
    Failed,
    /// The batch was held back for replica lag this long (then the statuses are read again).
    HeldForReplicas(Duration),
    /// The workers were stopped during the pause between batches.
    Stopped,
    /// No active backfill this binary can work on.
    Idle,
}

impl Step {
    /// How long a thread waits after this step (`None`: it goes on at once; an idle thread
    /// waits its growing idle poll).
    fn wait(&self) -> Option<Duration> {
        match self {
            Step::Locked(wait) | Step::Retry { wait, .. } => Some(*wait),
            Step::FinishingElsewhere => Some(FINISH_WAIT),
            Step::Wrote { .. }
            | Step::SweepEnded
            | Step::Finished
            | Step::Failed
            | Step::HeldForReplicas(_)
            | Step::Stopped
            | Step::Idle => None,
        }
    }
}

/// What a thread does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// The next step, at once.
    Go,
    /// The next step after this long (cut short if the workers stop).
    Sleep(Duration),
    /// Nothing more: the thread ends.
    Exit,
}

impl WorkerThread {
    /// Thread `index` of this process, recorded as `host:pid:label`.
    pub(super) fn new(label: String, index: usize) -> WorkerThread {
        WorkerThread {
            id: format!(
                "{}:{}:{label}",
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            ),
            index,
            round: index,
            tables: None,
            idle: Waits::new(IDLE_POLL),
            last_heartbeat: None,
            failures: 0,
        }
    }

    /// Its row's id in `migrator_backfill_workers`.
    #[cfg(feature = "testing")]
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The backfill tables, once found.
    #[cfg(feature = "testing")]
    pub(super) fn tables(&self) -> Option<&Tables> {
        self.tables.as_ref()
    }

    /// Steps until the workers stop (or, for `run_until_idle`, until nothing is active), then
    /// removes its worker row.
    fn run(mut self, shared: &Shared) {
        lower_priority(!shared.until_idle);
        while !shared.stop.load(Ordering::Relaxed) {
            let step = self.step(shared);
            match self.after(shared, step) {
                Next::Go => {}
                Next::Sleep(wait) => {
                    nap(shared, wait);
                }
                Next::Exit => break,
            }
        }
        if let Some(tables) = &self.tables {
            if let Ok(mut conn) = shared.db.get() {
                let _ = store::remove_worker(&mut conn, tables, &self.id);
            }
        }
    }

    /// What to do after `step`: an error (the database, typically) is retried after a growing
    /// backoff (in `run_until_idle`, given up after [`MAX_BATCH_RETRIES`] `× 2` in a row, the
    /// error kept for the caller); an idle thread polls less and less often (or ends, in
    /// `run_until_idle`); a step that waits for something sleeps its wait.
    fn after(&mut self, shared: &Shared, step: Result<Step>) -> Next {
        let step = match step {
            Ok(step) => step,
            Err(error) => {
                self.failures += 1;
                let wait = RETRY.delay(self.failures - 1);
                log::warn!(
                    "Backfill worker {}: {error}; retrying in {} ms",
                    self.index,
                    wait.as_millis()
                );
                if shared.until_idle && self.failures > MAX_BATCH_RETRIES * 2 {
                    *shared.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                    shared.stop.store(true, Ordering::Relaxed);
                    return Next::Exit;
                }
                return Next::Sleep(wait);
            }
        };
        self.failures = 0;
        match step {
            Step::Idle if shared.until_idle => Next::Exit,
            Step::Idle => Next::Sleep(self.idle.next()),
            step => {
                if matches!(step, Step::Wrote { .. }) {
                    self.idle.reset();
                }
                step.wait().map_or(Next::Go, Next::Sleep)
            }
        }
    }

    /// One step: claims a batch, computes it and writes it, or does the bookkeeping that
    /// stands in for one.
    fn step(&mut self, shared: &Shared) -> Result<Step> {
        match self.begin(shared)? {
            Begun::Claimed(flight) => self.complete(shared, *flight),
            Begun::Done(step) => Ok(step),
        }
    }
}

/// The lane of backfill `name`, built once per process (`None`: not registered here, or it
/// cannot be prepared: logged once).
fn lane(shared: &Shared, name: &str) -> Option<Arc<Lane>> {
    let mut lanes = shared.lanes.lock().unwrap_or_else(PoisonError::into_inner);
    lanes
        .entry(name.to_owned())
        .or_insert_with(|| {
            let job = named::find(name).and_then(|r| r.build(&shared.config));
            match job {
                Ok(job) => {
                    let size = shared
                        .config
                        .batch_size()
                        .unwrap_or_else(|| job.backfill.effective_batch_size());
                    Some(Arc::new(Lane {
                        checksum: job.checksum(),
                        job,
                        sweep: Mutex::new(Sweep::new()),
                        locked_waits: Mutex::new(Waits::new(LOCKED_WAIT)),
                        batch_size: AtomicUsize::new(size.max(1)),
                        failures: AtomicU32::new(0),
                        last_log: Mutex::new(Instant::now()),
                        mismatch_logged: AtomicBool::new(false),
                    }))
                }
                Err(error) => {
                    log::warn!("Backfill workers leave {name} alone: {error}");
                    None
                }
            }
        })
        .clone()
}

/// A batch claimed and not yet written: what a worker holds between the two halves of a step.
/// No transaction and no lock; on SQLite the connection that claimed it, which the write uses
/// (see `Batch::seen`; outside a transaction a SQLite connection holds no lock, and the
/// workers' pool has a connection per thread).
struct InFlight {
    lane: Arc<Lane>,
    tables: Tables,
    name: String,
    backfill: Backfill,
    batch: Batch,
    /// SQLite: the connection that claimed the batch.
    conn: Option<PooledConnection>,
    size: usize,
    started: Instant,
}

/// The first half of a step: a batch claimed, or a step that ends without one.
enum Begun {
    /// Boxed: a batch is large beside a step, and one allocation a batch costs nothing.
    Claimed(Box<InFlight>),
    Done(Step),
}

impl WorkerThread {
    /// The first half of a step: reads which backfills are active, throttles, and claims a
    /// batch of one of them.
    fn begin(&mut self, shared: &Shared) -> Result<Begun> {
        let mut conn = shared.db.get()?;
        // The tables are looked up until they exist, then kept: not two catalog queries a
        // batch.
        let tables = match &self.tables {
            Some(tables) => tables.clone(),
            None => {
                let Some(tables) = store::find(&shared.db, &mut conn)? else {
                    return Ok(Begun::Done(Step::Idle));
                };
                store::upgrade(&mut conn, &tables)?;
                store::remove_gone_workers(&mut conn, &tables, &self.id, false)?;
                store::heartbeat(&mut conn, &tables, &self.id, self.index, None)?;
                self.tables = Some(tables.clone());
                tables
            }
        };
        let mut active = Vec::new();
        for backfill in store::active(&mut conn, &tables)? {
            let Some(lane) = lane(shared, &backfill.name) else {
                continue;
            };
            if backfill
                .definition
                .as_deref()
                .is_some_and(|definition| !lane.job.checksum_matches(definition))
            {
                definition_differs(&mut conn, &tables, &backfill.name, &lane, self);
                continue;
            }
            active.push((backfill, lane));
        }
        if active.is_empty() {
            if self
                .last_heartbeat
                .is_none_or(|at| at.elapsed() >= HEARTBEAT_IDLE)
            {
                store::heartbeat(&mut conn, &tables, &self.id, self.index, None)?;
                if self.index == 0 {
                    store::remove_dead_workers(&mut conn, &tables, DEAD_WORKER)?;
                }
                self.last_heartbeat = Some(Instant::now());
            }
            return Ok(Begun::Done(Step::Idle));
        }
        // The connection goes back to the pool: nothing is held while waiting.
        drop(conn);
        self.round = self.round.wrapping_add(1);
        let (backfill, lane) = &active[self.round % active.len()];
        let name = backfill.name.as_str();
        // Replica lag holds the batch (bounded by HOLD_SLICE, so statuses are re-read), with
        // no connection held between measurements.
        let started = Instant::now();
        let held = hold_for_replicas(&shared.db, &shared.config, &|| {
            shared.stop.load(Ordering::Relaxed) || started.elapsed() >= HOLD_SLICE
        })?;
        if !held.is_zero() {
            crate::foundation::metrics::replica_lag_held(held);
            let mut conn = shared.db.get()?;
            store::heartbeat(&mut conn, &tables, &self.id, self.index, Some(name))?;
            return Ok(Begun::Done(Step::HeldForReplicas(held)));
        }
        if !shared.config.backfill_pause().is_zero() && !nap(shared, shared.config.backfill_pause())
        {
            return Ok(Begun::Done(Step::Stopped));
        }
        self.claim(shared, &tables, name, backfill.upper_key, Arc::clone(lane))
    }

    /// Claims a batch of `name` (ending the sweep if none is left).
    fn claim(
        &self,
        shared: &Shared,
        tables: &Tables,
        name: &str,
        upper_key: Option<i64>,
        lane: Arc<Lane>,
    ) -> Result<Begun> {
        let mut backfill = lane.job.backfill.clone();
        // PostgreSQL: claims are leased, so that other processes' workers step around them.
        // SQLite: one process at a time; this process's threads share one sweep.
        let dialect = crate::access::backend::of(shared.db.backend());
        backfill.lease = dialect.leases().then(|| Lease {
            tables: tables.clone(),
            name: name.to_owned(),
            holder: self.id.clone(),
            ttl: Lease::ttl_for(&shared.config),
        });
        let size = lane.batch_size.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut conn = shared.db.get()?;
        let claimed = {
            let mut sweep = lane.sweep.lock().unwrap_or_else(PoisonError::into_inner);
            match backfill.claim_next(
                &mut conn,
                &mut sweep,
                size,
                upper_key,
                backfill.lease.as_ref(),
            ) {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    drop(conn);
                    return end_of_sweep(shared, tables, name, &lane, &mut sweep).map(Begun::Done);
                }
                Err(error) => {
                    drop((sweep, conn));
                    return batch_failed(shared, tables, name, &lane, &error).map(Begun::Done);
                }
            }
        };
        Ok(Begun::Claimed(Box::new(InFlight {
            lane,
            tables: tables.clone(),
            name: name.to_owned(),
            backfill,
            batch: claimed,
            // PostgreSQL: back to the pool while computing. SQLite: kept, to write the batch
            // on the connection that claimed it.
            conn: (dialect.batch_writes() == BatchWrites::OnTheClaimingConnection).then_some(conn),
            size,
            started,
        })))
    }

    /// The second half of a step: computes the batch, then writes it (guarded) with its
    /// progress, and releases its lease.
    fn complete(&self, shared: &Shared, flight: InFlight) -> Result<Step> {
        let InFlight {
            lane,
            tables,
            name,
            backfill,
            batch,
            conn,
            size,
            started,
        } = flight;
        let (lane, tables, name) = (&*lane, &tables, name.as_str());
        let outputs = match batch.compute(None, &*lane.job.compute) {
            Ok(outputs) => outputs,
            Err(error) => {
                drop(conn);
                give_back(shared, &backfill, &batch);
                return batch_failed(shared, tables, name, lane, &error);
            }
        };
        let sink = Sink {
            tables: tables.clone(),
            name: name.to_owned(),
            worker: Some(self.id.clone()),
        };
        let claimed = batch.rows.len();
        let mut skipped = Sweep::new();
        let written = {
            let mut conn = match conn {
                Some(conn) => conn,
                None => shared.db.get()?,
            };
            backfill.write(
                &mut conn,
                &batch,
                outputs,
                Some(&sink),
                backfill.lease.as_ref(),
                &mut skipped,
            )
        };
        match written {
            Ok(written) => {
                if let Some(key) = skipped.skipped_from {
                    lane.sweep
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .skipped(key);
                }
                lane.failures.store(0, Ordering::Relaxed);
                shared.rows.fetch_add(written, Ordering::Relaxed);
                shared.batches.fetch_add(1, Ordering::Relaxed);
                let cap = lane.job.backfill.capped_batch_size(usize::MAX);
                if let Some(next) = adapted_size(
                    size,
                    claimed,
                    started.elapsed(),
                    shared.config.batch_target(),
                    cap,
                ) {
                    lane.batch_size.store(next, Ordering::Relaxed);
                }
                log_progress(shared, name, lane);
                Ok(Step::Wrote { written, claimed })
            }
            Err(error) => {
                give_back(shared, &backfill, &batch);
                if let Some((first, _)) = batch.keys() {
                    lane.sweep
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .skipped(first);
                }
                if error.is_timeout() {
                    let halved = halved_size(size);
                    lane.batch_size.store(halved, Ordering::Relaxed);
                    log::warn!(
                        "Backfill {name}: a batch of {size} rows timed out; batches of {halved} \
                         now"
                    );
                }
                batch_failed(shared, tables, name, lane, &error)
            }
        }
    }
}

/// A worker whose definition of `name` differs from the one that scheduled it leaves it alone
/// and says why, once per process: in its log and in the backfill's `last_error`.
fn definition_differs(
    conn: &mut crate::access::connection::AnyConnection,
    tables: &Tables,
    name: &str,
    lane: &Lane,
    me: &WorkerThread,
) {
    if lane.mismatch_logged.swap(true, Ordering::Relaxed) {
        return;
    }
    let message = format!(
        "worker {} runs a different definition of this backfill (checksum {}) than the one \
         that scheduled it: it leaves the backfill to the workers of that version",
        me.id, lane.checksum
    );
    log::warn!("Backfill {name}: {message}");
    if let Err(e) = store::note(conn, tables, name, &message) {
        log::debug!("Could not record the definition mismatch of {name}: {e}");
    }
}

/// Gives a batch's keys back to the other workers at once (best effort: else its lease
/// expires).
fn give_back(shared: &Shared, backfill: &Backfill, batch: &Batch) {
    if let Ok(mut conn) = shared.db.get() {
        backfill.give_up(&mut conn, batch);
    }
}

/// The end of this process's sweep over `name`: finished when a whole sweep from the first
/// key found nothing pending; else the next sweep starts from the smallest key left behind,
/// after a growing wait if nothing could be claimed (the rows left are locked or leased by
/// others).
fn end_of_sweep(
    shared: &Shared,
    tables: &Tables,
    name: &str,
    lane: &Lane,
    sweep: &mut Sweep,
) -> Result<Step> {
    let ended = std::mem::replace(sweep, Sweep::new());
    *sweep = ended.next();
    if ended.claimed > 0 {
        lane.locked_waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
        return Ok(Step::SweepEnded);
    }
    if ended.skipped_from.is_some() {
        // The rows left may be leased by a worker of this host that died: its lease goes.
        let mut conn = shared.db.get()?;
        store::remove_gone_workers(&mut conn, tables, "", false)?;
        drop(conn);
        let wait = lane
            .locked_waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next();
        return Ok(Step::Locked(wait));
    }
    if !ended.started_at_first_key() {
        // Nothing left from where the last sweep left rows behind: confirm from the start.
        return Ok(Step::SweepEnded);
    }
    // Complete: its finishing statements (e.g. an index) run before it is `finished`. While
    // another process runs them, or after they failed, the ended sweep is kept, so that the
    // next try does not sweep the table again.
    let backfill = &lane.job.backfill;
    if backfill.has_then() {
        match backfill.run_then(&shared.db, name, shared.config.ddl_lock_timeout(), false) {
            Ok(true) => {}
            Ok(false) => {
                *sweep = ended;
                return Ok(Step::FinishingElsewhere);
            }
            Err(error) => {
                *sweep = ended;
                return batch_failed(shared, tables, name, lane, &error);
            }
        }
    }
    let mut conn = shared.db.get()?;
    if store::transition(
        &mut conn,
        tables,
        name,
        &[BackfillStatus::Active],
        BackfillStatus::Finished,
        None,
    )? {
        log::info!("Backfill {name} finished");
        return Ok(Step::Finished);
    }
    // Not active any more (an operator paused or cancelled it meanwhile, or another process
    // finished it): the next look at the statuses says.
    Ok(Step::SweepEnded)
}

/// A batch failed (claim, compute or write): a deterministic error (a constraint, a
/// permission, a type, an undefined column, a computation that returns the wrong shape) marks
/// the backfill `failed` at once; others are retried with a growing backoff, up to
/// [`MAX_BATCH_RETRIES`] in a row, then the backfill is `failed` with the error as its
/// `last_error`. Either way the cause is recorded, never only logged.
fn batch_failed(
    shared: &Shared,
    tables: &Tables,
    name: &str,
    lane: &Lane,
    error: &Error,
) -> Result<Step> {
    let failures = lane.failures.fetch_add(1, Ordering::Relaxed) + 1;
    let deterministic = error.is_deterministic();
    if deterministic || failures > MAX_BATCH_RETRIES {
        let message = if deterministic {
            format!("a batch failed and would fail again: {error}")
        } else {
            format!("a batch failed {failures} times: {error}")
        };
        let mut conn = shared.db.get()?;
        if store::transition(
            &mut conn,
            tables,
            name,
            &[BackfillStatus::Active],
            BackfillStatus::Failed,
            Some(&message),
        )? {
            log::error!("Backfill {name} failed: {message}");
        }
        lane.failures.store(0, Ordering::Relaxed);
        return Ok(Step::Failed);
    }
    let wait = RETRY.delay(failures - 1);
    log::warn!(
        "Backfill {name}: a batch failed (attempt {failures} of {}): {error}; retrying in {} ms",
        MAX_BATCH_RETRIES + 1,
        wait.as_millis()
    );
    Ok(Step::Retry {
        attempt: failures,
        wait,
    })
}

/// The next batch size after a batch of `rows` rows (of `size` asked) took `took`: moved toward
/// `target` (`MIGRATION_BATCH_TARGET_MS`), at most doubled or halved at a time, within
/// `1..=cap`. `None` (no change): a short batch (fewer rows than asked: the end of the keys)
/// or one that took no measurable time teaches nothing.
fn adapted_size(
    size: usize,
    rows: usize,
    took: Duration,
    target: Duration,
    cap: usize,
) -> Option<usize> {
    if rows < size || took.is_zero() {
        return None;
    }
    let ratio = (target.as_secs_f64() / took.as_secs_f64()).clamp(0.5, 2.0);
    Some(((size as f64 * ratio).round() as usize).clamp(1, cap.max(1)))
}

/// The batch size after a batch of `size` rows hit a statement timeout: half, at least one.
fn halved_size(size: usize) -> usize {
    (size / 2).max(1)
}

/// Logs the backfill's progress (all hosts, from its row) every
/// `MIGRATION_PROGRESS_INTERVAL_SECS`, from one thread of the process.
fn log_progress(shared: &Shared, name: &str, lane: &Lane) {
    let Ok(mut last) = lane.last_log.try_lock() else {
        return;
    };
    if last.elapsed() < shared.config.progress_interval() {
        return;
    }
    *last = Instant::now();
    let Ok(Some(state)) = state::get(&shared.db, name) else {
        return;
    };
    state::record_metrics(&state);
    let percent = if state.rows_total > 0 {
        state.rows_done as f64 * 100.0 / state.rows_total as f64
    } else {
        100.0
    };
    log::info!(
        "Backfill {name} progress: {}/{} rows ({percent:.1}%), {:.0} rows/s, ETA {}, {} workers",
        state.rows_done,
        state.rows_total,
        state.rate_per_sec,
        state
            .eta_secs
            .map_or_else(|| "unknown".to_owned(), |s| format!("{s}s")),
        state.workers.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn batches_move_toward_the_target_at_most_doubled_or_halved() {
        let target = 1000 * MS;
        // Twice as fast as the target: doubled; four times: still only doubled.
        assert_eq!(adapted_size(100, 100, 500 * MS, target, 10_000), Some(200));
        assert_eq!(adapted_size(100, 100, 250 * MS, target, 10_000), Some(200));
        // Slower: shrunk in proportion, at most halved.
        assert_eq!(adapted_size(100, 100, 1250 * MS, target, 10_000), Some(80));
        assert_eq!(adapted_size(100, 100, 5000 * MS, target, 10_000), Some(50));
        // On target: unchanged.
        assert_eq!(adapted_size(128, 128, target, target, 10_000), Some(128));
        // Within the bind-parameter cap, and never 0.
        assert_eq!(
            adapted_size(8000, 8000, 100 * MS, target, 10_000),
            Some(10_000)
        );
        assert_eq!(adapted_size(1, 1, 5000 * MS, target, 10_000), Some(1));
        // A short batch (the end of the keys) or one that took no time teaches nothing.
        assert_eq!(adapted_size(100, 99, 10 * MS, target, 10_000), None);
        assert_eq!(adapted_size(100, 100, Duration::ZERO, target, 10_000), None);
    }

    #[test]
    fn a_timed_out_batch_halves_the_size() {
        assert_eq!(halved_size(5000), 2500);
        assert_eq!(halved_size(3), 1);
        assert_eq!(halved_size(1), 1);
    }

    #[test]
    fn steps_that_wait_say_how_long() {
        assert_eq!(Step::Locked(300 * MS).wait(), Some(300 * MS));
        let retry = Step::Retry {
            attempt: 2,
            wait: 400 * MS,
        };
        assert_eq!(retry.wait(), Some(400 * MS));
        assert_eq!(Step::FinishingElsewhere.wait(), Some(FINISH_WAIT));
        for step in [
            Step::Wrote {
                written: 5,
                claimed: 5,
            },
            Step::SweepEnded,
            Step::Finished,
            Step::Failed,
            Step::HeldForReplicas(MS),
            Step::Stopped,
            Step::Idle,
        ] {
            assert_eq!(step.wait(), None, "{step:?}");
        }
    }

    #[test]
    fn failed_batches_back_off_within_their_jitter() {
        for n in 0..10 {
            let full = Duration::from_millis(200u64 << n.min(7)).min(RETRY.full(n));
            let wait = RETRY.delay(n);
            assert!(wait >= full / 2 && wait <= full, "{n}: {wait:?}");
        }
        assert_eq!(RETRY.full(30), Duration::from_millis(25_600));
    }
}
