//! Background backfills measured (issue 11): rows/s of the background workers against the
//! inline backfill on the same rows, start-up time with 20,000 against 200,000 pending rows,
//! and `/api-test` latency of the demo server while its workers run, against none.
//!
//! The rows/s and latency figures run in child processes of `bench-summary` (its
//! `child-backfill-mode` and `child-demo` modes), each with the Argon2 parameters it is given.

use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use migrator::backfill::{self, BackfillStatus, Workers};
use migrator::password::Params;
use migrator::{
    config::BackfillMode, config::Environment, connection::Backend, Config, Database, Migrator,
};
use smart_meal_planner::kroger;

use crate::load::{self, Latencies};
use crate::{fresh, seed};

/// A row of the summary table: measurement, value, notes.
pub type Row = (String, String, String);

/// The backfill 001 schedules.
const NAME: &str = kroger::HASH_KROGER_PASSWORDS_BACKFILL;

/// The nice value both modes run at in [`child_backfill_mode`]: the background workers lower
/// their threads to 10, so the inline run does too, and other load on a shared machine weighs
/// on both alike.
const NICE: i32 = 10;

fn config(mode: BackfillMode, threads: u32) -> Config {
    let mut config = Config::new(Environment::Development);
    config
        .set_backfill_mode(mode)
        .set_worker_threads(threads)
        .set_backfill_threads(threads);
    config
}

/// `bench-summary child-backfill-mode MODE URL THREADS MEMORY_KIB ITERATIONS`: runs 001 on
/// the seeded table at `URL` inline, or in background mode followed by `Workers::run_until_idle`
/// on as many threads, at nice 10; prints `secs=`, `startup_secs=` and `batch_size=` (the
/// backfill's last batch size).
#[allow(unsafe_code, reason = "setpriority(2) on this process")]
pub fn child_backfill_mode(args: &[String]) {
    let [mode, url, threads, memory_kib, iterations] = args else {
        eprintln!("usage: bench-summary child-backfill-mode inline|background URL THREADS M T");
        std::process::exit(2);
    };
    let number = |s: &String| s.parse::<u32>().expect("a number");
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes no pointers; threads started later inherit the nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
    kroger::set_hash_params(Params {
        memory_kib: number(memory_kib),
        iterations: number(iterations),
        parallelism: 1,
    });
    let mode: BackfillMode = mode.parse().expect("inline or background");
    let threads = number(threads);
    let config = config(mode, threads);
    let db = Database::connect(url).expect("connect");
    let start = Instant::now();
    Migrator::from_registry()
        .expect("registry")
        .run(&db, &config)
        .expect("001");
    let startup = start.elapsed();
    if mode == BackfillMode::Background {
        Workers::run_until_idle(
            db.clone(),
            &config,
            threads as usize,
            &AtomicBool::new(false),
        )
        .expect("the workers");
    }
    let secs = start.elapsed().as_secs_f64();
    let state = backfill::get(&db, NAME)
        .expect("read the backfill")
        .expect("the backfill's row");
    assert_eq!(state.status, BackfillStatus::Finished, "{state:?}");
    println!(
        "secs={secs:.3} startup_secs={:.3} batch_size={} rows_done={}",
        startup.as_secs_f64(),
        state.batch_size,
        state.rows_done
    );
}

