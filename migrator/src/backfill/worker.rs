//! Background workers: threads that work on the active backfills, a batch at a time.
//!
//! Each worker thread loops: read which backfills are active (so a pause or a cancel reaches it
//! within one batch), throttle (replica lag, `MIGRATION_BACKFILL_PAUSE_MS`), claim a batch of
//! its keys (PostgreSQL: `FOR NO KEY UPDATE SKIP LOCKED`, shared with every other process),
//! compute it on this thread, write it and advance `rows_done` in the batch's own transaction.
//! The batch size adapts to `MIGRATION_BATCH_TARGET_MS`. Workers run at a lower CPU priority
//! than the application's request handling (nice 10 on Linux).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lag::{wait_for_replicas, LagLimits};
use super::named::{self, Job};
use super::state::{self, BackfillStatus};
use super::store::{self, Sink, Tables};
use crate::config::Config;
use crate::connection::Database;
use crate::error::{panic_message, Error, Result};

/// Retries of a batch whose computation fails before the backfill is marked `failed`.
pub const MAX_BATCH_RETRIES: u32 = 5;

/// How often idle workers look for active backfills.
const IDLE_POLL: Duration = Duration::from_millis(500);

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
    /// The next key to claim from; `None` once this sweep reached the end.
    cursor: Mutex<Option<i64>>,
    batch_size: AtomicUsize,
    failures: AtomicU32,
    last_log: Mutex<Instant>,
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
        let shared = Arc::new(Shared {
            db,
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
                .spawn(move || worker(&shared, index))
                .map_err(|e| Error::msg(format!("cannot start a backfill worker thread: {e}")))?;
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

/// Lowers this thread's CPU priority (Linux: `setpriority` on the thread id).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; failure only leaves the priority.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE)
        };
        if result != 0 {
            log::debug!("Could not lower the priority of a backfill worker thread");
        }
    }
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

