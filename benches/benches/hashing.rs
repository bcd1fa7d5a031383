//! Argon2id hash rate of `migrator::password`: the default parameters and m=65536,t=3,p=4, on
//! one thread and on all cores, with reused memory (as the backfill does) and with a fresh
//! allocation per hash (the naive way).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use migrator::password::{Hasher, Params, Password};

fn hashing(c: &mut Criterion) {
    let cores = migrator_benches::cores();
    let strong = Params {
        memory_kib: 65_536,
        iterations: 3,
        parallelism: 4,
    };
    for (name, params) in [
        ("m=19456,t=2,p=1", Params::default()),
        ("m=65536,t=3,p=4", strong),
    ] {
        let hasher = Hasher::new(params).expect("valid parameters");
        let mut group = c.benchmark_group(format!("hash {name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        let password = Password::new("correct horse battery staple");
        group.throughput(Throughput::Elements(1));
        group.bench_function("1 thread, reused memory", |b| {
            b.iter(|| black_box(hasher.hash(&password).expect("hash")))
        });
        group.bench_function("1 thread, fresh allocation", |b| {
            b.iter(|| black_box(hasher.hash_without_memory_reuse(&password).expect("hash")))
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .build()
            .expect("pool");
        let per_iteration = cores as u64 * 2;
        group.throughput(Throughput::Elements(per_iteration));
        for (label, reuse) in [("reused memory", true), ("fresh allocation", false)] {
            group.bench_function(format!("{cores} threads, {label}"), |b| {
                b.iter(|| {
                    pool.install(|| {
                        use rayon::prelude::*;
                        (0..per_iteration).into_par_iter().for_each(|_| {
                            let hashed = if reuse {
                                hasher.hash(&password)
                            } else {
                                hasher.hash_without_memory_reuse(&password)
                            };
                            black_box(hashed.expect("hash"));
                        })
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, hashing);
criterion_main!(benches);
