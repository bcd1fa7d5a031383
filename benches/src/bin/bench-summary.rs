//! Quick versions of the benchmarks, summed up as one Markdown table (`scripts/bench-summary`).
//!
//! Every figure comes from this one run, so ratios compare like with like on a shared, noisy
//! machine. `bench-summary hashing` measures the hash rates only (with the lanes and wipe
//! figures); `bench-summary lanes` the lanes in parallel and the wipe only; `bench-summary wipe`
//! the wipe only (about 2 minutes); `bench-summary background
//! [modes|startup|latency]` the background-backfill figures only; `bench-summary engine [ROWS
//! [postgres|sqlite]]`
//! the engine against a client-side loop and in-server `UPDATE`s (trivial compute, 1,000,000
//! rows by default); `bench-summary seed [ROWS]` 001 against the seed's Python script (200 rows
//! by default). `bench-summary child-backfill URL THREADS MEMORY_KIB
//! ITERATIONS` is the child process it starts for peak-RSS and scale-out measurements;
//! `child-backfill-mode` and `child-demo` those of the background-backfill figures (see
//! `migrator_benches::background`), `child-seed-001` that of the seed comparison.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use migrator::password::{Hasher, Kernel, Params};
use migrator::{
    config::Environment, connection::Backend, context::Progress, Config, Database, Migrator,
};
use migrator_benches::{
    argon2_cffi_rate, argon2_crate_rate, background, cores, count, cpu, diesel_noop, diesel_run,
    engine, fresh, hash_rate, lanes, seed, wipe,
};
use smart_meal_planner::kroger::{self, BackfillOptions};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child-backfill") => child(&args[2..]),
        Some("child-backfill-mode") => background::child_backfill_mode(&args[2..]),
        Some("child-demo") => return background::child_demo(),
        Some("child-seed-001") => seed::child_seed_001(&args[2..]),
        Some("engine") => print_table(engine_rows(
            args.get(2).map(String::as_str),
            args.get(3).map(String::as_str),
        )),
        Some("seed") => print_table(seed_rows(args.get(2).map(String::as_str))),
        Some("background") => {
            print_table(background_rows(cores(), args.get(2).map(String::as_str)))
        }
        Some("lanes") => print_table(lanes_rows(cores())),
        Some("wipe") => print_table(wipe_rows(cores())),
        what => summary(what == Some("hashing")),
    }
    std::process::ExitCode::SUCCESS
}

/// The background-backfill figures (issue 11): rows/s against inline, start-up by table size,
/// `/api-test` latency with workers against none.
/// `only`: `modes`, `startup` or `latency` (one of them).
fn background_rows(cores: usize, only: Option<&str>) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut push = |more: Vec<(String, String, String)>| {
        for (what, value, note) in &more {
            eprintln!("{what}: {value} {note}");
        }
        rows.extend(more);
    };
    let wanted = |what: &str| only.is_none_or(|o| o == what);
    if wanted("modes") {
        push(background::inline_against_background(4_000, cores));
    }
    if wanted("startup") {
        push(background::startup_by_size());
    }
    if wanted("latency") {
        // The default MIGRATION_BACKFILL_THREADS (half the cores), then all cores.
        for threads in [(cores / 2).max(1), cores] {
            push(background::api_latency(6_000, 50, threads));
        }
    }
    rows
}

/// Rows of the engine's own cost (issue 21 item 2), on `rows` rows (default 1,000,000) of
/// `backend` (`postgres` or `sqlite`; default both).
fn engine_rows(rows: Option<&str>, backend: Option<&str>) -> Vec<(String, String, String)> {
    let rows = rows.and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
    let backends = match backend {
        Some("postgres") => vec![Backend::Postgres],
        Some("sqlite") => vec![Backend::Sqlite],
        _ => vec![Backend::Postgres, Backend::Sqlite],
    };
    let out = engine::engine_against_loop(rows, ENGINE_BATCH, 2, &backends);
    for (what, value, note) in &out {
        eprintln!("{what}: {value} {note}");
    }
    out
}

/// Rows per batch of the engine benchmark, for the engine, the loop and the in-server
/// `UPDATE`s alike.
const ENGINE_BATCH: usize = 5_000;

