//! The backfill engine's own cost per row (issue 21 item 2): a backfill with a trivial compute
//! (a normalised copy of a text column: `trim` and lowercase) on the same seeded rows three
//! ways, on PostgreSQL and SQLite:
//!
//! - **engine**: [`Backfill::run`] (claims, guarded writes, worker threads);
//! - **loop**: a hand-written client-side loop over the same driver (diesel), one connection:
//!   per batch `BEGIN`, read the next pending keys (`WHERE id > last ... ORDER BY id LIMIT n`),
//!   compute, one `UPDATE ... FROM (VALUES ...)`, `COMMIT`;
//! - **in-server**: `UPDATE ... SET email_normalized = lower(trim(email))` per key range of
//!   the same size, each committed: no row leaves the server.
//!
//! Each variant runs on a freshly seeded table (PostgreSQL: `VACUUM ANALYZE`d after the seed),
//! in interleaved rounds; the figures are rows per second and their ratios.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::backfill::Backfill;
use migrator::{connection::Backend, context::Progress, AnyConnection, Database};

use crate::fresh;

/// A row of the summary table: measurement, value, notes.
pub type Row = (String, String, String);

/// The computation: a normalised copy.
fn normalise(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Creates `accounts` with `rows` e-mail addresses to normalise: one `INSERT ... SELECT`.
pub fn seed_accounts(db: &Database, rows: u64) {
    let mut conn = db.get().expect("a connection");
    let sql = match db.backend() {
        Backend::Postgres => format!(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT, email_normalized TEXT);
             INSERT INTO accounts (id, email)
             SELECT g, '  User.' || g || '@Example.COM ' FROM generate_series(1, {rows}) AS g;"
        ),
        _ => format!(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, email_normalized TEXT);
             WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {rows})
             INSERT INTO accounts (id, email) SELECT x, '  User.' || x || '@Example.COM ' FROM g;"
        ),
    };
    conn.batch_execute(&sql).expect("seed accounts");
    if db.backend() == Backend::Postgres {
        conn.batch_execute("VACUUM ANALYZE accounts")
            .expect("vacuum accounts");
    }
}

/// The engine: [`Backfill::run`] with batches of `batch` rows on all cores.
fn engine(db: &Database, batch: usize) -> u64 {
    let mut backfill = Backfill::new("accounts", "id");
    backfill
        .input("email")
        .output("email_normalized")
        .pending_when("email IS NOT NULL AND email_normalized IS NULL")
        .batch_size(batch)
        .threads(crate::cores());
    let progress = Progress::new("bench", Duration::from_secs(3600));
    backfill
        .run(db, &progress, |inputs| {
            Ok(vec![inputs.first().copied().flatten().map(normalise)])
        })
        .expect("the engine")
        .rows_updated
}

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
}

/// The hand-written loop on one connection: read, compute, one `UPDATE ... FROM (VALUES ...)`
/// and commit per batch.
fn client_loop(db: &Database, batch: usize) -> u64 {
    let mut conn = db.get().expect("a connection");
    let mut last = 0i64;
    let mut written = 0u64;
    // The statement for a full batch is built once (a last, shorter batch gets its own).
    let update = |rows: usize, backend: Backend| {
        let tuples: Vec<String> = (0..rows)
            .map(|i| match backend {
                Backend::Postgres => format!("(${}, ${})", 2 * i + 1, 2 * i + 2),
                _ => "(?, ?)".to_owned(),
            })
            .collect();
        match backend {
            Backend::Postgres => format!(
                "UPDATE accounts SET email_normalized = v.n FROM (VALUES {}) AS v (id, n) \
                 WHERE accounts.id = v.id",
                tuples.join(", ")
            ),
            _ => format!(
                "UPDATE accounts SET email_normalized = v.column2 FROM (VALUES {}) AS v \
                 WHERE accounts.id = v.column1",
                tuples.join(", ")
            ),
        }
    };
    let backend = db.backend();
    let full = update(batch, backend);
    let read = match backend {
        Backend::Postgres => {
            "SELECT id, email FROM accounts WHERE id > $1 AND email IS NOT NULL \
             AND email_normalized IS NULL ORDER BY id LIMIT $2"
        }
        _ => {
            "SELECT id, email FROM accounts WHERE id > ? AND email IS NOT NULL \
             AND email_normalized IS NULL ORDER BY id LIMIT ?"
        }
    };
    loop {
        conn.batch_execute("BEGIN").expect("begin");
        let rows: Vec<Pending> = diesel::sql_query(read)
            .bind::<BigInt, _>(last)
            .bind::<BigInt, _>(batch as i64)
            .load(&mut *conn)
            .expect("read a batch");
        let Some(end) = rows.last().map(|r| r.id) else {
            conn.batch_execute("COMMIT").expect("commit");
            break;
        };
        let computed: Vec<(i64, Option<String>)> = rows
            .into_iter()
            .map(|r| (r.id, r.email.as_deref().map(normalise)))
            .collect();
        let sql = if computed.len() == batch {
            full.clone()
        } else {
            update(computed.len(), backend)
        };
        let n = match &mut *conn {
            AnyConnection::Postgres(pg) => {
                let mut q = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
                for (id, out) in computed {
                    q = q.bind::<BigInt, _>(id).bind::<Nullable<Text>, _>(out);
                }
                q.execute(pg)
            }
            AnyConnection::Sqlite(lite) => {
                let mut q = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
                for (id, out) in computed {
                    q = q.bind::<BigInt, _>(id).bind::<Nullable<Text>, _>(out);
                }
                q.execute(lite)
            }
        }
        .expect("write a batch");
        conn.batch_execute("COMMIT").expect("commit");
        written += n as u64;
        last = end;
    }
    written
}

