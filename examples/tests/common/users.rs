//! A `user_profiles` table as the Smart Meal Planner has it in production: plaintext Kroger
//! passwords, other columns, and a trigger that logs every update (to count updates per row).

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator::{connection::Backend, Database};

use super::exec;

/// Inputs that must be hashed exactly as they are (ids 1 to 8).
pub fn nasty() -> Vec<(i64, Option<String>)> {
    vec![
        (1, Some(String::new())),
        (2, Some("k".repeat(10 * 1024))),
        (3, Some("pässwörd 密码 🔑 ñ".into())),
        (4, Some("  padded with spaces  ".into())),
        (
            5,
            Some("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA".into()),
        ),
        (6, Some("'; DROP TABLE user_profiles; --".into())),
        (7, Some("tab\there\nnewline\\backslash".into())),
        (8, None),
    ]
}

/// The plaintext of user `id` (ids above 8): NULL for every 97th.
pub fn plaintext(id: i64) -> Option<String> {
    (id % 97 != 0).then(|| format!("kp-{id}-secret"))
}

/// Creates `user_profiles` with `rows` users (ids 1..=rows) and the update-logging trigger.
pub fn seed(db: &Database, backend: Backend, rows: i64) {
    exec(
        db,
        "CREATE TABLE user_profiles (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT '2024-01-01',
            kroger_password TEXT
         );
         CREATE TABLE update_log (user_id INTEGER NOT NULL);",
    );
    match backend {
        Backend::Postgres => exec(
            db,
            &format!(
                "INSERT INTO user_profiles (id, email, kroger_password)
                 SELECT g, 'user' || g || '@example.com',
                        CASE WHEN g % 97 = 0 THEN NULL ELSE 'kp-' || g || '-secret' END
                 FROM generate_series(9, {rows}) AS g;
                 CREATE FUNCTION log_update() RETURNS trigger AS $$
                 BEGIN INSERT INTO update_log VALUES (NEW.id); RETURN NEW; END
                 $$ LANGUAGE plpgsql;
                 CREATE TRIGGER user_profiles_updated AFTER UPDATE ON user_profiles
                 FOR EACH ROW EXECUTE FUNCTION log_update();"
            ),
        ),
        _ => exec(
            db,
            &format!(
                "WITH RECURSIVE g(x) AS (SELECT 9 UNION ALL SELECT x + 1 FROM g WHERE x < {rows})
                 INSERT INTO user_profiles (id, email, kroger_password)
                 SELECT x, 'user' || x || '@example.com',
                        CASE WHEN x % 97 = 0 THEN NULL ELSE 'kp-' || x || '-secret' END
                 FROM g;
                 CREATE TRIGGER user_profiles_updated AFTER UPDATE ON user_profiles
                 BEGIN INSERT INTO update_log VALUES (NEW.id); END;"
            ),
        ),
    }
    let mut conn = db.get().unwrap();
    for (id, password) in nasty() {
        diesel::sql_query(
            "INSERT INTO user_profiles (id, email, kroger_password) VALUES ($1, $2, $3)",
        )
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(format!("user{id}@example.com"))
        .bind::<Nullable<Text>, _>(password)
        .execute(&mut *conn)
        .unwrap();
    }
}

/// The expected plaintext of every user.
pub fn expected(rows: i64) -> Vec<(i64, Option<String>)> {
    let mut all = nasty();
    all.extend((9..=rows).map(|id| (id, plaintext(id))));
    all
}

/// A user row as stored.
#[derive(QueryableByName, Debug)]
pub struct User {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub kroger_password: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub kroger_password_hash: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub kroger_password_salt: Option<String>,
}

/// Every user, by id.
pub fn users(db: &Database) -> Vec<User> {
    let mut conn = db.get().unwrap();
    diesel::sql_query(
        "SELECT CAST(id AS BIGINT) AS id, email, kroger_password, kroger_password_hash, \
         kroger_password_salt FROM user_profiles ORDER BY id",
    )
    .load(&mut *conn)
    .unwrap()
}

/// Rows updated more than once according to the trigger, and the number of updates.
pub fn updates(db: &Database) -> (i64, i64) {
    let twice = super::count(
        db,
        "SELECT COUNT(*) AS n FROM (SELECT user_id FROM update_log GROUP BY user_id \
         HAVING COUNT(*) > 1) AS d",
    );
    let all = super::count(db, "SELECT COUNT(*) AS n FROM update_log");
    (twice, all)
}

/// Checks every row: plaintext unchanged, hash verifies it, salt column is the hash's salt,
/// NULL passwords left alone, other columns intact.
pub fn assert_all_hashed(db: &Database, rows: i64) {
    let hasher = migrator::password::Hasher::new(migrator::password::Params::default()).unwrap();
    let users = users(db);
    let expected = expected(rows);
    assert_eq!(users.len(), expected.len());
    let mut by_id: std::collections::HashMap<i64, Option<String>> = expected.into_iter().collect();
    std::thread::scope(|scope| {
        for chunk in users.chunks(users.len().div_ceil(2)) {
            let hasher = &hasher;
            let by_id = &by_id;
            scope.spawn(move || {
                for user in chunk {
                    let want = &by_id[&user.id];
                    assert_eq!(&user.kroger_password, want, "plaintext of user {}", user.id);
                    assert_eq!(user.email, format!("user{}@example.com", user.id));
                    match want {
                        None => {
                            assert!(user.kroger_password_hash.is_none(), "user {}", user.id);
                            assert!(user.kroger_password_salt.is_none(), "user {}", user.id);
                        }
                        Some(plain) => {
                            let hash = user
                                .kroger_password_hash
                                .as_deref()
                                .unwrap_or_else(|| panic!("user {} has no hash", user.id));
                            let password = migrator::password::Password::new(plain.as_str());
                            assert!(hasher.verify(&password, hash).unwrap(), "user {}", user.id);
                            assert_eq!(
                                user.kroger_password_salt.as_deref(),
                                hash.split('$').nth(4),
                                "user {}",
                                user.id
                            );
                        }
                    }
                }
            });
        }
    });
    by_id.clear();
}

/// Every plaintext a test seeded (the empty one aside), to look for in outputs.
pub fn secrets(rows: i64) -> Vec<String> {
    expected(rows)
        .into_iter()
        .filter_map(|(_, p)| p)
        .filter(|p| p.len() > 3)
        .collect()
}

/// Panics if `text` contains any seeded plaintext.
pub fn assert_no_plaintext(text: &str, rows: i64) {
    for secret in secrets(rows) {
        let shown: String = secret.chars().take(40).collect();
        assert!(
            !text.contains(&secret),
            "output contains the plaintext {shown:?}"
        );
    }
}

/// Checks with the update trigger that every row with a password was updated exactly once.
pub fn assert_each_updated_once(db: &Database, rows: i64) {
    let with_password = expected(rows).iter().filter(|(_, p)| p.is_some()).count() as i64;
    assert_eq!(
        updates(db),
        (0, with_password),
        "each row updated exactly once"
    );
}
