//! Argon2 parameters: one set of bounds, checked when `ARGON2_*` are read (exit 2 naming the
//! variable, before anything is written) and when a stored hash is verified, so that every
//! hash made here also verifies here.

use crate::common;

use argon2::password_hash::{PasswordHasher, SaltString};
use common::{isolated, try_count, users, TestDb};
use migrator::connection::has_column;
use migrator::password::{vars, Hasher, Params, Password};
use migrator::{connection::Backend, Error};

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");
const ROWS: i64 = 12;

fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

/// Values of `ARGON2_*` that Argon2 can hash with but this crate could not verify (or that
/// Argon2 refuses), each with the variable the error must name.
const OUT_OF_BOUNDS: [(&[(&str, &str)], &str); 6] = [
    (&[("ARGON2_ITERATIONS", "65")], "ARGON2_ITERATIONS"),
    (&[("ARGON2_MEMORY_KIB", "1048577")], "ARGON2_MEMORY_KIB"),
    (&[("ARGON2_PARALLELISM", "65")], "ARGON2_PARALLELISM"),
    (&[("ARGON2_MEMORY_KIB", "7")], "ARGON2_MEMORY_KIB"),
    (
        &[("ARGON2_MEMORY_KIB", "31"), ("ARGON2_PARALLELISM", "4")],
        "ARGON2_MEMORY_KIB",
    ),
    (&[("ARGON2_ITERATIONS", "4294967295")], "ARGON2_ITERATIONS"),
];

#[test]
fn out_of_bounds_values_are_configuration_errors_naming_the_variable() {
    for (env, variable) in OUT_OF_BOUNDS {
        let err = Params::from_lookup(lookup(env)).unwrap_err();
        assert!(
            matches!(&err, Error::VariableOutOfRange { variable: v, .. } if *v == variable),
            "{env:?}: {err:?}"
        );
        assert!(err.is_configuration(), "{env:?}: {err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid {variable} value ")),
            "{env:?}: {err}"
        );
    }
    let err = Params::from_lookup(lookup(&[("ARGON2_ITERATIONS", "65")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ARGON2_ITERATIONS value 65: expected a whole number from 1 to 64"
    );
    let err = Params::from_lookup(lookup(&[
        ("ARGON2_MEMORY_KIB", "31"),
        ("ARGON2_PARALLELISM", "4"),
    ]))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ARGON2_MEMORY_KIB value 31: expected a whole number from 32 to 1048576 \
         (8 KiB per lane of ARGON2_PARALLELISM)"
    );

    // The edges themselves are accepted.
    let edges = Params::from_lookup(lookup(&[
        ("ARGON2_MEMORY_KIB", "1048576"),
        ("ARGON2_ITERATIONS", "64"),
        ("ARGON2_PARALLELISM", "64"),
    ]))
    .unwrap();
    assert_eq!(
        (edges.memory_kib, edges.iterations, edges.parallelism),
        (
            *Params::MEMORY_KIB.end(),
            *Params::ITERATIONS.end(),
            *Params::PARALLELISM.end()
        )
    );
    assert!(Params::from_lookup(lookup(&[("ARGON2_MEMORY_KIB", "8")])).is_ok());
}

#[test]
fn the_bounds_agree_with_what_argon2_accepts() {
    let argon2_accepts = |m, t, p| argon2::Params::new(m, t, p, Some(32)).is_ok();
    let ours_accept = |m: u32, t: u32, p: u32| {
        let (m, t, p) = (m.to_string(), t.to_string(), p.to_string());
        let env = [
            (vars::ARGON2_MEMORY_KIB, m.as_str()),
            (vars::ARGON2_ITERATIONS, t.as_str()),
            (vars::ARGON2_PARALLELISM, p.as_str()),
        ];
        Params::from_lookup(lookup(&env)).is_ok()
    };
    // Whatever we accept, Argon2 accepts; below our minimums Argon2 refuses too, so the
    // lower bounds are Argon2's own.
    for p in Params::PARALLELISM {
        let least = (p * Params::MIN_MEMORY_KIB_PER_LANE).max(*Params::MEMORY_KIB.start());
        for (m, t) in [
            (least, 1),
            (least, *Params::ITERATIONS.end()),
            (*Params::MEMORY_KIB.end(), 1),
        ] {
            assert!(ours_accept(m, t, p), "m={m} t={t} p={p}");
            assert!(argon2_accepts(m, t, p), "m={m} t={t} p={p}");
        }
        assert!(!ours_accept(least - 1, 1, p), "m={} p={p}", least - 1);
        assert!(!argon2_accepts(least - 1, 1, p), "m={} p={p}", least - 1);
    }
    assert!(!ours_accept(8, 0, 1) && !argon2_accepts(8, 0, 1));
}

