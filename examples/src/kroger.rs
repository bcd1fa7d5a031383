//! Kroger passwords: the backfill of migration 001, the app's set and verify paths, and the
//! checks of `migrate_kroger_passwords verify`.
//!
//! Storage: `user_profiles.kroger_password_hash` holds an Argon2id PHC string and
//! `kroger_password_salt` its salt. `kroger_password` is the legacy plaintext: migration 001
//! keeps it (old app versions still read and write it); setting a password clears it; `verify
//! --clear-verified-plaintext` removes it once its hash is verified. While a row has a
//! plaintext, verification trusts the plaintext (an old version may have changed it after the
//! row was hashed) and repairs the hash.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::backfill::{Backfill, BackfillReport};
use migrator::password::{plaintext_matches, Hasher, Params, Password};
use migrator::{AnyConnection, Backend, Config, Database, Error, Progress, Result};
use rayon::prelude::*;

use crate::commands::{VerifyOptions, VerifyReport, WorkOptions};

static PARAMS: OnceLock<Params> = OnceLock::new();

/// Sets the Argon2 parameters for this process, overriding `ARGON2_*` (call before hashing).
/// Returns false if they were already set.
pub fn set_hash_params(params: Params) -> bool {
    PARAMS.set(params).is_ok()
}

/// The hasher: parameters from [`set_hash_params`], else `ARGON2_MEMORY_KIB`,
/// `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`, else the defaults (m=19456, t=2, p=1).
pub fn hasher() -> Result<Hasher> {
    match PARAMS.get() {
        Some(params) => Hasher::new(*params),
        None => Hasher::new(Params::from_env()?),
    }
}

/// The backfill: rows with a plaintext and no hash get a hash and its salt.
pub fn backfill() -> Backfill {
    let mut backfill = Backfill::new("user_profiles", "id");
    backfill
        .input("kroger_password")
        .output("kroger_password_hash")
        .output("kroger_password_salt")
        .pending_when("kroger_password IS NOT NULL AND kroger_password_hash IS NULL");
    backfill
}

/// Threads and batch size of a backfill run.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackfillOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Rows per batch.
    pub batch_size: Option<usize>,
}

impl BackfillOptions {
    /// From `MIGRATION_WORKER_THREADS` and `MIGRATION_BATCH_SIZE` as read into `config`.
    pub fn from_config(config: &Config) -> BackfillOptions {
        BackfillOptions {
            threads: config.worker_threads_value(),
            batch_size: config.batch_size_value(),
        }
    }
}

/// Hashes every pending row (shared with other processes running it at the same time).
pub fn run_backfill(
    db: &Database,
    progress: &Progress,
    options: &BackfillOptions,
) -> Result<BackfillReport> {
    let hasher = hasher()?;
    let mut backfill = backfill();
    if let Some(threads) = options.threads {
        backfill.threads(threads);
    }
    if let Some(rows) = options.batch_size {
        backfill.batch_size(rows);
    }
    backfill.run(db, progress, |inputs| {
        let Some(plaintext) = inputs[0] else {
            return Ok(vec![None, None]);
        };
        // Hashed exactly as stored: empty, padded, huge or hash-looking strings are passwords.
        let hashed = hasher.hash(&Password::new(plaintext))?;
        Ok(vec![Some(hashed.phc), Some(hashed.salt)])
    })
}

