//! Start-up with nothing pending, on a warm pool: `Migrator::run_on_startup` beside Diesel's
//! `run_pending_migrations`, on the same database (SQLite and PostgreSQL).

use criterion::{criterion_group, criterion_main, Criterion};
use migrator::{config::Environment, connection::Backend, Config, Database, Migrator};
use migrator_benches::{diesel_noop, diesel_run, fresh, seed};

fn startup(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("migrator-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    smart_meal_planner::kroger::set_hash_params(migrator::password::Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    let mut group = c.benchmark_group("start-up, nothing pending");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = Database::connect(&fresh(backend, &dir, "startup")).expect("connect");
        seed(&db, 10);
        let migrator = Migrator::from_registry().expect("registry");
        let config = Config::new(Environment::Development);
        migrator.run_on_startup(&db, &config).expect("first run");
        assert_eq!(diesel_run(&db), 1);
        group.bench_function(format!("{backend}: migrator run_on_startup"), |b| {
            b.iter(|| migrator.run_on_startup(&db, &config).expect("no-op run"))
        });
        group.bench_function(format!("{backend}: diesel run_pending_migrations"), |b| {
            b.iter(|| diesel_noop(&db))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, startup);
criterion_main!(benches);