/// A PHC string made by the argon2 crate itself, with parameters this crate would refuse.
fn foreign_hash(password: &str, m: u32, t: u32, p: u32) -> String {
    let params = argon2::Params::new(m, t, p, Some(32)).unwrap();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(&[7; 16]).unwrap();
    argon2
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[test]
fn hashes_at_the_bounds_verify_and_beyond_them_none_is_made() {
    let password = Password::new("correct horse");
    let wrong = Password::new("wrong horse");
    // The cheap corners of the bounds (1 GiB is accepted above, not allocated here).
    for (memory_kib, iterations, parallelism) in [(8, 64, 1), (512, 1, 64), (512, 64, 64)] {
        let hasher = Hasher::new(Params {
            memory_kib,
            iterations,
            parallelism,
        })
        .unwrap();
        let hashed = hasher.hash(&password).unwrap();
        assert!(hasher.verify(&password, &hashed.phc).unwrap(), "{hashed:?}");
        assert!(!hasher.verify(&wrong, &hashed.phc).unwrap(), "{hashed:?}");
    }
    // One step beyond: no hasher is made, and a hash made elsewhere is refused by verify.
    let verifier = Hasher::new(Params::default()).unwrap();
    for (m, t, p, shown) in [
        (8, 65, 1, "t=65 is not from 1 to 64"),
        (520, 1, 65, "p=65 is not from 1 to 64"),
    ] {
        let err = Hasher::new(Params {
            memory_kib: m,
            iterations: t,
            parallelism: p,
        })
        .unwrap_err();
        assert!(matches!(err, Error::Hashing { .. }), "{err:?}");
        assert!(err.to_string().contains(shown), "{err}");
        let phc = foreign_hash("correct horse", m, t, p);
        let err = verifier.verify(&password, &phc).unwrap_err();
        assert!(matches!(err, Error::InvalidPasswordHash { .. }), "{err:?}");
        assert!(err.to_string().contains(shown), "{err}");
    }
    let beyond = "$argon2id$v=19$m=1048577,t=1,p=1$BwcHBwcHBwcHBwcHBwcHBw$\
                  aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let err = verifier.verify(&password, beyond).unwrap_err();
    assert!(
        err.to_string()
            .contains("m=1048577 is not from 8 to 1048576"),
        "{err}"
    );
}

/// `up`, `verify --check-hashes` and `work` with each out-of-bounds value: exit 2 naming the
/// variable, and nothing written (no new column, no row updated, no tracking row).
fn the_cli_refuses_before_writing(backend: Backend) {
    let t = TestDb::new(backend);
    let db = t.connect();
    users::seed(&db, backend, ROWS);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = isolated(CLI)
            .args(args)
            .env("DATABASE_URL", &t.url)
            .env("ENVIRONMENT", "development")
            .env("ARGON2_MEMORY_KIB", "256")
            .env("ARGON2_ITERATIONS", "1")
            .env("MIGRATION_WORKER_THREADS", "1")
            .env("MIGRATION_LOCK_TIMEOUT_SECS", "1")
            .envs(env.iter().copied())
            .output()
            .expect("run the CLI");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let untouched = || {
        let mut conn = db.get().unwrap();
        assert!(
            !has_column(&mut conn, "user_profiles", "kroger_password_hash").unwrap(),
            "the schema changed"
        );
        drop(conn);
        assert_eq!(users::updates(&db), (0, 0), "rows were updated");
        let tracked = try_count(&db, "SELECT COUNT(*) AS n FROM applied_migrations");
        assert!(matches!(tracked, None | Some(0)), "{tracked:?}");
    };
    for (env, variable) in OUT_OF_BOUNDS {
        for args in [
            &["up", "--yes"][..],
            &["verify", "--check-hashes"],
            &["work"],
        ] {
            let (code, err) = run(args, env);
            assert_eq!(code, Some(2), "{args:?} with {env:?}: {err}");
            assert!(
                err.contains(&format!("invalid {variable} value")),
                "{args:?} with {env:?}: {err}"
            );
            untouched();
        }
    }
    // The same database migrates with parameters inside the bounds.
    let (code, err) = run(&["up", "--yes"], &[("ARGON2_ITERATIONS", "64")]);
    assert_eq!(code, Some(0), "{err}");
    users::assert_each_updated_once(&db, ROWS);
    let (code, err) = run(
        &["verify", "--check-hashes"],
        &[("ARGON2_ITERATIONS", "64")],
    );
    assert_eq!(code, Some(0), "{err}");
}

both!(the_cli_refuses_before_writing);
