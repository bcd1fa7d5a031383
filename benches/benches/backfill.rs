//! Migration 001 end to end on SQLite and on a throwaway PostgreSQL: 2,000 rows per run, with
//! the default Argon2 parameters. Also prints the rate as a ratio of the raw all-core hash
//! rate measured in the same run.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use migrator::password::Hasher;
use migrator::{config::Environment, connection::Backend, Config, Database, Migrator};
use migrator_benches::{cores, default_params, fresh, hash_rate, seed};

const ROWS: u64 = 2_000;

fn backfill(c: &mut Criterion) {
    let hasher = Hasher::new(default_params()).expect("valid parameters");
    let raw = hash_rate(&hasher, cores(), Duration::from_secs(5), true);
    println!(
        "raw all-core hash rate: {raw:.1} hashes/s on {} cores",
        cores()
    );
    let dir = std::env::temp_dir().join(format!("migrator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut group = c.benchmark_group("001_hash_kroger_passwords, 2000 rows");
    group.sample_size(10).throughput(Throughput::Elements(ROWS));
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut total = Duration::ZERO;
        let mut runs = 0u32;
        group.bench_function(backend.to_string(), |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for i in 0..iterations {
                    let url = fresh(backend, &dir, &format!("b{runs}-{i}"));
                    let db = Database::connect(&url).expect("connect");
                    seed(&db, ROWS);
                    let migrator = Migrator::from_registry().expect("registry");
                    let config = Config::new(Environment::Development);
                    let start = Instant::now();
                    migrator.run(&db, &config).expect("the migration");
                    elapsed += start.elapsed();
                }
                total += elapsed;
                runs += iterations as u32;
                elapsed
            })
        });
        let rate = f64::from(runs) * ROWS as f64 / total.as_secs_f64();
        println!(
            "{backend}: {rate:.1} rows/s over {runs} runs = {:.3} x the raw all-core hash rate",
            rate / raw
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, backfill);
criterion_main!(benches);
