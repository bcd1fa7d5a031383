//! `scripts/soak`: the background backfill of migration 001 under production conditions
//! (issue 17). A throwaway PostgreSQL with a streaming standby, three demo processes sharing
//! one background backfill, a paced load of requests that touch the database, and faults at
//! seeded random moments; then one PASS/FAIL line per check and a summary line.
//!
//! `soak [--short] [--seed N] [--rows N] [--argon2-kib N]`; `soak child-demo` is the demo
//! server itself (this binary re-executed, as `bench-summary child-demo`).

mod checks;
mod demo;
mod faults;
mod load;
mod setup;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::Phase;

/// The knobs of one run: `--short` (what CI runs) or the full soak.
#[derive(Clone, Debug)]
pub struct Plan {
    pub short: bool,
    /// Worker threads per demo process (`--threads`, default [`WORKER_THREADS`]).
    pub threads: usize,
    pub seed: u64,
    pub rows: i64,
    /// Argon2 memory (KiB) of the demo processes (t=1, p=1): it paces the backfill so that
    /// it runs through the fault window.
    pub argon2_kib: u32,
    /// The paced run without workers.
    pub baseline: Duration,
    /// With workers, before the first fault.
    pub quiet: Duration,
    /// The window in which the faults start: 75% of the backfill's remaining time at its
    /// measured rate, at least `min_window` (every fault fits in it) and at most `window`.
    pub window: Duration,
    pub min_window: Duration,
    /// How long standby replay stays paused.
    pub replay_pause: Duration,
    /// How long the REPEATABLE READ report runs.
    pub report: Duration,
    /// How long the operator's transaction stays open.
    pub operator_hold: Duration,
    /// How long the backfill stays paused from the operator page.
    pub paused: Duration,
    /// SIGKILLs of a demo process (each restarted).
    pub kills: usize,
    /// Rounds of `pg_terminate_backend`.
    pub terminations: usize,
    /// How long the backfill may take to finish after the fault window.
    pub finish_within: Duration,
    /// Load client threads, and the interval between two requests of one client.
    pub clients: usize,
    pub interval: Duration,
    /// Users the load verifies and sets passwords of.
    pub load_users: usize,
}

impl Plan {
    fn new(short: bool, seed: u64) -> Plan {
        let s = Duration::from_secs;
        if short {
            Plan {
                short,
                threads: WORKER_THREADS,
                seed,
                rows: 35_000,
                argon2_kib: 2048,
                baseline: s(6),
                quiet: s(5),
                window: s(45),
                min_window: s(12),
                replay_pause: s(8),
                report: s(10),
                operator_hold: s(5),
                paused: s(5),
                kills: 1,
                terminations: 3,
                finish_within: s(60),
                clients: 4,
                interval: Duration::from_millis(40),
                load_users: 400,
            }
        } else {
            Plan {
                short,
                threads: WORKER_THREADS,
                seed,
                rows: 200_000,
                argon2_kib: 4096,
                baseline: s(30),
                quiet: s(30),
                window: s(300),
                min_window: s(16),
                replay_pause: s(20),
                report: s(90),
                operator_hold: s(10),
                paused: s(15),
                kills: 3,
                terminations: 10,
                finish_within: s(1800),
                clients: 4,
                interval: Duration::from_millis(40),
                load_users: 2_000,
            }
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: soak [--short] [--seed N] [--rows N] [--argon2-kib N] [--threads N]");
    ExitCode::from(2)
}

/// Worker threads per demo process once the workers start (`--threads`): 3 × 4 = 12 beside
/// the app, as issue 17 asks (item 2).
const WORKER_THREADS: usize = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child-demo") {
        return smart_meal_planner::demo::main();
    }
    let mut short = false;
    let mut seed = None;
    let mut rows = None;
    let mut kib = None;
    let mut threads = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Option<u64> {
            let v = it.next().and_then(|v| v.parse::<u64>().ok());
            if v.is_none() {
                eprintln!("soak: {what} takes a whole number");
            }
            v
        };
        match arg.as_str() {
            "--short" => short = true,
            "--seed" => match number("--seed") {
                Some(v) => seed = Some(v),
                None => return usage(),
            },
            "--rows" => match number("--rows") {
                Some(v) if v >= 1_000 => rows = Some(v as i64),
                _ => return usage(),
            },
            "--argon2-kib" => match number("--argon2-kib") {
                Some(v) if (8..=1_048_576).contains(&v) => kib = Some(v as u32),
                _ => return usage(),
            },
            "--threads" => match number("--threads") {
                Some(v) if (1..=64).contains(&v) => threads = Some(v as usize),
                _ => return usage(),
            },
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("soak: unknown argument {other}");
                return usage();
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
    });
    let mut plan = Plan::new(short, seed);
    if let Some(rows) = rows {
        plan.rows = rows;
    }
    if let Some(kib) = kib {
        plan.argon2_kib = kib;
    }
    if let Some(threads) = threads {
        plan.threads = threads;
    }
    match run(&plan) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            println!("FAIL soak could not run: {e}");
            println!("soak: did not complete (seed {})", plan.seed);
            ExitCode::from(2)
        }
    }
}

