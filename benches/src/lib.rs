//! Shared pieces of the benchmarks: a throwaway PostgreSQL cluster (the test suite's), a
//! `user_profiles` table with plaintext passwords, and a raw hash-rate measurement.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use migrator::password::{Hasher, Params, Password};
use migrator::{connection::Backend, AnyConnection, Database};

/// One Diesel SQL migration, to compare no-op start-ups with Diesel's own harness.
pub const SQL: EmbeddedMigrations = embed_migrations!("sql_migrations");

/// Diesel's `run_pending_migrations` with [`SQL`]; returns how many it applied.
pub fn diesel_run(db: &Database) -> usize {
    let mut conn = db.get().expect("a connection");
    let applied = match &mut *conn {
        AnyConnection::Postgres(c) => c.run_pending_migrations(SQL).map(|v| v.len()),
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQL).map(|v| v.len()),
    };
    applied.expect("diesel migrations")
}

/// Diesel's no-op: nothing pending.
pub fn diesel_noop(db: &Database) {
    assert_eq!(diesel_run(db), 0);
}

/// The test suite's PostgreSQL server: `migrator::testing`'s throwaway cluster (one per
/// process), started on first use, stopped at exit.
pub mod pg {
    use migrator::testing::{PostgresCluster, PostgresServer};

    /// The server; panics saying how to fix it if it cannot start.
    pub fn server() -> &'static PostgresServer {
        migrator::testing::postgres().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The throwaway cluster itself (its log, tools, a standby); panics when
    /// `MIGRATOR_TEST_DATABASE_URL` names a server instead.
    pub fn cluster() -> &'static PostgresCluster {
        server().cluster().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A free TCP port on 127.0.0.1 (free when asked).
    pub fn free_port() -> Result<u16, String> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))
    }
}

// The test suite's streaming standby (`pg_basebackup`) and loopback HTTP client, for `soak`
// (their own module docs say more).
#[path = "../../tests/support/src/standby.rs"]
pub mod standby;

#[path = "../../tests/support/src/http.rs"]
pub mod http;

/// The Argon2 parameters `001_hash_kroger_passwords` uses by default.
pub fn default_params() -> Params {
    Params::default()
}

/// A fresh empty database: PostgreSQL in the throwaway cluster, or a SQLite file in `dir`.
pub fn fresh(backend: Backend, dir: &std::path::Path, name: &str) -> String {
    match backend {
        Backend::Postgres => pg::server()
            .fresh_database()
            .unwrap_or_else(|e| panic!("{e}")),
        _ => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
    }
}

/// Creates `user_profiles` with `rows` plaintext passwords and an update log (to count rows
/// hashed more than once).
pub fn seed(db: &Database, rows: u64) {
    let mut conn = db.get().expect("a connection");
    let insert = match db.backend() {
        Backend::Postgres => format!(
            "INSERT INTO user_profiles (id, kroger_password)
             SELECT g, 'bench-password-' || g FROM generate_series(1, {rows}) AS g;
             CREATE FUNCTION log_update() RETURNS trigger AS $$
             BEGIN INSERT INTO update_log VALUES (NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER logged AFTER UPDATE ON user_profiles
             FOR EACH ROW EXECUTE FUNCTION log_update();"
        ),
        _ => format!(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {rows})
             INSERT INTO user_profiles (id, kroger_password) SELECT x, 'bench-password-' || x FROM g;
             CREATE TRIGGER logged AFTER UPDATE ON user_profiles
             BEGIN INSERT INTO update_log VALUES (NEW.id); END;"
        ),
    };
    conn.batch_execute(&format!(
        "CREATE TABLE user_profiles (id INTEGER PRIMARY KEY, email TEXT, kroger_password TEXT);
         CREATE TABLE update_log (user_id INTEGER NOT NULL);
         {insert}"
    ))
    .expect("seed user_profiles");
}

mod baselines;
pub use baselines::{argon2_cffi_rate, argon2_crate_rate, cpu};

pub mod background;
pub mod engine;
pub mod lanes;
pub mod load;
pub mod seed;
pub mod wipe;

/// Drops the PostgreSQL database of `url` (made by [`fresh`]) to free its disk: large seeded
/// tables add up. Best effort; SQLite URLs are left alone.
pub fn drop_database(url: &str) {
    use diesel::Connection;
    let Some(name) = url
        .strip_prefix("postgres://")
        .and_then(|u| u.rsplit('/').next())
    else {
        return;
    };
    let Ok(root) = pg::server().url("postgres") else {
        return;
    };
    if let Ok(mut admin) = diesel::PgConnection::establish(&root) {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// The single BIGINT `n` that `sql` selects.
pub fn count(db: &Database, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let mut conn = db.get().expect("a connection");
    diesel::sql_query(sql)
        .get_result::<N>(&mut *conn)
        .expect("count")
        .n
}

/// Hashes per second of `hasher` on `threads` threads (each reusing its memory, as the
/// backfill does), measured for about `duration`; `reuse: false` allocates per hash.
pub fn hash_rate(hasher: &Hasher, threads: usize, duration: Duration, reuse: bool) -> f64 {
    rate(threads, duration, |t| {
        let password = Password::new(format!("raw-rate-{t}"));
        let hashed = if reuse {
            hasher.hash(&password)
        } else {
            hasher.hash_without_memory_reuse(&password)
        };
        hashed.expect("hashing");
    })
}

/// Calls per second of `hash` (given the thread's number) looped on `threads` threads for
/// about `duration`.
pub fn rate(threads: usize, duration: Duration, hash: impl Fn(usize) + Sync) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let start = Instant::now();
    let done: u64 = pool.install(|| {
        use rayon::prelude::*;
        (0..threads)
            .into_par_iter()
            .map(|t| {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    hash(t);
                    n += 1;
                }
                n
            })
            .sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

/// The number of cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
