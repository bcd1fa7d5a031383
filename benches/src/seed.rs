//! Migration 001 end to end against the Python backend's row-by-row script (issue 21 item 4):
//! the same seeded rows of PostgreSQL, hashed at the seed's Argon2 parameters
//! (m=65536,t=3,p=4) by `Migrator::run` of 001 (`MIGRATION_BACKFILL=inline`, all cores) and by
//! `benches/seed/migrate_kroger_passwords.py` (psycopg2 and argon2-cffi: one row hashed,
//! updated and committed at a time). Both end to end: columns, every row, the index.

use std::process::{Command, Stdio};
use std::time::Instant;

use migrator::password::Params;
use migrator::{
    config::BackfillMode, config::Environment, connection::Backend, Config, Database, Migrator,
};
use smart_meal_planner::kroger;

use crate::{count, fresh, seed};

/// A row of the summary table: measurement, value, notes.
pub type Row = (String, String, String);

/// The seed's Argon2 parameters (argon2-cffi's `PasswordHasher` defaults of the Python
/// backend).
pub const SEED_PARAMS: Params = Params {
    memory_kib: 65536,
    iterations: 3,
    parallelism: 4,
};

/// The script, beside this crate.
fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seed/migrate_kroger_passwords.py")
}

/// `bench-summary child-seed-001 URL`: 001 inline at [`SEED_PARAMS`] on the seeded table at
/// `URL`; prints `secs=`.
pub fn child_seed_001(args: &[String]) {
    let [url] = args else {
        eprintln!("usage: bench-summary child-seed-001 URL");
        std::process::exit(2);
    };
    kroger::set_hash_params(SEED_PARAMS);
    let mut config = Config::new(Environment::Development);
    config.set_backfill_mode(BackfillMode::Inline);
    let db = Database::connect(url).expect("connect");
    let start = Instant::now();
    Migrator::from_registry()
        .expect("registry")
        .run(&db, &config)
        .expect("001");
    println!("secs={:.3}", start.elapsed().as_secs_f64());
}

fn secs(text: &str) -> f64 {
    text.split_whitespace()
        .find_map(|f| f.strip_prefix("secs="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Checks that every row of `db` got a hash at the seed's parameters and the index exists.
fn check(db: &Database, rows: u64, who: &str) {
    let hashed = count(
        db,
        "SELECT COUNT(*) AS n FROM user_profiles \
         WHERE kroger_password_hash LIKE '$argon2id$v=19$m=65536,t=3,p=4$%' \
         AND kroger_password_salt IS NOT NULL",
    );
    assert_eq!(hashed as u64, rows, "{who}: rows hashed at m=65536,t=3,p=4");
    let index = count(
        db,
        "SELECT COUNT(*) AS n FROM pg_indexes \
         WHERE indexname = 'idx_user_profiles_kroger_password_hash'",
    );
    assert_eq!(index, 1, "{who}: the index");
}

/// 001 end to end against the seed script on `rows` rows of PostgreSQL, `rounds` interleaved
/// rounds (the mean of each).
pub fn seed_comparison(rows: u64, rounds: usize) -> Vec<Row> {
    let dir = std::env::temp_dir();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for rust in order {
            let url = fresh(Backend::Postgres, &dir, "seed");
            let db = Database::connect(&url).expect("connect");
            seed(&db, rows);
            let start = Instant::now();
            let out = if rust {
                Command::new(std::env::current_exe().expect("this binary"))
                    .args(["child-seed-001", &url])
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run 001")
            } else {
                Command::new("python3")
                    .arg(script())
                    .env("DATABASE_URL", &url)
                    .stderr(Stdio::null())
                    .output()
                    .expect("run python3 (scripts/setup installs psycopg2 and argon2-cffi)")
            };
            let wall = start.elapsed().as_secs_f64();
            let text = String::from_utf8_lossy(&out.stdout);
            let who = if rust { "001" } else { "seed script" };
            assert!(out.status.success(), "{who} failed: {text}");
            check(&db, rows, who);
            let inner = secs(&text);
            eprintln!("seed comparison, round {round}, {who}: {wall:.1} s ({inner:.1} s inside)");
            if rust {
                ours.push(wall);
            } else {
                theirs.push(wall);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (o, t) = (mean(&ours), mean(&theirs));
    vec![(
        format!(
            "001 end to end against the seed's row-by-row Python script, PostgreSQL, {rows} \
             rows, m=65536,t=3,p=4"
        ),
        format!(
            "{:.1} / {:.1} rows/s ({o:.1} / {t:.1} s)",
            rows as f64 / o,
            rows as f64 / t
        ),
        format!(
            "**{:.2}x** the script's speed; process start to exit, both: columns, every row, \
             the index; 001 inline on {} cores, the script (psycopg2, argon2-cffi \
             PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)) one row per \
             UPDATE and commit; rounds: 001 {} s, script {} s",
            t / o,
            crate::cores(),
            list(&ours),
            list(&theirs)
        ),
    )]
}
