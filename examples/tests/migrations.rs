//! The Smart Meal Planner's migration tests, on `#[migrator::test]`: each test gets a fresh
//! database (PostgreSQL and SQLite) with the demo schema (`DEMO_SQL`: `user_profiles` and its
//! 1,000 users with plaintext Kroger passwords) and the app's migrations, copied from a template
//! migrated once per state.
//!
//! Argon2 runs with cheap parameters here (`setup = fast_hashing`): the code path is the one
//! production runs, the cost is not.

use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use migrator::backfill::{self, BackfillStatus, Workers};
use migrator::connection::{has_column, Count};
use migrator::password::{Params, Password};
use migrator::{config::Environment, AnyConnection, Config, Database, Migrator, Result};
use smart_meal_planner::commands::VerifyOptions;
use smart_meal_planner::demo::DEMO_SQL;
use smart_meal_planner::kroger::{self, Verification};
use smart_meal_planner::migrations::HASH_KROGER_PASSWORDS;

/// The demo's users.
const USERS: u64 = 1000;

fn fast_hashing() {
    kroger::set_hash_params(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
}

fn count(conn: &mut AnyConnection, sql: &str) -> Result<i64> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n)
}

fn counts(db: &Database, check_hashes: bool) -> Result<Vec<(&'static str, u64)>> {
    let mut options = VerifyOptions::default();
    options.check_hashes = check_hashes;
    let report = kroger::verify(db, &options)?;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    Ok(report.counts)
}

fn count_of(counts: &[(&'static str, u64)], name: &str) -> u64 {
    match counts.iter().find(|(n, _)| *n == name) {
        Some((_, value)) => *value,
        None => panic!("no count {name} in {counts:?}"),
    }
}

#[migrator::test(postgres, sqlite, sql_migrations = DEMO_SQL, migrations = "none")]
fn before_001_every_password_is_plaintext(conn: &mut AnyConnection) -> Result<()> {
    assert!(!has_column(conn, "user_profiles", "kroger_password_hash")?);
    let plain = count(
        conn,
        "SELECT COUNT(kroger_password) AS n FROM user_profiles",
    )?;
    assert_eq!(plain as u64, USERS);
    Ok(())
}

#[migrator::test(
    postgres,
    sqlite,
    sql_migrations = DEMO_SQL,
    backfills = "inline",
    setup = fast_hashing
)]
fn after_001_every_row_verifies(db: Database) -> Result<()> {
    let counts = counts(&db, true)?;
    assert_eq!(count_of(&counts, "hashed_passwords"), USERS, "{counts:?}");
    assert_eq!(count_of(&counts, "remaining"), 0, "{counts:?}");
    assert_eq!(count_of(&counts, "hashes_verified"), USERS, "{counts:?}");
    Ok(())
}

#[migrator::test(
    postgres,
    sqlite,
    sql_migrations = DEMO_SQL,
    backfills = "inline",
    setup = fast_hashing
)]
fn after_001_users_log_in_with_their_passwords(conn: &mut AnyConnection) -> Result<()> {
    let hasher = kroger::hasher()?;
    let right = kroger::verify_kroger_password(conn, &hasher, 4, &Password::new("kroger-demo-4"))?;
    assert!(
        matches!(
            right,
            Verification::Verified {
                upgraded: false,
                ..
            }
        ),
        "{right:?}"
    );
    let wrong = kroger::verify_kroger_password(conn, &hasher, 4, &Password::new("kroger-demo-5"))?;
    assert!(matches!(wrong, Verification::Mismatch), "{wrong:?}");
    // A new password is stored as a hash only.
    assert!(kroger::set_kroger_password(
        conn,
        &hasher,
        7,
        &Password::new("a new one")
    )?);
    let plain = count(
        conn,
        "SELECT COUNT(*) AS n FROM user_profiles WHERE id = 7 AND kroger_password IS NULL \
         AND kroger_password_hash IS NOT NULL",
    )?;
    assert_eq!(plain, 1);
    Ok(())
}

#[migrator::test(
    postgres,
    sqlite,
    sql_migrations = DEMO_SQL,
    backfills = "background",
    setup = fast_hashing
)]
fn with_001_in_the_background_the_app_works_until_the_workers_finish(db: Database) -> Result<()> {
    let state = backfill::get(&db, kroger::HASH_KROGER_PASSWORDS_BACKFILL)?;
    assert!(
        state
            .as_ref()
            .is_some_and(|s| s.status == BackfillStatus::Active),
        "{state:?}"
    );
    // Meanwhile an unhashed row still logs in (by its plaintext), and gets its hash.
    let hasher = kroger::hasher()?;
    let mut conn = db.get()?;
    let login =
        kroger::verify_kroger_password(&mut conn, &hasher, 9, &Password::new("kroger-demo-9"))?;
    assert!(
        matches!(login, Verification::Verified { upgraded: true, .. }),
        "{login:?}"
    );
    drop(conn);
    let stop = std::sync::atomic::AtomicBool::new(false);
    Workers::run_until_idle(db.clone(), &Config::new(Environment::Development), 2, &stop)?;
    let counts = counts(&db, true)?;
    assert_eq!(count_of(&counts, "remaining"), 0, "{counts:?}");
    assert_eq!(count_of(&counts, "hashes_verified"), USERS, "{counts:?}");
    Ok(())
}

#[migrator::test(
    postgres,
    sqlite,
    sql_migrations = DEMO_SQL,
    backfills = "inline",
    setup = fast_hashing
)]
fn running_001_again_changes_nothing(db: Database) -> Result<()> {
    // As after an interrupted run that an operator marks pending: 001 is idempotent.
    let config = Config::new(Environment::Development);
    let migrator = Migrator::from_registry()?;
    let before = db.get()?.batch_execute(
        "CREATE TABLE hashes_before AS SELECT id, kroger_password_hash FROM user_profiles",
    );
    before?;
    migrator.mark(
        &db,
        &config,
        HASH_KROGER_PASSWORDS,
        migrator::plan::MarkAs::Pending,
    )?;
    let mut config = config;
    config.set_backfill_mode(migrator::config::BackfillMode::Inline);
    migrator.run(&db, &config)?;
    let changed = count(
        &mut *db.get()?,
        "SELECT COUNT(*) AS n FROM user_profiles u JOIN hashes_before b ON b.id = u.id \
         WHERE b.kroger_password_hash <> u.kroger_password_hash",
    )?;
    assert_eq!(changed, 0);
    Ok(())
}