/// Prints progress on stderr with the time since the start.
pub fn note(start: Instant, what: &str) {
    eprintln!("[soak {:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

fn run(plan: &Plan) -> Result<usize, String> {
    let start = Instant::now();
    println!(
        "soak: {} mode, seed {} (rerun: scripts/soak{} --seed {}), {} rows, Argon2id m={} KiB t=1 p=1",
        if plan.short { "short" } else { "full" },
        plan.seed,
        if plan.short { " --short" } else { "" },
        plan.seed,
        plan.rows,
        plan.argon2_kib
    );
    let env = setup::Env::start(plan, start)?;
    let fleet = Arc::new(demo::Fleet::new(&env, plan)?);

    // 1. Baseline: three processes without workers (001 schedules the backfill; no one works
    //    on it), a paced load.
    note(
        start,
        "starting three demo processes without workers (baseline)",
    );
    // The migration lock exists only while 001 runs at the first start-up: its session is
    // terminated then (the `lock` kind of pg_terminate_backend).
    let watcher = faults::terminate_lock_at_startup(env.admin_url.clone());
    let restarted = fleet.start_all(0)?;
    let startup_lock = watcher
        .join()
        .unwrap_or_else(|_| (0.0, Err("the lock watcher panicked".into())));
    let startup_lock = (
        startup_lock.0,
        match (startup_lock.1, restarted.is_empty()) {
            (Ok(what), true) => Ok(what),
            (Ok(what), false) => Err(format!("{what}; then {}", restarted.join("; "))),
            (Err(why), _) => Err(why),
        },
    );
    let load = load::Load::start(plan, &env, Arc::clone(&fleet), start);
    std::thread::sleep(plan.baseline);

    // 2. Rolling restart with WORKER_THREADS worker threads each (12 in all: what a 24-core
    //    host's default gives one process); the load goes on (to the others).
    note(
        start,
        &format!(
            "rolling restart with MIGRATION_BACKFILL_THREADS={}",
            plan.threads
        ),
    );
    load.set_phase(Phase::Restart);
    fleet.rolling_restart(plan.threads)?;
    load.set_phase(Phase::Workers);
    note(start, "workers running, no faults yet");
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = faults::sample_idle_in_transaction(env.admin_url.clone(), Arc::clone(&sampling));
    let before = checks::progress(&env)?;
    std::thread::sleep(plan.quiet);
    let after = checks::progress(&env)?;

    // 3. Faults at seeded random moments of a window that ends before the backfill would
    //    (from its rate so far): a fault after the last row proves nothing.
    let rate = (after.1 - before.1).max(1) as f64 / plan.quiet.as_secs_f64();
    let expected = (after.2 - after.1).max(0) as f64 / rate;
    let window = Duration::from_secs_f64(
        (expected * 0.75).clamp(plan.min_window.as_secs_f64(), plan.window.as_secs_f64()),
    );
    println!(
        "fault window: {:.0} s (the backfill did {rate:.0} rows/s without faults: {}/{} rows, \
         about {expected:.0} s to go)",
        window.as_secs_f64(),
        after.1,
        after.2
    );
    load.set_phase(Phase::Faults);
    note(start, "fault window opens");
    let mut report = faults::run(plan, window, &env, &fleet, start);
    report.startup_lock = Some(startup_lock);

    // 4. The backfill must finish; the load goes on meanwhile.
    load.set_phase(Phase::Tail);
    let finished = checks::wait_finished(&env, plan.finish_within, start);
    let stats = load.stop();
    sampling.store(true, Ordering::SeqCst);
    let idle = sampler.join().unwrap_or_default();
    fleet.ready_flag().store(false, Ordering::SeqCst);
    let pages = fleet.scrape_pages();
    let processes = fleet.stop_all();
    note(start, "checks");
    let failed = checks::run(
        plan, &env, &stats, &report, &finished, &pages, &processes, idle, start,
    );
    Ok(failed)
}
