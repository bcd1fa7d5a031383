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
use migrator::password::{plaintext_matches, HashedPassword, Hasher, Params, Password};
use migrator::schema::{has_column, Count};
use migrator::{AnyConnection, Backend, Config, Database, Error, Progress, Result};
use rayon::prelude::*;

use crate::commands::{VerifyOptions, VerifyReport, WorkOptions};
use crate::migrations::HASH_KROGER_PASSWORDS;

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
            threads: config.worker_threads(),
            batch_size: config.batch_size(),
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
    let deadline = Instant::now().checked_add(config.lock_timeout());
    let mut logged = false;
    loop {
        let mut conn = db.get()?;
        let ready = has_column(&mut conn, "user_profiles", "kroger_password_hash")?
            && has_column(&mut conn, "user_profiles", "kroger_password_salt")?;
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
    let progress = Progress::new(HASH_KROGER_PASSWORDS, config.progress_interval());
    let report = run_backfill(
        db,
        &progress,
        &BackfillOptions {
            threads: options.threads.or(config.worker_threads()),
            batch_size: options.batch_size.or(config.batch_size()),
        },
    )?;
    Ok(report.rows_updated)
}

/// Sets a user's Kroger password: stores only its hash and salt, and clears the legacy
/// plaintext. Returns false if the user does not exist.
///
/// Holds `conn` while Argon2 runs; a server hashes first, with no connection held, and then
/// calls [`store_kroger_password_hash`].
pub fn set_kroger_password(
    conn: &mut AnyConnection,
    hasher: &Hasher,
    user_id: i64,
    password: &Password,
) -> Result<bool> {
    let hashed = hasher.hash(password)?;
    store_kroger_password_hash(conn, user_id, &hashed)
}

/// Stores a new password's hash and salt (made by [`Hasher::hash`]) and clears the legacy
/// plaintext. Returns false if the user does not exist.
pub fn store_kroger_password_hash(
    conn: &mut AnyConnection,
    user_id: i64,
    hashed: &HashedPassword,
) -> Result<bool> {
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

/// Checks a user's Kroger password: [`read_kroger_password`], [`StoredPassword::check`] and
/// [`CheckedPassword::finish`] on one connection.
///
/// While a row still has its legacy plaintext, the plaintext is the truth: an old app version
/// may have changed it after the row was hashed. It is compared in constant time, and on
/// success the hash is (re)made if it is missing or does not match. Rows without a plaintext
/// are checked against the hash, which is replaced if its parameters are outdated.
///
/// Holds `conn` while Argon2 runs; a server calls the three steps itself and holds a
/// connection only for the first and the last.
pub fn verify_kroger_password(
    conn: &mut AnyConnection,
    hasher: &Hasher,
    user_id: i64,
    password: &Password,
) -> Result<Verification> {
    let Some(stored) = read_kroger_password(conn, user_id)? else {
        return Ok(Verification::UnknownUser);
    };
    stored
        .check(hasher, password)?
        .finish(conn, user_id, password)
}

/// A user's stored Kroger password, as [`read_kroger_password`] found it. `Debug` shows
/// neither the plaintext nor the hash.
pub struct StoredPassword {
    plain: Option<Password>,
    hash: Option<String>,
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPassword")
            .field("has_plaintext", &self.plain.is_some())
            .field("has_hash", &self.hash.is_some())
            .finish()
    }
}

/// Step 1 of a verification (a quick read): user `user_id`'s stored password; `None` if there
/// is no such user.
pub fn read_kroger_password(
    conn: &mut AnyConnection,
    user_id: i64,
) -> Result<Option<StoredPassword>> {
    let stored: Vec<Stored> = diesel::sql_query(
        "SELECT kroger_password AS plain, kroger_password_hash AS hash \
         FROM user_profiles WHERE id = $1",
    )
    .bind::<BigInt, _>(user_id)
    .load(conn)?;
    Ok(stored.into_iter().next().map(|row| StoredPassword {
        plain: row.plain.map(Password::new),
        hash: row.hash,
    }))
}

