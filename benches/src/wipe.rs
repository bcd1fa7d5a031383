//! The wipe of the working memory (issue 18, item 5): the hasher as it is (memory wiped after
//! each hash, reused memory on huge pages) against the hasher before the wipe (not wiped, 4 KiB
//! pages), and each change alone, at the default parameters on 1 thread and on all cores and
//! for the latency at m=65536,t=3,p=4. Interleaved rounds of one run, as `lanes.rs` measures;
//! besides hashes per second, hashes per CPU-second of the whole process (all its threads),
//! which the other load of a shared machine disturbs much less.

use std::time::{Duration, Instant};

use migrator::password::{Hasher, Params, Password};

use crate::background::Row;
use crate::lanes::{interleave, Variant};

/// The four hashers compared, with their labels: what the wipe and huge pages change.
const WAYS: [&str; 4] = [
    "wiped, huge pages (now)",
    "not wiped, 4 KiB pages (before the wipe)",
    "wiped, 4 KiB pages (the wipe alone)",
    "not wiped, huge pages (huge pages alone)",
];

/// `hasher` in each of the [`WAYS`], in that order.
fn ways(hasher: &Hasher) -> [Hasher; 4] {
    [
        hasher.clone(),
        hasher.clone().without_wipe().without_huge_pages(),
        hasher.clone().without_huge_pages(),
        hasher.clone().without_wipe(),
    ]
}

/// CPU time of this process so far, all its threads (`CLOCK_PROCESS_CPUTIME_ID`).
#[allow(unsafe_code, reason = "clock_gettime(2) into a local timespec")]
fn process_cpu() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack for the call.
    let done = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } == 0;
    done.then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// Hashes per second and per CPU-second of the process: `warm_up` first, not counted (it makes
/// the threads' reused memory), then `count`, given the start, returns how many it hashed.
fn measured(warm_up: impl FnOnce(), count: impl FnOnce(Instant) -> u64) -> (f64, Option<f64>) {
    warm_up();
    let cpu = process_cpu();
    let start = Instant::now();
    let n = count(start) as f64;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu
        .zip(process_cpu())
        .map(|(before, after)| n / (after - before).as_secs_f64());
    (n / wall, cpu)
}

/// Hashes per second (and per CPU-second) of `hash` looped on this thread for `duration`.
fn one_rate(duration: Duration, hash: impl Fn(usize)) -> (f64, Option<f64>) {
    measured(
        || hash(0),
        |start| {
            let mut n = 0;
            while start.elapsed() < duration {
                hash(0);
                n += 1;
            }
            n
        },
    )
}

/// Hashes per second (and per CPU-second) on all of `pool`'s threads (rayon workers, as the
/// backfill), each of which hashes once, not counted, first.
fn pool_rate(
    pool: &rayon::ThreadPool,
    duration: Duration,
    hash: impl Fn(usize) + Sync,
) -> (f64, Option<f64>) {
    measured(
        || {
            pool.broadcast(|context| hash(context.index()));
        },
        |start| {
            pool.broadcast(|context| {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    hash(context.index());
                    n += 1;
                }
                n
            })
            .into_iter()
            .sum()
        },
    )
}

/// `AnonHugePages` of this process in KiB (`/proc/self/smaps_rollup`), if known.
fn anon_huge_pages_kib() -> Option<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The wipe's figures, `rounds` interleaved rounds of `duration` per variant.
pub fn wipe(cores: usize, rounds: usize, duration: Duration) -> Vec<Row> {
    let strong = Hasher::new(Params {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    })
    .expect("valid parameters");
    let default = Hasher::new(Params::default()).expect("valid parameters");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .expect("a thread pool");
    let hash = |hasher: &Hasher, t: usize| {
        hasher
            .hash(&Password::new(format!("wipe-{t}")))
            .expect("hashing");
    };
    let figures = [
        ("hashes/s, m=19456,t=2,p=1, 1 thread".to_owned(), "p1 1"),
        (
            format!("hashes/s, m=19456,t=2,p=1, {cores} threads"),
            "p1 all",
        ),
        (
            "latency, m=65536,t=3,p=4, lanes in parallel".to_owned(),
            "p4 latency",
        ),
    ];
    // Labels of the variants: figure, then way.
    let labels: Vec<Vec<&'static str>> = figures
        .iter()
        .map(|(_, short)| {
            WAYS.iter()
                .map(|way| &*format!("{short}: {way}").leak())
                .collect()
        })
        .collect();
    let mut variants = Vec::new();
    for (f, (_, short)) in figures.iter().enumerate() {
        let hashers = ways(if *short == "p4 latency" {
            &strong
        } else {
            &default
        });
        for (label, hasher) in labels[f].iter().zip(hashers) {
            let measure: Box<dyn Fn() -> Option<(f64, Option<f64>)>> = if *short == "p1 all" {
                let pool = &pool;
                Box::new(move || Some(pool_rate(pool, duration, |t| hash(&hasher, t))))
            } else {
                Box::new(move || Some(one_rate(duration, |t| hash(&hasher, t))))
            };
            variants.push(Variant { label, measure });
        }
    }
    let means = interleave(&variants, rounds);
    let ms = |rate: f64| 1e3 / rate;
    let mut rows = Vec::new();
    for (f, (what, _)) in figures.iter().enumerate() {
        let [now, before, wipe_alone, huge_alone] = [0, 1, 2, 3].map(|w| means.get(labels[f][w]));
        let cpu = [0, 1, 2, 3].map(|w| means.cpu(labels[f][w]));
        // A ratio of rates, and of rates per CPU-second of the process.
        let ratio = |a: usize, b: usize| {
            let wall = [now, before, wipe_alone, huge_alone];
            format!(
                "{:.3}x ({:.2}/s); per CPU-second {:.3}x ({:.2})",
                wall[a] / wall[b],
                wall[b],
                cpu[a] / cpu[b],
                cpu[b]
            )
        };
        rows.push((
            format!("{what}: wiped, huge pages (now) against not wiped, 4 KiB pages (before)"),
            format!(
                "{now:.2}/s ({:.1} ms); {:.2} per CPU-second",
                ms(now),
                cpu[0]
            ),
            format!(
                "**the speed before the wipe: {}** (target >= 1)",
                ratio(0, 1)
            ),
        ));
        rows.push((
            format!("{what}: the wipe alone, 4 KiB pages (on huge pages)"),
            format!("{wipe_alone:.2}/s"),
            format!("{} (on huge pages: {})", ratio(2, 1), ratio(0, 3)),
        ));
        rows.push((
            format!("{what}: huge pages alone, not wiped (wiped)"),
            format!("{huge_alone:.2}/s"),
            format!("{} (wiped: {})", ratio(3, 1), ratio(0, 2)),
        ));
    }
    // Did the kernel give huge pages? This thread's reused memory is the last variant's.
    hash(&strong, 0);
    rows.push((
        "AnonHugePages of this process after a hash at m=65536 on this thread".into(),
        anon_huge_pages_kib().map_or("unknown".into(), |kib| format!("{kib} KiB")),
        "the kernel's huge pages under the 64 MiB (and any other) reused memory".into(),
    ));
    rows
}
