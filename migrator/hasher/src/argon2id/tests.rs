//! Known answers (RFC 9106, the reference C's test.c) and differential tests against the argon2
//! crate, for every kernel this CPU has (the portable one always among them), with the lanes
//! filled one after another and on 2 to `p` threads.

use super::*;
use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Options with the lanes on exactly `threads` threads (as many as there are lanes at most).
pub(super) fn on(threads: usize, reuse: bool) -> Options {
    Options {
        reuse,
        threads: LaneThreads::Exactly(threads),
        wipe: true,
        huge_pages: true,
    }
}

pub(super) fn ours(
    kernel: Kernel,
    costs: Costs,
    inputs: &Inputs<'_>,
    len: usize,
    options: Options,
) -> Vec<u8> {
    let mut out = vec![0u8; len];
    hash(kernel, costs, inputs, &mut out, options).unwrap();
    out
}

pub(super) fn oracle(costs: Costs, inputs: &Inputs<'_>, len: usize) -> Vec<u8> {
    let params = ParamsBuilder::new()
        .m_cost(costs.memory_kib)
        .t_cost(costs.iterations)
        .p_cost(costs.lanes)
        .output_len(len)
        .data(AssociatedData::new(inputs.associated_data).unwrap())
        .build()
        .unwrap();
    let argon2 =
        Argon2::new_with_secret(inputs.secret, Algorithm::Argon2id, Version::V0x13, params)
            .unwrap();
    let mut out = vec![0u8; len];
    argon2
        .hash_password_into(inputs.password, inputs.salt, &mut out)
        .unwrap();
    out
}

#[test]
fn the_rfc_9106_argon2id_test_vector_on_every_kernel() {
    let (password, salt, secret, data) = ([1u8; 32], [2u8; 16], [3u8; 8], [4u8; 12]);
    let inputs = Inputs {
        password: &password,
        salt: &salt,
        secret: &secret,
        associated_data: &data,
    };
    let costs = Costs {
        memory_kib: 32,
        iterations: 3,
        lanes: 4,
    };
    // RFC 9106 section 5.3; the same as phc-winner-argon2's kats/argon2id.
    let tag = "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659";
    for kernel in Kernel::supported() {
        for reuse in [true, false] {
            for threads in 1..=4 {
                assert_eq!(
                    hex(&ours(kernel, costs, &inputs, 32, on(threads, reuse))),
                    tag,
                    "{kernel}, {threads} threads"
                );
            }
        }
    }
}

#[test]
fn the_reference_implementations_known_answers_on_every_kernel() {
    // phc-winner-argon2 src/test.c, Argon2id version 0x13: (t, log2 m, p, password, salt, tag).
    let cases = [
        (
            2,
            16,
            1,
            "password",
            "somesalt",
            "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7",
        ),
        (
            2,
            18,
            1,
            "password",
            "somesalt",
            "78fe1ec91fb3aa5657d72e710854e4c3d9b9198c742f9616c2f085bed95b2e8c",
        ),
        (
            2,
            8,
            1,
            "password",
            "somesalt",
            "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe",
        ),
        (
            2,
            8,
            2,
            "password",
            "somesalt",
            "6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037",
        ),
        (
            1,
            16,
            1,
            "password",
            "somesalt",
            "f6a5adc1ba723dddef9b5ac1d464e180fcd9dffc9d1cbf76cca2fed795d9ca98",
        ),
        (
            4,
            16,
            1,
            "password",
            "somesalt",
            "9025d48e68ef7395cca9079da4c4ec3affb3c8911fe4f86d1a2520856f63172c",
        ),
        (
            2,
            16,
            1,
            "differentpassword",
            "somesalt",
            "0b84d652cf6b0c4beaef0dfe278ba6a80df6696281d7e0d2891b817d8c458fde",
        ),
        (
            2,
            16,
            1,
            "password",
            "diffsalt",
            "bdf32b05ccc42eb15d58fd19b1f856b113da1e9a5874fdcc544308565aa8141c",
        ),
    ];
    for kernel in Kernel::supported() {
        for (t, log_m, p, password, salt, tag) in cases {
            let inputs = Inputs {
                password: password.as_bytes(),
                salt: salt.as_bytes(),
                secret: &[],
                associated_data: &[],
            };
            let costs = Costs {
                memory_kib: 1 << log_m,
                iterations: t,
                lanes: p,
            };
            let got = hex(&ours(kernel, costs, &inputs, 32, on(p as usize, true)));
            assert_eq!(
                got, tag,
                "{kernel} t={t} m=2^{log_m} p={p} {password} {salt}"
            );
        }
    }
}

