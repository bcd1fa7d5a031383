//! No Kroger plaintext reaches the PostgreSQL server log. With `log_statement = 'all'` the
//! server logs every statement with its bind parameters (`DETAIL:  parameters: $1 = '...'`),
//! as `log_min_duration_statement` and pgaudit also do: the backfill, setting a password,
//! verification with upgrade and rehash, and `verify --clear-verified-plaintext` must leave no
//! seeded plaintext there.

use crate::common;

use common::users::{self, assert_no_plaintext};
use common::{cluster, count, exec, log_all_statements, TestDb};
use migrator::password::{Hasher, Params, Password};
use migrator::{config::Environment, connection::Backend, Config, Migrator};
use smart_meal_planner::commands::VerifyOptions;
use smart_meal_planner::kroger::{self, Verification};

const ROWS: i64 = 300;
const NEW_PASSWORD: &str = "n3w-Kroger-pw-in-log-test";

#[test]
fn no_plaintext_reaches_the_postgres_server_log() {
    kroger::set_hash_params(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    let t = TestDb::new(Backend::Postgres);
    {
        // Seeding binds the plaintexts; its sessions end before logging starts.
        let seeding = t.connect();
        users::seed(&seeding, Backend::Postgres, ROWS);
    }
    let cluster = cluster();
    log_all_statements(&t.url);
    let from = cluster.log().len();
    let db = t.connect();

    // The backfill of migration 001 reads every plaintext and writes its hash.
    let report = Migrator::from_registry()
        .unwrap()
        .run(&db, &Config::new(Environment::Development))
        .unwrap();
    assert_eq!(report.migrations.len(), 1, "{report:?}");

    let hasher = kroger::hasher().unwrap();
    let stronger = Hasher::new(Params {
        memory_kib: 512,
        iterations: 2,
        parallelism: 1,
    })
    .unwrap();
    let mut conn = db.get().unwrap();
    let mut verify = |hasher: &Hasher, id: i64| {
        let password = Password::new(format!("kp-{id}-secret"));
        kroger::verify_kroger_password(&mut conn, hasher, id, &password).unwrap()
    };
    // Upgrade: a legacy row (plaintext only) gets its hash.
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password_hash = NULL, kroger_password_salt = NULL \
         WHERE id = 9",
    );
    assert_eq!(
        verify(&hasher, 9),
        Verification::Verified {
            upgraded: true,
            rehashed: false
        }
    );
    // Rehash under new parameters, of a row with its plaintext and of one without.
    assert_eq!(
        verify(&stronger, 10),
        Verification::Verified {
            upgraded: false,
            rehashed: true
        }
    );
    exec(
        &db,
        "UPDATE user_profiles SET kroger_password = NULL WHERE id = 12",
    );
    assert_eq!(
        verify(&stronger, 12),
        Verification::Verified {
            upgraded: false,
            rehashed: true
        }
    );
    // Set.
    assert!(kroger::set_kroger_password(
        &mut db.get().unwrap(),
        &hasher,
        11,
        &Password::new(NEW_PASSWORD)
    )
    .unwrap());
    drop(conn);

    // Verify every hash and clear every verified plaintext.
    let mut options = VerifyOptions::default();
    options.clear_verified_plaintext = true;
    let report = kroger::verify(&db, &options).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        count(&db, "SELECT COUNT(kroger_password) AS n FROM user_profiles"),
        0
    );
    let cleared = report
        .counts
        .iter()
        .find(|(name, _)| *name == "plaintexts_cleared")
        .map(|(_, n)| *n);
    // Every seeded password but user 11's (set) and user 12's (cleared by hand above).
    let seeded = users::secrets(ROWS).len() as u64 + 1; // secrets() leaves out the empty one
    assert_eq!(cleared, Some(seeded - 2));
    drop(db);

    let log = cluster.log();
    let log = log.get(from..).unwrap_or_default();
    // The log holds what this test must search: the writes and their bind parameters.
    for expected in [
        "UPDATE user_profiles SET kroger_password_hash",
        "UPDATE user_profiles SET kroger_password = NULL",
        "DETAIL:  parameters: $1 = ",
        "$argon2id$",
    ] {
        assert!(
            log.contains(expected),
            "the server log has no {expected:?}: is log_statement on?"
        );
    }
    let secrets = users::secrets(ROWS);
    let leaked = secrets.iter().filter(|s| log.contains(s.as_str())).count();
    assert_eq!(
        leaked,
        0,
        "{leaked} of {} seeded plaintexts are in the server log",
        secrets.len()
    );
    assert_no_plaintext(log, ROWS);
    assert!(
        !log.contains(NEW_PASSWORD),
        "the server log contains the new password"
    );
}