fn worker(shared: &Shared, index: usize) {
    lower_priority();
    let id = format!(
        "{}:{}:{index}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    let mut recorded: Option<Tables> = None;
    let mut round = index;
    let mut db_failures = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        match step(shared, &id, index, &mut round, &mut recorded) {
            Ok(Step::Worked) => db_failures = 0,
            Ok(Step::Idle) => {
                if shared.until_idle {
                    break;
                }
                nap(shared, IDLE_POLL);
            }
            Ok(Step::Wait(duration)) => {
                nap(shared, duration);
            }
            Err(error) => {
                db_failures += 1;
                let backoff = Duration::from_millis(200 << db_failures.min(7));
                log::warn!(
                    "Backfill worker {index}: {error}; retrying in {} ms",
                    backoff.as_millis()
                );
                if shared.until_idle && db_failures > MAX_BATCH_RETRIES * 2 {
                    *shared.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
                nap(shared, backoff);
            }
        }
    }
    if let Some(tables) = recorded {
        if let Ok(mut conn) = shared.db.get() {
            let _ = store::remove_worker(&mut conn, &tables, &id);
        }
    }
}

enum Step {
    /// A batch was written (or found nothing and finished the backfill).
    Worked,
    /// No active backfill this binary knows.
    Idle,
    /// Something to wait for (locked rows, a failing batch's backoff, replica lag).
    Wait(Duration),
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
                        job,
                        cursor: Mutex::new(Some(i64::MIN)),
                        batch_size: AtomicUsize::new(size.max(1)),
                        failures: AtomicU32::new(0),
                        last_log: Mutex::new(Instant::now()),
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

fn step(
    shared: &Shared,
    id: &str,
    index: usize,
    round: &mut usize,
    recorded: &mut Option<Tables>,
) -> Result<Step> {
    let mut conn = shared.db.get()?;
    // The tables are looked up until they exist, then kept: not two catalog queries a batch.
    let tables = match recorded {
        Some(tables) => tables.clone(),
        None => {
            let Some(tables) = store::find(&shared.db, &mut conn)? else {
                return Ok(Step::Idle);
            };
            store::heartbeat(&mut conn, &tables, id, index, None)?;
            *recorded = Some(tables.clone());
            tables
        }
    };
    let active: Vec<(String, Option<i64>, Arc<Lane>)> = store::active(&mut conn, &tables)?
        .into_iter()
        .filter_map(|(name, upper)| lane(shared, &name).map(|lane| (name, upper, lane)))
        .collect();
    if active.is_empty() {
        store::heartbeat(&mut conn, &tables, id, index, None)?;
        return Ok(Step::Idle);
    }
    *round = round.wrapping_add(1);
    let (name, upper_key, lane) = &active[*round % active.len()];
    // Replica lag holds the batch (bounded by HOLD_SLICE, so statuses are re-read).
    let limits = LagLimits::from_config(&shared.config);
    let started = Instant::now();
    let held = wait_for_replicas(&mut conn, &limits, &|| {
        shared.stop.load(Ordering::Relaxed) || started.elapsed() >= HOLD_SLICE
    })?;
    if !held.is_zero() {
        // Still here and listed; then read the statuses again (a pause or a cancel may have
        // come meanwhile) and measure again.
        store::heartbeat(&mut conn, &tables, id, index, Some(name))?;
        return Ok(Step::Worked);
    }
    drop(conn);
    if !shared.config.backfill_pause().is_zero() && !nap(shared, shared.config.backfill_pause()) {
        return Ok(Step::Worked);
    }
    batch(shared, &tables, id, name, *upper_key, lane)
}

/// Claims, computes and writes one batch of `name`.
fn batch(
    shared: &Shared,
    tables: &Tables,
    id: &str,
    name: &str,
    upper_key: Option<i64>,
    lane: &Lane,
) -> Result<Step> {
    let backfill = &lane.job.backfill;
    let size = lane.batch_size.load(Ordering::Relaxed);
    let started = Instant::now();
    let claimed = {
        let mut cursor = lane.cursor.lock().unwrap_or_else(PoisonError::into_inner);
        let from_start = *cursor == Some(i64::MIN);
        let claimed = backfill.claim_up_to(&shared.db, &mut cursor, size, upper_key)?;
        if claimed.is_none() {
            // The end of a sweep: start over (rows others rolled back lie behind the cursor).
            *cursor = Some(i64::MIN);
        }
        claimed.map(Ok).unwrap_or(Err(from_start))
    };
    let batch = match claimed {
        Ok(batch) => batch,
        Err(false) => return Ok(Step::Worked),
        Err(true) => return sweep_found_nothing(shared, tables, name, upper_key, lane),
    };
    let outputs = std::panic::catch_unwind(AssertUnwindSafe(|| {
        batch
            .rows
            .iter()
            .map(|row| {
                let inputs: Vec<Option<&str>> = row
                    .inputs
                    .iter()
                    .map(|v| v.as_deref().map(String::as_str))
                    .collect();
                (lane.job.compute)(&inputs)
            })
            .collect::<Result<Vec<_>>>()
    }))
    .unwrap_or_else(|panic| {
        Err(Error::Panic {
            message: panic_message(&*panic),
        })
    });
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(error) => {
            drop(batch);
            return compute_failed(shared, tables, name, lane, &error);
        }
    };
    let sink = Sink {
        tables: tables.clone(),
        name: name.to_owned(),
        worker: Some(id.to_owned()),
    };
    let rows = batch.rows.len();
    match backfill.write(batch, outputs, Some(&sink)) {
        Ok(written) => {
            lane.failures.store(0, Ordering::Relaxed);
            shared.rows.fetch_add(written, Ordering::Relaxed);
            shared.batches.fetch_add(1, Ordering::Relaxed);
            adapt(shared, lane, size, rows, started.elapsed());
            log_progress(shared, name, lane);
            Ok(Step::Worked)
        }
        Err(error) if is_timeout(&error) => {
            let halved = (size / 2).max(1);
            lane.batch_size.store(halved, Ordering::Relaxed);
            log::warn!(
                "Backfill {name}: a batch of {size} rows timed out; batches of {halved} now"
            );
            Ok(Step::Wait(Duration::from_millis(100)))
        }
        Err(error) => Err(error),
    }
}

/// A sweep from the first key claimed nothing: done, or the rest is locked by other workers.
fn sweep_found_nothing(
    shared: &Shared,
    tables: &Tables,
    name: &str,
    upper_key: Option<i64>,
    lane: &Lane,
) -> Result<Step> {
    let left = lane.job.backfill.remaining_up_to(&shared.db, upper_key)?;
    if left > 0 {
        // Other workers' batches in flight (or rows an application transaction holds).
        return Ok(Step::Wait(Duration::from_millis(200)));
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
    }
    Ok(Step::Worked)
}

fn compute_failed(
    shared: &Shared,
    tables: &Tables,
    name: &str,
    lane: &Lane,
    error: &Error,
) -> Result<Step> {
    let failures = lane.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures > MAX_BATCH_RETRIES {
        let mut conn = shared.db.get()?;
        let message = format!("a batch failed {failures} times: {error}");
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
        return Ok(Step::Worked);
    }
    // Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s, 2 s, 4 s, plus up to 25 %.
    let base = Duration::from_millis(250 << (failures - 1).min(4));
    let jitter = base.mul_f64(f64::from(std::process::id() % 100 + failures * 7 % 100) / 400.0);
    log::warn!(
        "Backfill {name}: a batch failed (attempt {failures} of {}): {error}; retrying in {} ms",
        MAX_BATCH_RETRIES + 1,
        (base + jitter).as_millis()
    );
    Ok(Step::Wait(base + jitter))
}

/// Whether a write failed on PostgreSQL's `statement_timeout` or `lock_timeout`.
fn is_timeout(error: &Error) -> bool {
    let text = error.to_string();
    text.contains("statement timeout") || text.contains("lock timeout")
}

/// Moves the batch size toward `MIGRATION_BATCH_TARGET_MS`: at most doubled or halved per
/// batch; a short batch (fewer rows than asked: the end of the keys) teaches nothing.
fn adapt(shared: &Shared, lane: &Lane, size: usize, rows: usize, took: Duration) {
    if rows < size || took.is_zero() {
        return;
    }
    let target = shared.config.batch_target().as_secs_f64();
    let ratio = (target / took.as_secs_f64()).clamp(0.5, 2.0);
    let next = ((size as f64 * ratio).round() as usize)
        .clamp(1, lane.job.backfill.capped_batch_size(usize::MAX));
    lane.batch_size.store(next, Ordering::Relaxed);
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
    crate::metrics::background_backfill(&state);
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