/// In-server batched `UPDATE`s over key ranges of `batch` keys, each committed on its own.
fn in_server(db: &Database, batch: usize, rows: u64) -> u64 {
    let mut conn = db.get().expect("a connection");
    let sql = "UPDATE accounts SET email_normalized = lower(trim(email)) \
               WHERE id >= $1 AND id < $2 AND email IS NOT NULL AND email_normalized IS NULL";
    let mut written = 0u64;
    let mut from = 1i64;
    while from <= rows as i64 {
        written += diesel::sql_query(sql)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(from + batch as i64)
            .execute(&mut *conn)
            .expect("an in-server batch") as u64;
        from += batch as i64;
    }
    written
}

/// Rows per second of each variant on `backend`, `rounds` interleaved rounds (the mean).
fn measure(backend: Backend, rows: u64, batch: usize, rounds: usize) -> [Vec<f64>; 3] {
    let dir = std::env::temp_dir().join(format!("migrator-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..rounds {
        let mut order = [0usize, 1, 2];
        if round % 2 == 1 {
            order.reverse();
        }
        for variant in order {
            let url = fresh(backend, &dir, &format!("engine-{round}-{variant}"));
            let db = Database::connect(&url).expect("connect");
            seed_accounts(&db, rows);
            let start = Instant::now();
            let written = match variant {
                0 => engine(&db, batch),
                1 => client_loop(&db, batch),
                _ => in_server(&db, batch, rows),
            };
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(written, rows, "{backend} variant {variant}");
            let left = crate::count(
                &db,
                "SELECT COUNT(*) AS n FROM accounts WHERE email_normalized IS NULL \
                 OR email_normalized <> lower(trim(email))",
            );
            assert_eq!(left, 0, "{backend} variant {variant}: rows not normalised");
            eprintln!(
                "engine bench, {backend}, round {round}, {}: {:.0} rows/s",
                ["engine", "loop", "in-server"][variant],
                rows as f64 / secs
            );
            rates[variant].push(rows as f64 / secs);
            if backend == Backend::Sqlite {
                let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rates
}

/// The engine against the loop and in-server `UPDATE`s on `rows` rows of `backends`.
pub fn engine_against_loop(
    rows: u64,
    batch: usize,
    rounds: usize,
    backends: &[Backend],
) -> Vec<Row> {
    let mut out = Vec::new();
    for &backend in backends {
        let [ours, theirs, server] = measure(backend, rows, batch, rounds);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (e, l, s) = (mean(&ours), mean(&theirs), mean(&server));
        out.push((
            format!(
                "backfill engine rows/s against a client-side loop, {backend}, {rows} rows, \
                 trivial compute, batches of {batch}"
            ),
            format!("{e:.0} / {l:.0} rows/s"),
            format!(
                "ratio {:.2} (target >= 0.8); in-server UPDATEs {s:.0} rows/s (engine {:.2}x, \
                 loop {:.2}x of it); rounds: engine {}, loop {}, in-server {}",
                e / l,
                e / s,
                l / s,
                list(&ours),
                list(&theirs),
                list(&server)
            ),
        ));
    }
    out
}
