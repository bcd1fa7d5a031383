//! The app's password paths: set (hash, store, clear the plaintext) and verify (with the lazy
//! upgrade of plaintext rows and the rehash of outdated hashes, by guarded writes).

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::password::{plaintext_matches, HashedPassword, Hasher, Password};
use migrator::{AnyConnection, Result};

use super::{for_update, locked};

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
