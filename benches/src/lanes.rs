//! Lanes in parallel (issue 21, item 1) and the wipe of the working memory (issue 18, item 5):
//! the latency of one hash at m=65536,t=3,p=4 against argon2-cffi and against the lanes filled
//! one after another; the throughput of many hashes at once with and without lanes in
//! parallel; the hasher with and without the wipe. Every figure is the mean of interleaved
//! rounds of one run (each round measures every variant once, in alternating order), so that
//! the ratios compare like with like on a shared machine.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use migrator::password::{Hasher, Params, Password};

use crate::background::Row;
use crate::{argon2_cffi_rate, rate};

/// Hashes per second of `hash` (given the thread's number) looped on `threads` plain threads
/// (as a server's blocking threads call it; not rayon workers) for about `duration`. One
/// thread is the calling thread itself.
pub fn plain_rate(threads: usize, duration: Duration, hash: impl Fn(usize) + Sync) -> f64 {
    let looped = |t: usize| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < duration {
            hash(t);
            n += 1;
        }
        n
    };
    let start = Instant::now();
    let done: u64 = if threads == 1 {
        looped(0)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| scope.spawn(move || looped(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a hashing thread"))
                .sum()
        })
    };
    done as f64 / start.elapsed().as_secs_f64()
}

/// CPU time of this thread so far (`/proc/thread-self/schedstat`, nanoseconds on a CPU), which
/// other load on the machine disturbs much less than wall-clock time.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Hashes per second of `hash` on this thread, and per CPU-second of this thread if known.
fn one_rate(duration: Duration, hash: impl Fn(usize) + Sync) -> (f64, Option<f64>) {
    let before = thread_cpu();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        hash(0);
        n += 1;
    }
    let wall = n as f64 / start.elapsed().as_secs_f64();
    let cpu = before
        .zip(thread_cpu())
        .map(|(before, after)| n as f64 / (after - before).as_secs_f64());
    (wall, cpu)
}

/// One measured variant: its label and how to measure its rate once (per second, and per
/// CPU-second of the calling thread where that is meaningful).
struct Variant<'a> {
    label: &'static str,
    measure: Box<dyn Fn() -> Option<(f64, Option<f64>)> + 'a>,
}