/// splitmix64: a small deterministic generator, so that a failure names a reproducible seed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub(super) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    pub(super) fn bytes(&mut self, low: usize, high: usize) -> Vec<u8> {
        let len = self.range(low as u64, high as u64) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Memory between `8 * lanes` and `2^max_log` KiB, spread evenly over the powers of two.
    pub(super) fn memory(&mut self, lanes: u32, max_log: u64) -> u32 {
        let log = self.range(3, max_log);
        let m = self.range(1 << (log - 1), 1 << log) as u32;
        m.max(8 * lanes)
    }
}

/// `cases` random inputs with memory up to `2^max_log` KiB and 1 to 8 lanes, on every kernel,
/// with the lanes on 1 to `p` threads (or as many as the cores spare), against the crate.
fn differential(seed: u64, cases: usize, max_log: u64) {
    let mut rng = Rng(seed);
    let kernels = Kernel::supported();
    for case in 0..cases {
        let lanes = rng.range(1, 8) as u32;
        let costs = Costs {
            memory_kib: rng.memory(lanes, max_log),
            iterations: rng.range(1, 4) as u32,
            lanes,
        };
        let password = rng.bytes(0, 128);
        let salt = rng.bytes(8, 48);
        let (secret, data) = if rng.range(0, 9) == 0 {
            (rng.bytes(0, 32), rng.bytes(0, 32))
        } else {
            (Vec::new(), Vec::new())
        };
        let len = rng.range(4, 160) as usize;
        let inputs = Inputs {
            password: &password,
            salt: &salt,
            secret: &secret,
            associated_data: &data,
        };
        let expected = oracle(costs, &inputs, len);
        for &kernel in &kernels {
            let reuse = rng.range(0, 3) != 0;
            let threads = match rng.range(0, u64::from(lanes)) {
                0 => LaneThreads::Auto,
                n => LaneThreads::Exactly(n as usize),
            };
            let options = Options {
                reuse,
                threads,
                wipe: true,
                // Half the cases on 4 KiB pages (the reused memory is remade for them).
                huge_pages: case % 2 == 0,
            };
            let got = ours(kernel, costs, &inputs, len, options);
            assert!(
                got == expected,
                "{kernel} differs from the argon2 crate: seed {seed:#x}, case {case}, {costs:?}, \
                 output {len} bytes, password {} bytes, salt {} bytes, secret {} bytes, data {} \
                 bytes, {options:?}",
                password.len(),
                salt.len(),
                secret.len(),
                data.len()
            );
        }
    }
}

/// `MIGRATOR_ARGON2_SEED` (hexadecimal), else `default`.
fn seed(default: u64) -> u64 {
    std::env::var("MIGRATOR_ARGON2_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(default)
}

/// `MIGRATOR_ARGON2_CASES` (scripts/memcheck runs fewer under valgrind), else `default`.
fn cases(default: usize) -> usize {
    std::env::var("MIGRATOR_ARGON2_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn thousands_of_small_random_hashes_match_the_argon2_crate_on_every_kernel() {
    differential(seed(0x5eed_0001), cases(3000), 10);
}

#[test]
fn random_hashes_up_to_64_mib_match_the_argon2_crate_on_every_kernel() {
    differential(seed(0x5eed_0002), 48, 16);
}

#[test]
fn a_kernel_this_cpu_lacks_is_refused_with_its_name() {
    for kernel in Kernel::ALL {
        let costs = Costs {
            memory_kib: 8,
            iterations: 1,
            lanes: 1,
        };
        let inputs = Inputs {
            password: b"pw",
            salt: b"saltsalt",
            secret: &[],
            associated_data: &[],
        };
        let result = hash(kernel, costs, &inputs, &mut [0u8; 32], Options::default());
        match result {
            Ok(()) => assert!(kernel.is_supported()),
            Err(e) => {
                assert!(!kernel.is_supported());
                assert!(e.to_string().contains(kernel.name()), "{e}");
            }
        }
    }
}

#[test]
fn inputs_outside_rfc_9106_are_errors_not_panics() {
    let inputs = |salt: &'static [u8]| Inputs {
        password: b"pw",
        salt,
        secret: &[],
        associated_data: &[],
    };
    let costs = |memory_kib, iterations, lanes| Costs {
        memory_kib,
        iterations,
        lanes,
    };
    for (costs, salt, len) in [
        (costs(8, 1, 1), &b"short"[..], 32),
        (costs(8, 1, 1), &b"saltsalt"[..], 3),
        (costs(8, 0, 1), &b"saltsalt"[..], 32),
        (costs(8, 1, 0), &b"saltsalt"[..], 32),
        (costs(15, 1, 2), &b"saltsalt"[..], 32),
    ] {
        let mut out = vec![0u8; len];
        let err = hash(
            Kernel::Portable,
            costs,
            &inputs(salt),
            &mut out,
            Options::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid Argon2id inputs"), "{err}");
    }
}