/// A password checked by [`StoredPassword::check`], with the hash it still has to store.
#[derive(Debug)]
pub struct CheckedPassword {
    outcome: Verification,
    /// A new hash, to store only if the row still has hash `previous` (None: none).
    new_hash: Option<(HashedPassword, Option<String>)>,
}

impl StoredPassword {
    /// Step 2 of a verification (Argon2, no database): checks `password` and, when the row
    /// needs a new hash (none yet, stale, or old parameters), makes it.
    pub fn check(&self, hasher: &Hasher, password: &Password) -> Result<CheckedPassword> {
        let verified = CheckedPassword {
            outcome: Verification::Verified {
                upgraded: false,
                rehashed: false,
            },
            new_hash: None,
        };
        let rejected = |outcome| CheckedPassword {
            outcome,
            new_hash: None,
        };
        let needs_hash = match (&self.plain, &self.hash) {
            (Some(plain), hash) => {
                if !plaintext_matches(plain.expose(), password) {
                    return Ok(rejected(Verification::Mismatch));
                }
                match hash {
                    Some(hash) => {
                        !hasher.verify(password, hash).unwrap_or(false) || hasher.needs_rehash(hash)
                    }
                    None => true,
                }
            }
            (None, Some(hash)) => {
                if !hasher.verify(password, hash)? {
                    return Ok(rejected(Verification::Mismatch));
                }
                hasher.needs_rehash(hash)
            }
            (None, None) => return Ok(rejected(Verification::NoPassword)),
        };
        if !needs_hash {
            return Ok(verified);
        }
        Ok(CheckedPassword {
            new_hash: Some((hasher.hash(password)?, self.hash.clone())),
            ..verified
        })
    }
}

impl CheckedPassword {
    /// Whether [`CheckedPassword::finish`] has a hash to store (and so needs a connection).
    pub fn needs_write(&self) -> bool {
        self.new_hash.is_some()
    }

    /// The outcome, when no write is needed; `None`: call [`CheckedPassword::finish`].
    pub fn outcome(&self) -> Option<Verification> {
        self.new_hash.is_none().then_some(self.outcome)
    }

    /// Step 3 of a verification (a quick guarded write, only if [`needs_write`]): stores the
    /// new hash if the row is as it was checked, and returns the outcome.
    ///
    /// [`needs_write`]: CheckedPassword::needs_write
    pub fn finish(
        self,
        conn: &mut AnyConnection,
        user_id: i64,
        password: &Password,
    ) -> Result<Verification> {
        let Some((hashed, previous)) = self.new_hash else {
            return Ok(self.outcome);
        };
        let stored = store_hash(conn, user_id, password, previous.as_deref(), &hashed)?;
        Ok(Verification::Verified {
            upgraded: stored && previous.is_none(),
            rehashed: stored && previous.is_some(),
        })
    }
}

/// Runs `f` in a transaction holding the write lock on what it reads: PostgreSQL locks the
/// rows `f` reads `FOR UPDATE`, SQLite takes the database's write lock at `BEGIN IMMEDIATE`.
/// So a comparison made in Rust still holds when `f` writes, and no secret needs binding into
/// a guarded `UPDATE` (where `log_statement`, `log_min_duration_statement` or pgaudit would
/// write it into the server log). Inside a caller's transaction it is a savepoint, and the
/// locks last until the caller's transaction ends.
fn locked<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    use diesel::connection::{SimpleConnection, TransactionManager};
    use diesel::Connection;
    type Manager = <AnyConnection as Connection>::TransactionManager;
    let nested = matches!(
        Manager::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    );
    if nested || conn.backend() == Backend::Postgres {
        return conn.transaction(f);
    }
    // Diesel's SQLite transactions are deferred: they would take the write lock only at the
    // UPDATE, after the read.
    conn.batch_execute("BEGIN IMMEDIATE")?;
    let result = f(conn).and_then(|value| {
        conn.batch_execute("COMMIT")?;
        Ok(value)
    });
    if result.is_err() {
        // Ends the transaction after a failed statement or COMMIT.
        let _ = conn.batch_execute("ROLLBACK");
    }
    result
}

