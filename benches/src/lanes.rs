//! Lanes in parallel (issue 21, item 1): the latency of one hash at m=65536,t=3,p=4 against
//! argon2-cffi and against the lanes filled one after another; the throughput of many hashes
//! at once with and without lanes in parallel. Every figure is the mean of interleaved rounds
//! of one run (each round measures every variant once, in alternating order), so that the
//! ratios compare like with like on a shared machine; `interleave` does that, for the wipe's
//! figures too (`wipe.rs`).

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
pub(crate) struct Variant<'a> {
    pub(crate) label: &'static str,
    pub(crate) measure: Box<dyn Fn() -> Option<(f64, Option<f64>)> + 'a>,
}

/// The mean rates of [`interleave`]d variants.
pub(crate) struct Means {
    labels: Vec<&'static str>,
    sums: Vec<f64>,
    cpu_sums: Vec<f64>,
    counts: Vec<usize>,
}

impl Means {
    fn index(&self, label: &str) -> usize {
        self.labels
            .iter()
            .position(|l| *l == label)
            .expect("a variant")
    }

    /// The mean rate of `label`, if it was measured.
    pub(crate) fn mean(&self, label: &str) -> Option<f64> {
        let i = self.index(label);
        (self.counts[i] > 0).then(|| self.sums[i] / self.counts[i] as f64)
    }

    /// The mean rate of `label`, NaN if it was not measured.
    pub(crate) fn get(&self, label: &str) -> f64 {
        self.mean(label).unwrap_or(f64::NAN)
    }

    /// The mean rate per CPU-second of `label`, NaN if unknown.
    pub(crate) fn cpu(&self, label: &str) -> f64 {
        let i = self.index(label);
        self.cpu_sums[i] / self.counts[i].max(1) as f64
    }
}

/// Measures every variant once per round for `rounds` rounds, in alternating order (forward,
/// then backward), so that drift of a shared machine weighs alike on all of them.
pub(crate) fn interleave(variants: &[Variant<'_>], rounds: usize) -> Means {
    let mut means = Means {
        labels: variants.iter().map(|v| v.label).collect(),
        sums: vec![0.0; variants.len()],
        cpu_sums: vec![0.0; variants.len()],
        counts: vec![0; variants.len()],
    };
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
                means.sums[i] += rate;
                means.cpu_sums[i] += cpu.unwrap_or(f64::NAN);
                means.counts[i] += 1;
            }
        }
    }
    means
}

/// The figures of lanes in parallel, `rounds` interleaved rounds of `duration` per variant.
pub fn lanes(cores: usize, rounds: usize, duration: Duration) -> Vec<Row> {
    let strong = Params {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    };
    let parallel = Hasher::new(strong).expect("valid parameters");
    let inline = parallel.clone().with_lanes_inline();
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
        plain("p4 plain threads, lanes in parallel", parallel.clone()),
        plain("p4 plain threads, lanes inline", inline.clone()),
        pool("p4 rayon workers, lanes in parallel", parallel),
        pool("p4 rayon workers, lanes inline", inline),
    ];
    let means = interleave(&variants, rounds);
    let get = |label: &str| means.get(label);
    let ms = |rate: f64| 1e3 / rate;
    let (par, inl) = (
        get("p4 latency, lanes in parallel"),
        get("p4 latency, lanes inline"),
    );
    let cffi = match (means.mean("p4 latency, argon2-cffi"), cffi_error.take()) {
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
    rows
}