fn field(text: &str, name: &str) -> f64 {
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(name))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Background rows/s against inline on the same rows (PostgreSQL, `rows` rows, m=4096,t=1,
/// `threads` threads), two interleaved rounds of each.
pub fn inline_against_background(rows: u64, threads: usize) -> Vec<Row> {
    let light = Params {
        memory_kib: 4096,
        iterations: 1,
        parallelism: 1,
    };
    let dir = std::env::temp_dir();
    let (mut inline, mut background) = (Vec::new(), Vec::new());
    let (mut batch_sizes, mut startups) = (Vec::new(), Vec::new());
    for _round in 0..2 {
        for mode in ["inline", "background"] {
            let url = fresh(Backend::Postgres, &dir, "modes");
            let db = Database::connect(&url).expect("connect");
            seed(&db, rows);
            let out = Command::new(std::env::current_exe().expect("this binary"))
                .args(["child-backfill-mode", mode, &url, &threads.to_string()])
                .args([light.memory_kib.to_string(), light.iterations.to_string()])
                .stderr(Stdio::inherit())
                .output()
                .expect("run a child");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child {mode} failed: {text}");
            assert_eq!(field(&text, "rows_done=") as u64, rows, "{mode}: {text}");
            let twice = crate::count(
                &db,
                "SELECT COUNT(*) AS n FROM (SELECT user_id FROM update_log \
                 GROUP BY user_id HAVING COUNT(*) > 1) AS d",
            );
            assert_eq!(twice, 0, "{mode}: rows hashed twice");
            let rate = rows as f64 / field(&text, "secs=");
            if mode == "inline" {
                inline.push(rate);
            } else {
                background.push(rate);
                batch_sizes.push(field(&text, "batch_size=") as u64);
                startups.push(field(&text, "startup_secs="));
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (i, b) = (mean(&inline), mean(&background));
    vec![(
        format!(
            "background rows/s against inline, PostgreSQL, {rows} rows, {threads} threads \
             (m=4096,t=1)"
        ),
        format!("{b:.1} / {i:.1} rows/s"),
        format!(
            "ratio {:.3} (target >= 0.9); rounds: background {:.1}, {:.1}; inline {:.1}, \
             {:.1}; both at nice 10; background = start-up ({:.2} s, {:.2} s) + workers; \
             last batch sizes {batch_sizes:?}",
            b / i,
            background[0],
            background[1],
            inline[0],
            inline[1],
            startups[0],
            startups[1],
        ),
    )]
}

/// Start-up (`Migrator::run` of 001 in background mode) with 20,000, 200,000 and 2,000,000
/// pending rows on PostgreSQL: the median of three interleaved rounds, each run on a freshly
/// seeded table (one `INSERT ... SELECT generate_series`), after one uncounted start-up.
pub fn startup_by_size() -> Vec<Row> {
    let dir = std::env::temp_dir();
    let sizes = [20_000u64, 200_000, 2_000_000];
    let run = |rows: u64| {
        let url = fresh(Backend::Postgres, &dir, "startup");
        let db = Database::connect(&url).expect("connect");
        seed(&db, rows);
        let start = Instant::now();
        Migrator::from_registry()
            .expect("registry")
            .run(&db, &config(BackfillMode::Background, 1))
            .expect("001");
        let took = start.elapsed();
        let state = backfill::get(&db, NAME).expect("read").expect("scheduled");
        // An estimate: within 2% of the rows here (dense keys, all pending).
        let off = (state.rows_total as f64 - rows as f64).abs() / rows as f64;
        assert!(
            off <= 0.02,
            "rows_total {} for {rows} rows",
            state.rows_total
        );
        assert_eq!(state.rows_done, 0);
        drop(db);
        crate::drop_database(&url);
        (took, state.rows_total)
    };
    // One start-up first, not counted: the process's first connections and catalog reads.
    run(1_000);
    // Three rounds, each size once per round (the machine's load drifts alike over all).
    let mut times = vec![Vec::new(); sizes.len()];
    let mut estimates = Vec::new();
    for _round in 0..3 {
        for (i, rows) in sizes.into_iter().enumerate() {
            let (took, estimate) = run(rows);
            times[i].push(took);
            estimates.push(estimate);
        }
    }
    let medians: Vec<Duration> = times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[1]
        })
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = medians[2].as_secs_f64() / medians[0].as_secs_f64();
    vec![(
        "start-up of 001 in background mode, PostgreSQL, 20,000 / 200,000 / 2,000,000 pending \
         rows"
            .into(),
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            ms(medians[0]),
            ms(medians[1]),
            ms(medians[2])
        ),
        format!(
            "**ratio {ratio:.2}** for 100x the rows (target <= 1.2; 200,000: {:.2}); median of 3 \
             interleaved rounds; rows_total estimated (pg_class statistics or the key span, times the \
             pending share of a bounded probe): {estimates:?}; the index is built by whoever \
             completes the backfill",
            medians[1].as_secs_f64() / medians[0].as_secs_f64()
        ),
    )]
}

/// `bench-summary child-demo`: the demo server (`smart_meal_planner::demo::main`), configured
/// by the environment its parent sets.
pub fn child_demo() -> std::process::ExitCode {
    // The demo starts its own background workers after start-up (MIGRATION_BACKFILL_THREADS).
    smart_meal_planner::demo::main()
}

/// How often each client of [`api_latency`] sends a request: 50 clients, 2,500 requests/s in
/// all, which leaves the CPU time the workers use (back-to-back requests would saturate both
/// cores, and the nice workers would get almost nothing).
const INTERVAL: Duration = Duration::from_millis(20);

/// Interleaved rounds of [`api_latency`] (with and without workers): the machine's other load
/// moves a p99 by 2x from one round to the next, so the median of rounds.
const ROUNDS: usize = 3;

/// A demo server started by [`api_latency`]; killed when dropped.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the demo on `url` with `threads` backfill workers (0: none) and waits until its
/// `/health` answers 200.
fn start_demo(url: &str, threads: usize, log: &std::path::Path) -> (Demo, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new(std::env::current_exe().expect("this binary"))
        .arg("child-demo")
        .env("DATABASE_URL", url)
        .env("ENVIRONMENT", "development")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_FILE", log)
        .env("MIGRATION_BACKFILL_THREADS", threads.to_string())
        // Small first batches, so that progress shows within a round; then they adapt.
        .env("MIGRATION_BATCH_SIZE", "16")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let mut demo = Demo(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !load::answers(port, "/health") {
        if let Ok(Some(exit)) = demo.0.try_wait() {
            panic!(
                "the demo exited ({exit}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the demo is not ok within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (demo, port)
}

/// p50/p99 of `/api-test` under `clients` concurrent clients (one request each every
/// `INTERVAL`), with the demo's background
/// workers (`threads`, nice 10) hashing a backfill of `rows` rows at the default Argon2
/// parameters, against the demo with no workers: `ROUNDS` interleaved rounds of each.
pub fn api_latency(rows: u64, clients: usize, threads: usize) -> Vec<Row> {
    let dir = std::env::temp_dir().join(format!("migrator-demo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let url = fresh(Backend::Postgres, &dir, "demo");
    let db = Database::connect(&url).expect("connect");
    seed(&db, rows);
    Migrator::from_registry()
        .expect("registry")
        .run(&db, &config(BackfillMode::Background, 1))
        .expect("001 schedules");
    let (warm_up, measure) = (Duration::from_secs(1), Duration::from_secs(8));
    let mut runs: [Vec<Latencies>; 2] = [Vec::new(), Vec::new()];
    let mut hashed = 0;
    for round in 0..ROUNDS {
        for (w, workers) in [0, threads].into_iter().enumerate() {
            let log = dir.join(format!("demo-{round}-{workers}.log"));
            let (demo, port) = start_demo(&url, workers, &log);
            let done = |db: &Database| {
                let state = backfill::get(db, NAME).expect("read").expect("scheduled");
                (state.rows_done, state.status)
            };
            let (before, _) = done(&db);
            runs[w].push(load::load(
                port,
                "/api-test",
                clients,
                INTERVAL,
                warm_up,
                measure,
            ));
            let (after, status) = done(&db);
            drop(demo);
            if workers > 0 {
                assert_eq!(
                    status,
                    BackfillStatus::Active,
                    "the backfill finished during the load: seed more rows"
                );
                assert!(after > before, "the workers hashed nothing:\n{}", {
                    std::fs::read_to_string(&log).unwrap_or_default()
                });
                hashed += after - before;
            } else {
                assert_eq!(after, before, "rows hashed with no workers");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |runs: &[Latencies], p: f64| {
        let mut v: Vec<f64> = runs.iter().map(|r| ms(r.percentile(p))).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rounds = |runs: &[Latencies]| {
        let v: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1}", ms(r.percentile(99.0))))
            .collect();
        v.join(", ")
    };
    let errors: u64 = runs.iter().flatten().map(|r| r.errors).sum();
    let rps = |runs: &[Latencies]| {
        runs.iter().map(Latencies::throughput).sum::<f64>() / runs.len() as f64
    };
    let (p99_none, p99_work) = (median(&runs[0], 99.0), median(&runs[1], 99.0));
    vec![(
        format!(
            "/api-test p99 under {clients} concurrent requests, demo with {threads} workers \
             (nice 10) hashing / no workers"
        ),
        format!("{p99_work:.2} / {p99_none:.2} ms"),
        format!(
            "ratio {:.2} (target <= 1.5); p50 {:.2} / {:.2} ms; {:.0} / {:.0} requests/s; \
             medians of {ROUNDS} interleaved rounds of 8 s (p99 per round: {} / {} ms), each \
             client one request every {} ms; {hashed} rows hashed meanwhile (default Argon2 \
             parameters); errors: {errors}",
            p99_work / p99_none,
            median(&runs[1], 50.0),
            median(&runs[0], 50.0),
            rps(&runs[1]),
            rps(&runs[0]),
            rounds(&runs[1]),
            rounds(&runs[0]),
            INTERVAL.as_millis(),
        ),
    )]
}
