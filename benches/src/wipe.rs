//! The wipe of the working memory (issue 18, item 5): the hasher as it is (memory wiped after
//! each hash, reused memory on huge pages) against the hasher before the wipe (not wiped, 4 KiB
//! pages), and each change alone, at the default parameters on 1 thread and on all cores and
//! for the latency at m=65536,t=3,p=4. Interleaved rounds of one run, as `lanes.rs` measures.

use std::time::Duration;

use migrator::password::{Hasher, Params, Password};

use crate::background::Row;
use crate::lanes::{interleave, one_rate, Variant};

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

/// Hashes per second on `pool`'s threads (rayon workers, as the backfill), each of which has
/// hashed once, not counted, before the clock starts (which makes its reused memory).
fn pool_rate(pool: &rayon::ThreadPool, duration: Duration, hash: impl Fn(usize) + Sync) -> f64 {
    pool.broadcast(|context| hash(context.index()));
    let start = std::time::Instant::now();
    let done: u64 = pool
        .broadcast(|context| {
            let mut n = 0u64;
            while start.elapsed() < duration {
                hash(context.index());
                n += 1;
            }
            n
        })
        .into_iter()
        .sum();
    done as f64 / start.elapsed().as_secs_f64()
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
                Box::new(move || Some((pool_rate(pool, duration, |t| hash(&hasher, t)), None)))
            } else {
                Box::new(move || Some(one_rate(duration, |t| hash(&hasher, t))))
            };
            variants.push(Variant { label, measure });
        }
    }
    let means = interleave(&variants, rounds);
    let ms = |rate: f64| 1e3 / rate;
    let mut rows = Vec::new();
    for (f, (what, short)) in figures.iter().enumerate() {
        let [now, before, wipe_alone, huge_alone] = [0, 1, 2, 3].map(|w| means.get(labels[f][w]));
        let cpu = |w: usize| means.cpu(labels[f][w]);
        // CPU time only where one thread does all the work (not with helpers, not in the pool).
        let per_cpu = if *short == "p1 1" && !cpu(0).is_nan() && !cpu(1).is_nan() {
            format!(
                "; per CPU-second of the thread **{:.3}x** ({:.2} against {:.2})",
                cpu(0) / cpu(1),
                cpu(0),
                cpu(1)
            )
        } else {
            String::new()
        };
        rows.push((
            format!("{what}: wiped, huge pages (now) against not wiped, 4 KiB pages (before)"),
            format!("{now:.2}/s ({:.1} ms)", ms(now)),
            format!(
                "**{:.3}x the speed before the wipe** ({before:.2}/s, {:.1} ms; target >= 1)\
                 {per_cpu}",
                now / before,
                ms(before)
            ),
        ));
        rows.push((
            format!("{what}: the wipe alone (4 KiB pages; with huge pages)"),
            format!("{wipe_alone:.2}/s"),
            format!(
                "{:.3}x not wiped ({before:.2}/s); with huge pages {:.3}x ({huge_alone:.2}/s)",
                wipe_alone / before,
                now / huge_alone
            ),
        ));
        rows.push((
            format!("{what}: huge pages alone (not wiped)"),
            format!("{huge_alone:.2}/s"),
            format!(
                "{:.3}x 4 KiB pages ({before:.2}/s); wiped {:.3}x ({wipe_alone:.2}/s)",
                huge_alone / before,
                now / wipe_alone
            ),
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
