//! Argon2id hash rate of `migrator::password`: the default parameters and m=65536,t=3,p=4, on
//! one calling thread (whose lanes run in parallel on the idle cores when p > 1) and on all
//! cores (rayon workers, as the backfill: lanes on each worker's own thread), for every
//! block-compression kernel this CPU has (reused memory, as the backfill does), with the lanes
//! inline (before issue 21), as before the wipe of the memory (not wiped, 4 KiB pages: before
//! issue 18), with a fresh
//! allocation per hash (the naive way), and beside the argon2 crate with reused memory (the
//! hasher before the kernels). argon2-cffi is compared in `scripts/bench-summary`.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use migrator::password::{Hasher, Kernel, Params, Password};

thread_local! {
    static CRATE_MEMORY: RefCell<Vec<argon2::Block>> = const { RefCell::new(Vec::new()) };
}

/// One hash with the argon2 crate and this thread's reused memory.
fn argon2_crate(argon2: &argon2::Argon2<'_>, password: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    CRATE_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let needed = argon2.params().block_count();
        if memory.len() < needed {
            memory.resize(needed, argon2::Block::new());
        }
        argon2
            .hash_password_into_with_memory(
                password,
                b"a 16-byte salt!!",
                &mut out,
                &mut memory[..needed],
            )
            .expect("argon2");
    });
    out
}

/// How one benchmark hashes.
#[derive(Clone, Copy)]
enum Way {
    Ours(Kernel),
    Inline,
    Unwiped,
    Fresh,
    Crate,
}

fn hashing(c: &mut Criterion) {
    let cores = migrator_benches::cores();
    println!(
        "CPU: {}; kernel: {}",
        migrator_benches::cpu(),
        Kernel::detected()
    );
    let strong = Params {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    };
    let mut ways: Vec<(String, Way)> = Kernel::supported()
        .into_iter()
        .map(|k| (format!("{k} kernel, reused memory"), Way::Ours(k)))
        .collect();
    ways.push(("lanes inline".into(), Way::Inline));
    ways.push((
        "before the wipe (not wiped, 4 KiB pages)".into(),
        Way::Unwiped,
    ));
    ways.push(("fresh allocation".into(), Way::Fresh));
    ways.push(("argon2 crate, reused memory".into(), Way::Crate));
    for (name, params) in [
        ("m=19456,t=2,p=1", Params::default()),
        ("m=65536,t=3,p=4", strong),
    ] {
        let hasher = Hasher::new(params).expect("valid parameters");
        let argon2 = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                Some(32),
            )
            .expect("valid parameters"),
        );
        let mut group = c.benchmark_group(format!("hash {name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        let password = Password::new("correct horse battery staple");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .build()
            .expect("pool");
        for (label, way) in &ways {
            let hasher = match way {
                Way::Ours(kernel) => hasher.clone().with_kernel(*kernel).expect("supported"),
                Way::Inline => hasher.clone().with_lanes_inline(),
                Way::Unwiped => hasher.clone().without_wipe().without_huge_pages(),
                _ => hasher.clone(),
            };
            let hash = || match way {
                Way::Ours(_) | Way::Inline | Way::Unwiped => {
                    drop(black_box(hasher.hash(&password).expect("hash")))
                }
                Way::Fresh => drop(black_box(
                    hasher.hash_without_memory_reuse(&password).expect("hash"),
                )),
                Way::Crate => drop(black_box(argon2_crate(
                    &argon2,
                    password.expose().as_bytes(),
                ))),
            };
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("1 caller, {label}"), |b| b.iter(hash));
            let per_iteration = cores as u64 * 2;
            group.throughput(Throughput::Elements(per_iteration));
            group.bench_function(format!("{cores} threads, {label}"), |b| {
                b.iter(|| {
                    pool.install(|| {
                        use rayon::prelude::*;
                        (0..per_iteration).into_par_iter().for_each(|_| hash())
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, hashing);
criterion_main!(benches);