/// 001 against the seed's Python script (issue 21 item 4), on `rows` rows (default 200).
fn seed_rows(rows: Option<&str>) -> Vec<(String, String, String)> {
    let rows = rows.and_then(|r| r.parse().ok()).unwrap_or(200);
    let out = migrator_benches::seed::seed_comparison(rows, 1);
    for (what, value, note) in &out {
        eprintln!("{what}: {value} {note}");
    }
    out
}

/// Lanes in parallel and the wipe of the working memory (issue 21 item 1, issue 18 item 5):
/// five interleaved rounds of 2 s per variant (about 3.5 minutes).
fn lanes_rows(cores: usize) -> Vec<(String, String, String)> {
    let mut rows = lanes::lanes(cores, 5, Duration::from_secs(2));
    rows.extend(wipe_rows(cores));
    rows
}

/// The wipe of the working memory and huge pages (issue 18 item 5): ten interleaved rounds of
/// 1 s per variant (about 2 minutes; short rounds, so that the load of a shared machine drifts
/// less within one).
fn wipe_rows(cores: usize) -> Vec<(String, String, String)> {
    wipe::wipe(cores, 10, Duration::from_secs(1))
}

/// Runs the Kroger backfill on an existing table and prints rows, seconds and peak RSS.
fn child(args: &[String]) {
    let [url, threads, memory_kib, iterations] = args else {
        eprintln!("usage: bench-summary child-backfill URL THREADS MEMORY_KIB ITERATIONS");
        std::process::exit(2);
    };
    let parse = |s: &String| s.parse::<u32>().expect("a number");
    kroger::set_hash_params(Params {
        memory_kib: parse(memory_kib),
        iterations: parse(iterations),
        parallelism: 1,
    });
    let db = Database::connect(url).expect("connect");
    let start = Instant::now();
    let report = kroger::run_backfill(
        &db,
        &Progress::new("bench", Duration::from_secs(3600)),
        &BackfillOptions {
            threads: Some(parse(threads) as usize),
            batch_size: None,
        },
    )
    .expect("the backfill");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "rows={} secs={:.3} rss_kib={rss}",
        report.rows_updated,
        start.elapsed().as_secs_f64()
    );
}

struct ChildResult {
    rows: u64,
    rss_kib: u64,
}

fn spawn_child(url: &str, threads: usize, params: Params) -> std::process::Child {
    Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "child-backfill",
            url,
            &threads.to_string(),
            &params.memory_kib.to_string(),
            &params.iterations.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child")
}

fn wait_child(child: std::process::Child) -> ChildResult {
    let out = child.wait_with_output().expect("the child");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    ChildResult {
        rows: field("rows=") as u64,
        rss_kib: field("rss_kib=") as u64,
    }
}