/// `FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the write lock.
fn for_update(conn: &AnyConnection) -> &'static str {
    match conn.backend() {
        Backend::Postgres => " FOR UPDATE",
        _ => "",
    }
}

/// Stores `hashed` if the row still has hash `previous` (None: none) and, when it has a
/// plaintext, that plaintext is still `password`; keeps the plaintext. Compares in Rust under
/// the row's lock: neither the password nor the previous hash is sent to the database.
fn store_hash(
    conn: &mut AnyConnection,
    user_id: i64,
    password: &Password,
    previous: Option<&str>,
    hashed: &HashedPassword,
) -> Result<bool> {
    let select = format!(
        "SELECT kroger_password AS plain, kroger_password_hash AS hash \
         FROM user_profiles WHERE id = $1{}",
        for_update(conn)
    );
    locked(conn, |conn| {
        let current: Vec<Stored> = diesel::sql_query(select)
            .bind::<BigInt, _>(user_id)
            .load(conn)?;
        let Some(current) = current.into_iter().next() else {
            return Ok(false);
        };
        let plain = current.plain.map(Password::new);
        let unchanged = current.hash.as_deref() == previous
            && plain
                .as_ref()
                .is_none_or(|plain| plaintext_matches(plain.expose(), password));
        if !unchanged {
            return Ok(false);
        }
        let updated = diesel::sql_query(
            "UPDATE user_profiles SET kroger_password_hash = $1, kroger_password_salt = $2 \
             WHERE id = $3",
        )
        .bind::<Text, _>(&hashed.phc)
        .bind::<Text, _>(&hashed.salt)
        .bind::<BigInt, _>(user_id)
        .execute(conn)?;
        Ok(updated == 1)
    })
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
    if !has_column(&mut conn, "user_profiles", "kroger_password_hash")? {
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
        // No connection is held while Argon2 runs.
        let rows: Vec<Checked> = diesel::sql_query(
            "SELECT CAST(id AS BIGINT) AS id, kroger_password AS plain, \
             kroger_password_hash AS hash, kroger_password_salt AS salt FROM user_profiles \
             WHERE kroger_password_hash IS NOT NULL AND id >= $1 ORDER BY id LIMIT $2",
        )
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(CHECK_BATCH)
        .load(&mut *db.get()?)?;
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
            cleared += clear_plaintexts(&mut *db.get()?, &to_clear)?;
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

/// The hash and plaintext of a row, as locked for clearing.
#[derive(QueryableByName)]
struct Current {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    plain: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    hash: Option<String>,
}

/// Clears the plaintext of verified rows (in id order) whose hash and plaintext are still the
/// ones verified. Compares in Rust under the rows' lock: only ids are sent to the database.
fn clear_plaintexts(conn: &mut AnyConnection, rows: &[&Checked]) -> Result<u64> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(0);
    };
    let select = format!(
        "SELECT CAST(id AS BIGINT) AS id, kroger_password AS plain, \
         kroger_password_hash AS hash FROM user_profiles \
         WHERE id >= $1 AND id <= $2 AND kroger_password IS NOT NULL{}",
        for_update(conn)
    );
    let verified: std::collections::HashMap<i64, &Checked> =
        rows.iter().map(|row| (row.id, *row)).collect();
    locked(conn, |conn| {
        let current: Vec<Current> = diesel::sql_query(select)
            .bind::<BigInt, _>(first.id)
            .bind::<BigInt, _>(last.id)
            .load(conn)?;
        let mut cleared = 0;
        for row in current {
            let plain = row.plain.map(Password::new);
            let unchanged = verified.get(&row.id).is_some_and(|checked| {
                row.hash.as_deref() == Some(checked.hash.as_str())
                    && match (&plain, checked.plain.as_deref()) {
                        (Some(now), Some(then)) => plaintext_matches(then, now),
                        _ => false,
                    }
            });
            if unchanged {
                cleared += diesel::sql_query(
                    "UPDATE user_profiles SET kroger_password = NULL WHERE id = $1",
                )
                .bind::<BigInt, _>(row.id)
                .execute(conn)? as u64;
            }
        }
        Ok(cleared)
    })
}
