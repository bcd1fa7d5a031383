//! Unit tests of the password API: parameters, hashing, verification, rehash decisions.

use super::*;
use argon2::{PasswordHasher, PasswordVerifier};

/// splitmix64: a small deterministic generator, so that a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// Memory between `8 * lanes` and `2^max_log` KiB, spread evenly over the powers of two.
    fn memory(&mut self, lanes: u32, max_log: u64) -> u32 {
        let log = self.range(3, max_log);
        let m = self.range(1 << (log - 1), 1 << log) as u32;
        m.max(8 * lanes)
    }
}

fn fast() -> Hasher {
    Hasher::new(Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap()
}

#[test]
fn hashes_verify_here_and_with_the_reference_verifier() {
    let hasher = Hasher::new(Params::default()).unwrap();
    for plaintext in [
        "",
        " spaced ",
        "ünïcødé 🔑",
        &"x".repeat(10_000),
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA",
    ] {
        let password = Password::new(plaintext);
        let hashed = hasher.hash(&password).unwrap();
        assert!(hasher.verify(&password, &hashed.phc).unwrap());
        assert!(!hasher
            .verify(&Password::new(format!("{plaintext}x")), &hashed.phc)
            .unwrap());
        let parsed = PasswordHash::new(&hashed.phc).unwrap();
        assert_eq!(parsed.salt.unwrap().as_str(), hashed.salt);
        Argon2::default()
            .verify_password(plaintext.as_bytes(), &parsed)
            .expect("the reference implementation verifies our hash");
    }
}

#[test]
fn salts_are_random_and_sixteen_bytes() {
    let hasher = fast();
    let a = hasher.hash(&Password::new("same")).unwrap();
    let b = hasher.hash(&Password::new("same")).unwrap();
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.phc, b.phc);
    let mut buf = [0u8; 64];
    let salt = SaltString::from_b64(&a.salt).unwrap();
    assert_eq!(salt.decode_b64(&mut buf).unwrap().len(), SALT_LEN);
}

#[test]
fn reused_and_fresh_memory_give_the_same_hash() {
    let hasher = fast();
    let password = Password::new("pw");
    let reused = hasher.hash_with_salt(&password, &[7; 16]).unwrap();
    let again = hasher.hash_with_salt(&password, &[7; 16]).unwrap();
    assert_eq!(reused, again);
    let fresh = hasher.hash_without_memory_reuse(&password).unwrap();
    assert!(hasher.verify(&password, &fresh.phc).unwrap());
}

#[test]
fn old_parameters_verify_and_need_a_rehash() {
    let old = fast();
    let new = Hasher::new(Params::default()).unwrap();
    let password = Password::new("pw");
    let hashed = old.hash(&password).unwrap();
    assert!(new.verify(&password, &hashed.phc).unwrap());
    assert!(new.needs_rehash(&hashed.phc));
    assert!(!old.needs_rehash(&hashed.phc));
    assert!(new.needs_rehash("not a hash"));
    let bcrypt_like = "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234";
    assert!(new.needs_rehash(bcrypt_like));
    assert!(new.verify(&password, "plaintext-looking").is_err());
    // Stored data cannot make the verifier allocate terabytes.
    let huge = "$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
    let err = new.verify(&password, huge).unwrap_err().to_string();
    assert!(
        err.contains("m=4294967295 is not from 8 to 1048576"),
        "{err}"
    );
}

#[test]
fn the_plaintext_never_shows() {
    let password = Password::new("hunter2");
    assert_eq!(format!("{password:?}"), "Password(***)");
    assert!(plaintext_matches("hunter2", &password));
    assert!(!plaintext_matches("hunter3", &password));
    assert!(!plaintext_matches("hunter", &password));
    assert!(!plaintext_matches("hunter22", &password));
    assert!(plaintext_matches("", &Password::new("")));
    assert!(!plaintext_matches("", &password));
    let long = "k".repeat(10_000);
    assert!(plaintext_matches(&long, &Password::new(long.clone())));
    assert!(!plaintext_matches(&long, &Password::new(&long[1..])));
}

#[test]
fn parameters_from_the_environment_are_strict() {
    let params =
        Params::from_lookup(|name| (name == vars::ARGON2_MEMORY_KIB).then(|| "65536".to_owned()))
            .unwrap();
    assert_eq!(params.memory_kib, 65_536);
    assert_eq!(params.iterations, 2);
    let err =
        Params::from_lookup(|name| (name == vars::ARGON2_ITERATIONS).then(|| "two".to_owned()))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ARGON2_ITERATIONS value \"two\": expected a whole number greater than 0"
    );
    let err = Params::from_lookup(|name| (name == vars::ARGON2_MEMORY_KIB).then(|| "1".to_owned()))
        .unwrap_err();
    assert!(err.is_configuration(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid ARGON2_MEMORY_KIB value 1: expected a whole number from 8 to 1048576"
    );
}

#[test]
fn hashing_and_verifying_leave_the_reused_memory_zero() {
    for parallelism in [1, 4] {
        let hasher = Hasher::new(Params {
            memory_kib: 256,
            iterations: 2,
            parallelism,
        })
        .unwrap();
        let password = Password::new("pw");
        let hashed = hasher.hash(&password).unwrap();
        assert_eq!(engine::reused_memory(), (256, true), "p={parallelism}");
        assert!(hasher.verify(&password, &hashed.phc).unwrap());
        assert_eq!(engine::reused_memory(), (256, true), "p={parallelism}");
    }
    // A foreign hash (Argon2i) verifies through the argon2 crate, whose memory is wiped too.
    let phc = Argon2::new(
        Algorithm::Argon2i,
        Version::V0x13,
        argon2::Params::new(128, 1, 2, None).unwrap(),
    )
    .hash_password(b"pw", &SaltString::encode_b64(b"saltsalt").unwrap())
    .unwrap()
    .to_string();
    assert!(fast().verify(&Password::new("pw"), &phc).unwrap());
    MEMORY.with(|memory| {
        let memory = memory.borrow();
        assert_eq!(memory.len(), 128);
        assert!(memory
            .iter()
            .all(|block| block.as_ref().iter().all(|w| *w == 0)));
    });
}

#[test]
fn phc_strings_are_byte_identical_to_the_argon2_crates() {
    let mut rng = Rng(0x5eed_0003);
    for case in 0..40 {
        let lanes = rng.range(1, 8) as u32;
        let params = Params {
            memory_kib: rng.memory(lanes, 12),
            iterations: rng.range(1, 4) as u32,
            parallelism: lanes,
        };
        let plaintext: String = (0..rng.range(0, 40))
            .map(|_| char::from_u32(rng.range(0x20, 0x2fff) as u32).unwrap_or('?'))
            .collect();
        let salt: Vec<u8> = (0..16).map(|_| rng.next() as u8).collect();
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            argon2::Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                Some(32),
            )
            .unwrap(),
        )
        .hash_password(
            plaintext.as_bytes(),
            &SaltString::encode_b64(&salt).unwrap(),
        )
        .unwrap()
        .to_string();
        for kernel in Kernel::supported() {
            let hasher = Hasher::new(params).unwrap().with_kernel(kernel).unwrap();
            let ours = hasher.hash_with_salt(&Password::new(plaintext.as_str()), &salt);
            assert_eq!(
                ours.unwrap().phc,
                theirs,
                "{kernel}, case {case}, {params:?}"
            );
        }
    }
}