/// `migrate_kroger_passwords work`: waits until migration 001 has added the hash columns
/// (bounded by `MIGRATION_LOCK_TIMEOUT_SECS`), then helps hash until nothing is pending.
pub fn work(db: &Database, options: &WorkOptions) -> Result<u64> {
    let config = Config::from_env()?;
    // A timeout too large to add to the clock (MIGRATION_LOCK_TIMEOUT_SECS near u64::MAX)
    // means no deadline.
    let deadline = Instant::now().checked_add(config.lock_timeout_value());
    let mut logged = false;
    loop {
        let mut conn = db.get()?;
        let ready = has_column(&mut conn, "kroger_password_hash")?
            && has_column(&mut conn, "kroger_password_salt")?;
        drop(conn);
        if ready {
            break;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(Error::msg(
                "user_profiles has no kroger_password_hash column yet: start migration \
                 001_hash_kroger_passwords (`migrate_kroger_passwords up`, or the app) first",
            ));
        }
        if !logged {
            log::info!("Waiting for migration 001 to add the kroger_password_hash columns");
            logged = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let progress = Progress::new(
        "001_hash_kroger_passwords",
        config.progress_interval_value(),
    );
    let report = run_backfill(
        db,
        &progress,
        &BackfillOptions {
            threads: options.threads.or(config.worker_threads_value()),
            batch_size: options.batch_size.or(config.batch_size_value()),
        },
    )?;
    Ok(report.rows_updated)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether `user_profiles` has `column`.
pub fn has_column(conn: &mut AnyConnection, column: &str) -> Result<bool> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = \
             current_schema() AND table_name = 'user_profiles' AND column_name = $1"
        }
        _ => "SELECT COUNT(*) AS n FROM pragma_table_info('user_profiles') WHERE name = $1",
    };
    let count: Count = diesel::sql_query(sql)
        .bind::<Text, _>(column)
        .get_result(conn)?;
    Ok(count.n > 0)
}

/// Sets a user's Kroger password: stores only its hash and salt, and clears the legacy
/// plaintext. Returns false if the user does not exist.
pub fn set_kroger_password(
    conn: &mut AnyConnection,
    hasher: &Hasher,
    user_id: i64,
    password: &Password,
) -> Result<bool> {
    let hashed = hasher.hash(password)?;
    let updated = diesel::sql_query(
        "UPDATE user_profiles SET kroger_password_hash = $1, kroger_password_salt = $2, \
         kroger_password = NULL WHERE id = $3",
    )
    .bind::<Text, _>(&hashed.phc)
    .bind::<Text, _>(&hashed.salt)
    .bind::<BigInt, _>(user_id)
    .execute(conn)?;
    Ok(updated == 1)
}

/// The outcome of [`verify_kroger_password`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The password is right.
    Verified {
        /// The row had only the legacy plaintext and now has a hash.
        upgraded: bool,
        /// The hash used old parameters and was replaced.
        rehashed: bool,
    },
    /// The password is wrong.
    Mismatch,
    /// The user has no Kroger password.
    NoPassword,
    /// No such user.
    UnknownUser,
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Nullable<Text>)]
    plain: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    hash: Option<String>,
}

/// Checks a user's Kroger password.
///
/// While a row still has its legacy plaintext, the plaintext is the truth: an old app version
/// may have changed it after the row was hashed. It is compared in constant time, and on
/// success the hash is (re)made if it is missing or does not match. Rows without a plaintext
/// are checked against the hash, which is replaced if its parameters are outdated.
pub fn verify_kroger_password(
    conn: &mut AnyConnection,
    hasher: &Hasher,
    user_id: i64,
    password: &Password,
) -> Result<Verification> {
    let stored: Vec<Stored> = diesel::sql_query(
        "SELECT kroger_password AS plain, kroger_password_hash AS hash \
         FROM user_profiles WHERE id = $1",
    )
    .bind::<BigInt, _>(user_id)
    .load(conn)?;
    let Some(stored) = stored.into_iter().next() else {
        return Ok(Verification::UnknownUser);
    };
    let plain = stored.plain.map(Password::new);
    match (plain, stored.hash) {
        (Some(plain), hash) => {
            if !plaintext_matches(plain.expose(), password) {
                return Ok(Verification::Mismatch);
            }
            let current = match &hash {
                Some(hash) => hasher.verify(password, hash).unwrap_or(false),
                None => false,
            };
            if current && !hasher.needs_rehash(hash.as_deref().unwrap_or_default()) {
                return Ok(Verification::Verified {
                    upgraded: false,
                    rehashed: false,
                });
            }
            let stored = store_hash(conn, hasher, user_id, &plain, hash.as_deref())?;
            Ok(Verification::Verified {
                upgraded: stored && hash.is_none(),
                rehashed: stored && hash.is_some(),
            })
        }
        (None, Some(hash)) => {
            if !hasher.verify(password, &hash)? {
                return Ok(Verification::Mismatch);
            }
            let rehashed = hasher.needs_rehash(&hash)
                && store_hash(conn, hasher, user_id, password, Some(&hash))?;
            Ok(Verification::Verified {
                upgraded: false,
                rehashed,
            })
        }
        (None, None) => Ok(Verification::NoPassword),
    }
}