/// A seeded table with the hash columns already added (what `work` joins).
fn prepared(backend: Backend, dir: &std::path::Path, name: &str, rows: u64) -> (String, Database) {
    let url = fresh(backend, dir, name);
    let db = Database::connect(&url).expect("connect");
    seed(&db, rows);
    db.get()
        .expect("a connection")
        .batch_execute(
            "ALTER TABLE user_profiles ADD COLUMN kroger_password_hash TEXT;
             ALTER TABLE user_profiles ADD COLUMN kroger_password_salt TEXT;",
        )
        .expect("add columns");
    (url, db)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn summary(hashing_only: bool) {
    let cores = cores();
    let dir = std::env::temp_dir().join(format!("migrator-summary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let params = Params::default();
    let hasher = Hasher::new(params).expect("valid parameters");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut push = |what: &str, value: String, note: String| {
        eprintln!("{what}: {value} {note}");
        rows.push((what.to_owned(), value, note));
    };

    // 1. Raw Argon2id rates: every kernel this CPU has, the argon2 crate (the hasher before the
    // kernels) and argon2-cffi, in two interleaved rounds (the mean), on 1 thread and all cores.
    let detected = Kernel::detected();
    push(
        "CPU, kernel",
        detected.to_string(),
        format!("{}; supported: {:?}", cpu(), Kernel::supported()),
    );
    let second = Duration::from_secs(3);
    let kernels = Kernel::supported();
    let mut ours = vec![[0.0f64; 2]; kernels.len()];
    let (mut crate_reused, mut crate_fresh, mut ours_fresh, mut cffi) =
        ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
    let mut cffi_error = None;
    for _round in 0..2 {
        for (t, threads) in [1, cores].into_iter().enumerate() {
            for (k, kernel) in kernels.iter().enumerate() {
                let hasher = hasher
                    .clone()
                    .with_kernel(*kernel)
                    .expect("a supported kernel");
                ours[k][t] += hash_rate(&hasher, threads, second, true) / 2.0;
            }
            ours_fresh[t] += hash_rate(&hasher, threads, second, false) / 2.0;
            crate_reused[t] += argon2_crate_rate(params, threads, second, true) / 2.0;
            crate_fresh[t] += argon2_crate_rate(params, threads, second, false) / 2.0;
            match argon2_cffi_rate(params, threads, second) {
                Ok(rate) => cffi[t] += rate / 2.0,
                Err(e) => cffi_error = Some(e),
            }
        }
    }
    let cffi_note = |t: usize, rate: f64| match &cffi_error {
        Some(e) => format!("argon2-cffi: {e}"),
        None => format!("{:.2}x argon2-cffi ({:.1})", rate / cffi[t], cffi[t]),
    };
    for t in 0..2 {
        let label = if t == 0 {
            "1 thread".to_owned()
        } else {
            format!("{cores} threads")
        };
        for (k, kernel) in kernels.iter().enumerate() {
            let rate = ours[k][t];
            let target = match (t, *kernel == detected) {
                (0, true) => " (target >= 1.35x the argon2 crate)",
                (1, true) => " (target >= 1.25x argon2-cffi)",
                _ => "",
            };
            push(
                &format!("hashes/s, {label} (m=19456,t=2,p=1), {kernel} kernel"),
                format!("{rate:.1}"),
                format!(
                    "{:.2}x the argon2 crate with reused memory ({:.1}); {}{target}",
                    rate / crate_reused[t],
                    crate_reused[t],
                    cffi_note(t, rate)
                ),
            );
        }
        push(
            &format!("hashes/s, {label}, fresh allocation per hash"),
            format!("{:.1}", ours_fresh[t]),
            format!(
                "{detected} kernel; reuse gains {:.2}x; the argon2 crate fresh: {:.1}",
                ours[0][t] / ours_fresh[t],
                crate_fresh[t]
            ),
        );
    }
    let all = ours[0][1];
    for (what, value, note) in lanes_rows(cores) {
        push(&what, value, note);
    }
    if hashing_only {
        print_table(rows);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // 2. The migration end to end, against the all-core rate measured again around it (the
    // mean of both measurements, so that drift of a shared machine shows as spread, not bias).
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let url = fresh(backend, &dir, "e2e");
        let db = Database::connect(&url).expect("connect");
        seed(&db, 2_000);
        let start = Instant::now();
        Migrator::from_registry()
            .expect("registry")
            .run(&db, &Config::new(Environment::Development))
            .expect("the migration");
        let rate = 2_000.0 / start.elapsed().as_secs_f64();
        // The all-core rate measured again right after: the ratio uses the mean of both, so
        // that drift of a shared machine shows as spread, not bias.
        let after = hash_rate(&hasher, cores, second, true);
        push(
            &format!("001 backfill rows/s, {backend}, 2,000 rows"),
            format!("{rate:.1}"),
            format!(
                "{:.3} x raw all-core rate (target >= 0.95; raw {all:.1} before, {after:.1} after)",
                rate / ((all + after) / 2.0)
            ),
        );
    }

    // 3. No-op start-up against Diesel's no-op.
    kroger::set_hash_params(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = Database::connect(&fresh(backend, &dir, "noop")).expect("connect");
        seed(&db, 10);
        let migrator = Migrator::from_registry().expect("registry");
        let config = Config::new(Environment::Development);
        migrator.run_on_startup(&db, &config).expect("first run");
        assert_eq!(diesel_run(&db), 1);
        let time = |f: &dyn Fn()| {
            (0..20).for_each(|_| f());
            median(
                (0..200)
                    .map(|_| {
                        let start = Instant::now();
                        f();
                        start.elapsed()
                    })
                    .collect(),
            )
        };
        let ours = time(&|| {
            migrator.run_on_startup(&db, &config).expect("no-op");
        });
        let theirs = time(&|| diesel_noop(&db));
        push(
            &format!("no-op start-up, {backend} (median of 200)"),
            format!("{:.3} ms", ours.as_secs_f64() * 1e3),
            format!(
                "diesel run_pending_migrations: {:.3} ms; ratio {:.2} (target <= 2)",
                theirs.as_secs_f64() * 1e3,
                ours.as_secs_f64() / theirs.as_secs_f64()
            ),
        );
    }

    // 4. Peak RSS of the backfill process at 2,000 and 20,000 rows (m=4096,t=1 to keep the
    // 20,000-row runs short: Argon2 memory is per thread, not per row). On SQLite the process
    // also holds SQLite's page cache (bounded, about 2 MiB per connection).
    let light = Params {
        memory_kib: 4096,
        iterations: 1,
        parallelism: 1,
    };
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let mut rss = Vec::new();
        for n in [2_000u64, 20_000] {
            let (url, _db) = prepared(backend, &dir, &format!("rss{n}"), n);
            let result = wait_child(spawn_child(&url, cores, light));
            assert_eq!(result.rows, n);
            rss.push(result.rss_kib);
        }
        push(
            &format!("peak RSS of the backfill, {backend}, 2,000 / 20,000 rows"),
            format!("{} / {} KiB", rss[0], rss[1]),
            format!(
                "ratio {:.3} (target <= 1.10; m=4096,t=1)",
                rss[1] as f64 / rss[0] as f64
            ),
        );
    }

    // 5. Scale-out on PostgreSQL: 2 processes x 1 thread against 1 process x 2 threads.
    let rows_scale = 2_000u64;
    let (url, db) = prepared(Backend::Postgres, &dir, "one", rows_scale);
    let start = Instant::now();
    let single = wait_child(spawn_child(&url, 2, params));
    let one_by_two = single.rows as f64 / start.elapsed().as_secs_f64();
    let twice_a = count(&db, "SELECT COUNT(*) AS n FROM (SELECT user_id FROM update_log GROUP BY user_id HAVING COUNT(*) > 1) AS d");
    let (url, db) = prepared(Backend::Postgres, &dir, "two", rows_scale);
    let start = Instant::now();
    let children = [spawn_child(&url, 1, params), spawn_child(&url, 1, params)];
    let results: Vec<ChildResult> = children.into_iter().map(wait_child).collect();
    let two_by_one =
        results.iter().map(|r| r.rows).sum::<u64>() as f64 / start.elapsed().as_secs_f64();
    let twice_b = count(&db, "SELECT COUNT(*) AS n FROM (SELECT user_id FROM update_log GROUP BY user_id HAVING COUNT(*) > 1) AS d");
    let left = count(
        &db,
        "SELECT COUNT(*) AS n FROM user_profiles WHERE kroger_password_hash IS NULL",
    );
    push("scale-out, PostgreSQL, 2,000 rows: 2 processes x 1 thread", format!("{two_by_one:.1} rows/s"), format!("1 process x 2 threads: {one_by_two:.1} rows/s; ratio {:.3} (target >= 0.9); rows hashed twice: {} and {}; rows left: {left}; split {}/{}", two_by_one / one_by_two, twice_b, twice_a, results[0].rows, results[1].rows));

    // 6. Background backfills: rows/s against inline, start-up by table size, request latency
    // while the workers run.
    rows.extend(background_rows(cores, None));

    // 7. The engine's own cost (a trivial compute) and 001 against the seed's Python script.
    rows.extend(engine_rows(None, None));
    rows.extend(seed_rows(None));

    print_table(rows);
    let _ = std::fs::remove_dir_all(&dir);
}

fn print_table(rows: Vec<(String, String, String)>) {
    println!("| measurement | value | notes |");
    println!("|---|---|---|");
    for (what, value, note) in rows {
        println!("| {what} | {value} | {note} |");
    }
}
