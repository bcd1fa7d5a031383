//! Hashes made by every kernel this CPU has verify with the reference C implementation, through
//! argon2-cffi (Python) and Debian's `argon2` command, whichever are installed (scripts/setup
//! installs both). Neither installed is a failure that says how to install them, never a skip.
//!
//! They cover 1 to 8 lanes. The hashes are made on the test's thread (lanes in parallel on the
//! spare cores) and again by several threads at once (each then mostly fills its lanes itself):
//! the same PHC strings.

use std::io::Write;
use std::process::{Command, Stdio};

use migrator::password::{Hasher, Kernel, Params, Password};

/// (m, t, p): the defaults, a strong setting, and small odd ones, with every lane count from 1
/// to 8 (powers of two for the `argon2` command, whose -m is log2 of the KiB; lanes of a length
/// not a power of two where m is not a multiple of 4p).
const CASES: [(u32, u32, u32); 11] = [
    (16_384, 2, 1),
    (65_536, 3, 4),
    (1_024, 1, 1),
    (4_096, 4, 2),
    (256, 2, 3),
    (32, 1, 4),
    (2_048, 2, 5),
    (512, 1, 6),
    (8_192, 2, 7),
    (1_024, 3, 8),
    (64, 2, 8),
];

// Not empty: the `argon2` command refuses an empty password (the unit tests cover it).
const PASSWORDS: [&str; 4] = ["a", "correct horse battery staple", "ünïcødé 🔑", "x\ty z"];

/// Verifies each line "PASSWORD_HEX SALT_HEX T M P PHC" with argon2-cffi, and hashes the same
/// inputs with it; prints "VERIFIED SAME_STRING WRONG_REJECTED" per line.
const CFFI: &str = r#"
import sys, argon2
from argon2.low_level import hash_secret, Type
ph = argon2.PasswordHasher()
for line in sys.stdin:
    pw, salt, t, m, p, phc = line.split()
    pw, salt = bytes.fromhex(pw[1:]), bytes.fromhex(salt)
    try:
        verified = ph.verify(phc, pw)
    except argon2.exceptions.VerifyMismatchError:
        verified = False
    theirs = hash_secret(pw, salt, int(t), int(m), int(p), 32, Type.ID).decode()
    try:
        ph.verify(phc, pw + b"x")
        rejected = False
    except argon2.exceptions.VerifyMismatchError:
        rejected = True
    print(verified, theirs == phc, rejected)
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Case {
    password: &'static str,
    salt: Vec<u8>,
    params: Params,
    kernel: Kernel,
    phc: String,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for kernel in Kernel::supported() {
        for (i, &(memory_kib, iterations, parallelism)) in CASES.iter().enumerate() {
            let params = Params {
                memory_kib,
                iterations,
                parallelism,
            };
            let hasher = Hasher::new(params).unwrap().with_kernel(kernel).unwrap();
            let password = PASSWORDS[i % PASSWORDS.len()];
            // Printable salts, so that the `argon2` command can take them as an argument.
            let salt = format!("salt-{kernel}-{i}-{memory_kib}").into_bytes();
            let hash = || {
                hasher
                    .hash_with_salt(&Password::new(password), &salt)
                    .unwrap()
                    .phc
            };
            let phc = hash();
            std::thread::scope(|scope| {
                let others: Vec<_> = (0..3).map(|_| scope.spawn(hash)).collect();
                for other in others {
                    assert_eq!(other.join().unwrap(), phc, "{kernel}, {params:?}");
                }
            });
            out.push(Case {
                password,
                salt,
                params,
                kernel,
                phc,
            });
        }
    }
    out
}

fn python_has_argon2_cffi() -> bool {
    Command::new("python3")
        .args(["-c", "import argon2.low_level"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn argon2_command_exists() -> bool {
    Command::new("argon2")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn with_argon2_cffi(cases: &[Case]) {
    let mut child = Command::new("python3")
        .args(["-c", CFFI])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for c in cases {
        let p = &c.params;
        input += &format!(
            "x{} {} {} {} {} {}\n",
            hex(c.password.as_bytes()),
            hex(&c.salt),
            p.iterations,
            p.memory_kib,
            p.parallelism,
            c.phc
        );
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "argon2-cffi failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (c, line) in cases.iter().zip(lines) {
        assert_eq!(
            line, "True True True",
            "argon2-cffi on the {} kernel's hash with {:?}: verified, same PHC string, wrong \
             password rejected",
            c.kernel, c.params
        );
    }
}

fn with_argon2_command(cases: &[Case]) {
    for c in cases {
        let p = &c.params;
        let mut child = Command::new("argon2")
            .arg(String::from_utf8(c.salt.clone()).unwrap())
            .args(["-id", "-e", "-l", "32"])
            .args(["-t", &p.iterations.to_string()])
            .args(["-m", &p.memory_kib.trailing_zeros().to_string()])
            .args(["-p", &p.parallelism.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(c.password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the argon2 command failed");
        let theirs = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            theirs.trim(),
            c.phc,
            "the {} kernel with {:?}",
            c.kernel,
            c.params
        );
    }
}

#[test]
fn every_kernels_hashes_verify_with_the_reference_c_implementation() {
    assert!(CASES.iter().all(|c| c.0.is_power_of_two()));
    let cases = cases();
    let mut checkers = 0;
    if python_has_argon2_cffi() {
        with_argon2_cffi(&cases);
        checkers += 1;
    }
    if argon2_command_exists() {
        with_argon2_command(&cases);
        checkers += 1;
    }
    assert!(
        checkers > 0,
        "neither argon2-cffi (python3 -c 'import argon2') nor the argon2 command is installed: \
         run scripts/setup, or `python3 -m pip install argon2-cffi`, or `apt-get install argon2`"
    );
}