/// Stores a new hash of `password` if the row still has hash `previous` (NULL: none) and, when
/// it has a plaintext, that plaintext is still `password`; keeps the plaintext.
fn store_hash(
    conn: &mut AnyConnection,
    hasher: &Hasher,
    user_id: i64,
    password: &Password,
    previous: Option<&str>,
) -> Result<bool> {
    let hashed = hasher.hash(password)?;
    let sql = match previous {
        Some(_) => {
            "UPDATE user_profiles SET kroger_password_hash = $1, kroger_password_salt = $2 \
             WHERE id = $3 AND kroger_password_hash = $4 \
             AND (kroger_password IS NULL OR kroger_password = $5)"
        }
        None => {
            "UPDATE user_profiles SET kroger_password_hash = $1, kroger_password_salt = $2 \
             WHERE id = $3 AND kroger_password_hash IS NULL AND $4 IS NULL \
             AND (kroger_password IS NULL OR kroger_password = $5)"
        }
    };
    let updated = diesel::sql_query(sql)
        .bind::<Text, _>(&hashed.phc)
        .bind::<Text, _>(&hashed.salt)
        .bind::<BigInt, _>(user_id)
        .bind::<Nullable<Text>, _>(previous)
        .bind::<Text, _>(password.expose())
        .execute(conn)?;
    Ok(updated == 1)
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    plain: i64,
    #[diesel(sql_type = BigInt)]
    hashed: i64,
    #[diesel(sql_type = BigInt)]
    remaining: i64,
}

#[derive(QueryableByName)]
struct Checked {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    plain: Option<String>,
    #[diesel(sql_type = Text)]
    hash: String,
    #[diesel(sql_type = Nullable<Text>)]
    salt: Option<String>,
}

/// What a row's check found.
enum RowCheck {
    Verified,
    NoPlaintext,
    Problem(String),
}

const CHECK_BATCH: i64 = 500;
const MAX_PROBLEMS_LISTED: usize = 50;

