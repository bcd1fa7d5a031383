//! `migrate_kroger_passwords verify`: the deployment guide's counts, the check of every hash
//! against its plaintext, and the removal of verified plaintexts.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::connection::{has_column, Count};
use migrator::password::{plaintext_matches, Hasher, Password};
use migrator::{AnyConnection, Database, Result};
use rayon::prelude::*;

use super::{for_update, hasher, locked};
use crate::commands::{VerifyOptions, VerifyReport};

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