/// The figures of both items, `rounds` interleaved rounds of `duration` per variant.
pub fn lanes_and_wipe(cores: usize, rounds: usize, duration: Duration) -> Vec<Row> {
    let strong = Params {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    };
    let default = Params::default();
    let parallel = Hasher::new(strong).expect("valid parameters");
    let inline = parallel.clone().with_lanes_inline();
    let parallel_unwiped = parallel.clone().without_wipe();
    let light = Hasher::new(default).expect("valid parameters");
    let light_unwiped = light.clone().without_wipe();
    let hash = |hasher: &Hasher, t: usize| {
        hasher
            .hash(&Password::new(format!("lanes-{t}")))
            .expect("hashing");
    };
    let one = |label: &'static str, h: Hasher| Variant {
        label,
        measure: Box::new(move || Some(one_rate(duration, |t| hash(&h, t)))),
    };
    let plain = |label: &'static str, h: Hasher| Variant {
        label,
        measure: Box::new(move || Some((plain_rate(cores, duration, |t| hash(&h, t)), None))),
    };
    let pool = |label: &'static str, h: Hasher| Variant {
        label,
        measure: Box::new(move || Some((rate(cores, duration, |t| hash(&h, t)), None))),
    };
    let cffi_error = RefCell::new(None);
    let variants = vec![
        one("p4 latency, lanes in parallel", parallel.clone()),
        one("p4 latency, lanes inline", inline.clone()),
        Variant {
            label: "p4 latency, argon2-cffi",
            measure: Box::new(|| match argon2_cffi_rate(strong, 1, duration) {
                Ok(rate) => Some((rate, None)),
                Err(e) => {
                    *cffi_error.borrow_mut() = Some(e);
                    None
                }
            }),
        },
        one("p4 latency, lanes in parallel, no wipe", parallel_unwiped),
        plain("p4 plain threads, lanes in parallel", parallel.clone()),
        plain("p4 plain threads, lanes inline", inline.clone()),
        pool("p4 rayon workers, lanes in parallel", parallel),
        pool("p4 rayon workers, lanes inline", inline),
        one("p1 1 thread, wipe", light.clone()),
        one("p1 1 thread, no wipe", light_unwiped.clone()),
        pool("p1 all cores, wipe", light),
        pool("p1 all cores, no wipe", light_unwiped),
    ];
    let mut sums = vec![0.0f64; variants.len()];
    let mut cpu_sums = vec![0.0f64; variants.len()];
    let mut counts = vec![0usize; variants.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..variants.len()).collect()
        } else {
            (0..variants.len()).rev().collect()
        };
        for i in order {
            if let Some((rate, cpu)) = (variants[i].measure)() {
                eprintln!(
                    "round {round}: {}: {rate:.2}/s ({:.2} per CPU-second)",
                    variants[i].label,
                    cpu.unwrap_or(f64::NAN)
                );
                sums[i] += rate;
                cpu_sums[i] += cpu.unwrap_or(f64::NAN);
                counts[i] += 1;
            }
        }
    }
    let mean = |label: &str| {
        let i = variants
            .iter()
            .position(|v| v.label == label)
            .expect("a variant");
        (counts[i] > 0).then(|| sums[i] / counts[i] as f64)
    };
    let cpu_mean = |label: &str| {
        let i = variants
            .iter()
            .position(|v| v.label == label)
            .expect("a variant");
        cpu_sums[i] / counts[i].max(1) as f64
    };
    let ms = |rate: f64| 1e3 / rate;
    let get = |label: &str| mean(label).unwrap_or(f64::NAN);
    let (par, inl) = (
        get("p4 latency, lanes in parallel"),
        get("p4 latency, lanes inline"),
    );
    let cffi = match (mean("p4 latency, argon2-cffi"), cffi_error.take()) {
        (Some(rate), _) => Ok(rate),
        (None, e) => Err(e.unwrap_or_default()),
    };
    let mut rows = Vec::new();
    let rounds_note = format!("mean of {rounds} interleaved rounds of {duration:?}");
    rows.push((
        "latency of one hash, m=65536,t=3,p=4, lanes in parallel (one caller, all cores idle)"
            .into(),
        format!("{:.1} ms", ms(par)),
        match &cffi {
            Ok(c) => format!(
                "**{:.2}x argon2-cffi's** ({:.1} ms, reference C, p threads; target <= 0.6); \
                 {:.2}x the lanes inline ({:.1} ms); {rounds_note}",
                ms(par) / ms(*c),
                ms(*c),
                ms(par) / ms(inl),
                ms(inl)
            ),
            Err(e) => format!(
                "argon2-cffi: {e}; {:.2}x the lanes inline",
                ms(par) / ms(inl)
            ),
        },
    ));
    let pair = |a: &str, b: &str| (get(a), get(b));
    let (p, i) = pair(
        "p4 plain threads, lanes in parallel",
        "p4 plain threads, lanes inline",
    );
    rows.push((
        format!("hashes/s, m=65536,t=3,p=4, {cores} plain threads hashing at once"),
        format!("{p:.2}"),
        format!(
            "**{:.3}x the lanes inline** ({i:.2}; target >= 0.97): helpers only on spare cores",
            p / i
        ),
    ));
    let (p, i) = pair(
        "p4 rayon workers, lanes in parallel",
        "p4 rayon workers, lanes inline",
    );
    rows.push((
        format!("hashes/s, m=65536,t=3,p=4, {cores} rayon workers (as the backfill)"),
        format!("{p:.2}"),
        format!(
            "**{:.3}x the lanes inline** ({i:.2}; target >= 0.97)",
            p / i
        ),
    ));
    // CPU time only where one thread does all the work (not with helpers).
    for (what, wiped, unwiped, with_cpu) in [
        (
            "latency, m=65536,t=3,p=4, lanes in parallel".to_owned(),
            "p4 latency, lanes in parallel",
            "p4 latency, lanes in parallel, no wipe",
            false,
        ),
        (
            "hashes/s, m=19456,t=2,p=1, 1 thread".to_owned(),
            "p1 1 thread, wipe",
            "p1 1 thread, no wipe",
            true,
        ),
        (
            format!("hashes/s, m=19456,t=2,p=1, {cores} threads"),
            "p1 all cores, wipe",
            "p1 all cores, no wipe",
            false,
        ),
    ] {
        let (w, u) = pair(wiped, unwiped);
        let (cw, cu) = (cpu_mean(wiped), cpu_mean(unwiped));
        let cpu = if !with_cpu || cw.is_nan() || cu.is_nan() {
            String::new()
        } else {
            format!(
                "; per CPU-second of the thread: **{:.3}x** ({cw:.2} against {cu:.2})",
                cw / cu
            )
        };
        rows.push((
            format!("{what}, memory wiped after each hash"),
            format!("{w:.2}/s ({:.1} ms)", ms(w)),
            format!(
                "**{:.3}x the speed without the wipe** ({u:.2}/s, {:.1} ms){cpu}",
                w / u,
                ms(u)
            ),
        ));
    }
    rows
}