/// `migrate_kroger_passwords verify`: the deployment guide's counts, and optionally a check of
/// every hash against its plaintext and the removal of verified plaintexts.
pub fn verify(db: &Database, options: &VerifyOptions) -> Result<VerifyReport> {
    let mut conn = db.get()?;
    let mut report = VerifyReport::default();
    if !has_column(&mut conn, "kroger_password_hash")? {
        let counts: Count =
            diesel::sql_query("SELECT COUNT(kroger_password) AS n FROM user_profiles")
                .get_result(&mut *conn)?;
        report.counts = vec![("plain_passwords", counts.n as u64)];
        report.problems.push(
            "kroger_password_hash does not exist yet: migration 001_hash_kroger_passwords has \
             not run"
                .into(),
        );
        return Ok(report);
    }
    let c: Counts = diesel::sql_query(
        "SELECT COUNT(*) AS total, COUNT(kroger_password) AS plain, \
         COUNT(kroger_password_hash) AS hashed, \
         COUNT(CASE WHEN kroger_password IS NOT NULL AND kroger_password_hash IS NULL \
         THEN 1 END) AS remaining FROM user_profiles",
    )
    .get_result(&mut *conn)?;
    report.counts = vec![
        ("total_users", c.total as u64),
        ("plain_passwords", c.plain as u64),
        ("hashed_passwords", c.hashed as u64),
        ("remaining", c.remaining as u64),
    ];
    if c.remaining > 0 {
        report.notes.push(format!(
            "{} plaintext passwords are not hashed yet (run `migrate_kroger_passwords up` or `work`)",
            c.remaining
        ));
    }
    drop(conn);
    if !(options.check_hashes || options.clear_verified_plaintext) {
        return Ok(report);
    }
    let hasher = hasher()?;
    let (mut verified, mut mismatched, mut unverifiable, mut cleared) = (0u64, 0u64, 0u64, 0u64);
    let mut problems = Vec::new();
    // The next id to check; None once the largest id has been checked.
    let mut cursor = Some(i64::MIN);
    while let Some(from) = cursor {
        let mut conn = db.get()?;
        let rows: Vec<Checked> = diesel::sql_query(
            "SELECT CAST(id AS BIGINT) AS id, kroger_password AS plain, \
             kroger_password_hash AS hash, kroger_password_salt AS salt FROM user_profiles \
             WHERE kroger_password_hash IS NOT NULL AND id >= $1 ORDER BY id LIMIT $2",
        )
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(CHECK_BATCH)
        .load(&mut *conn)?;
        let Some(last) = rows.last() else {
            break;
        };
        cursor = last.id.checked_add(1);
        let checks: Vec<RowCheck> = rows.par_iter().map(|row| check_row(&hasher, row)).collect();
        let mut to_clear = Vec::new();
        for (row, check) in rows.iter().zip(checks) {
            match check {
                RowCheck::Verified => {
                    verified += 1;
                    to_clear.push(row);
                }
                RowCheck::NoPlaintext => unverifiable += 1,
                RowCheck::Problem(problem) => {
                    mismatched += 1;
                    problems.push(problem);
                }
            }
        }
        if options.clear_verified_plaintext && !to_clear.is_empty() {
            cleared += clear_plaintexts(&mut conn, &to_clear)?;
        }
    }
    report.counts.push(("hashes_verified", verified));
    report.counts.push(("hashes_not_matching", mismatched));
    report
        .counts
        .push(("hashes_without_plaintext", unverifiable));
    if options.clear_verified_plaintext {
        report.counts.push(("plaintexts_cleared", cleared));
        if mismatched > 0 {
            report.notes.push(format!(
                "refused to clear {mismatched} plaintexts whose hash does not verify them"
            ));
        }
    }
    let total_problems = problems.len();
    report
        .problems
        .extend(problems.into_iter().take(MAX_PROBLEMS_LISTED));
    if total_problems > MAX_PROBLEMS_LISTED {
        report.problems.push(format!(
            "... and {} more",
            total_problems - MAX_PROBLEMS_LISTED
        ));
    }
    Ok(report)
}

fn check_row(hasher: &Hasher, row: &Checked) -> RowCheck {
    let Some(plain) = row.plain.as_deref() else {
        return RowCheck::NoPlaintext;
    };
    let plain = Password::new(plain);
    match hasher.verify(&plain, &row.hash) {
        Ok(true) => {}
        Ok(false) => {
            return RowCheck::Problem(format!(
                "user {}: the hash does not verify its plaintext",
                row.id
            ))
        }
        Err(e) => return RowCheck::Problem(format!("user {}: {e}", row.id)),
    }
    let salt_in_hash = row.hash.split('$').nth(4);
    if row.salt.as_deref() != salt_in_hash {
        return RowCheck::Problem(format!(
            "user {}: kroger_password_salt does not match the salt of the hash",
            row.id
        ));
    }
    RowCheck::Verified
}

/// Clears the plaintext of verified rows whose hash is still the one verified.
fn clear_plaintexts(conn: &mut AnyConnection, rows: &[&Checked]) -> Result<u64> {
    diesel::Connection::transaction(conn, |conn| {
        let mut cleared = 0;
        for row in rows {
            // Only if neither the hash nor the plaintext changed since they were verified.
            cleared += diesel::sql_query(
                "UPDATE user_profiles SET kroger_password = NULL \
                 WHERE id = $1 AND kroger_password_hash = $2 AND kroger_password = $3",
            )
            .bind::<BigInt, _>(row.id)
            .bind::<Text, _>(&row.hash)
            .bind::<Nullable<Text>, _>(row.plain.as_deref())
            .execute(conn)? as u64;
        }
        Ok(cleared)
    })
}
