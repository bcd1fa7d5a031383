//! What `migrator::password` is measured against: the argon2 crate (the hasher before the SIMD
//! kernels: reused memory per thread, or a fresh allocation per hash) and argon2-cffi (the
//! reference C through Python, one process per core), plus the CPU the figures come from.

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Block, Version};
use migrator::password::Params;

use crate::rate;

thread_local! {
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes per second of the argon2 crate (Argon2id, 32-byte output) on `threads` threads for
/// about `duration`, reusing one memory block per thread (`reuse`, as `migrator::password` did
/// before its own kernels) or allocating per hash.
pub fn argon2_crate_rate(params: Params, threads: usize, duration: Duration, reuse: bool) -> f64 {
    let argon2 = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .expect("valid parameters"),
    );
    rate(threads, duration, |t| {
        let password = format!("raw-rate-{t}");
        let mut out = [0u8; 32];
        if reuse {
            MEMORY.with(|memory| {
                let mut memory = memory.borrow_mut();
                let needed = argon2.params().block_count();
                if memory.len() < needed {
                    memory.resize(needed, Block::new());
                }
                argon2
                    .hash_password_into_with_memory(
                        password.as_bytes(),
                        b"a 16-byte salt!!",
                        &mut out,
                        &mut memory[..needed],
                    )
                    .expect("argon2");
            });
        } else {
            argon2
                .hash_password_into(password.as_bytes(), b"a 16-byte salt!!", &mut out)
                .expect("argon2");
        }
    })
}

/// Counts argon2-cffi hashes (PasswordHasher.hash: random salt, PHC string, as ours) for
/// argv[4] seconds with m, t, p from argv[1..4], and prints "COUNT SECONDS".
const CFFI_RATE: &str = r#"
import sys, time, argon2
m, t, p, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ph = argon2.PasswordHasher(time_cost=t, memory_cost=m, parallelism=p)
ph.hash("warm-up")
n, start = 0, time.perf_counter()
while time.perf_counter() - start < secs:
    ph.hash("raw-rate")
    n += 1
print(n, time.perf_counter() - start)
"#;

/// Hashes per second of argon2-cffi on `processes` Python processes at once, or why not.
pub fn argon2_cffi_rate(
    params: Params,
    processes: usize,
    duration: Duration,
) -> Result<f64, String> {
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new("python3")
                .args(["-c", CFFI_RATE])
                .arg(params.memory_kib.to_string())
                .arg(params.iterations.to_string())
                .arg(params.parallelism.to_string())
                .arg(duration.as_secs_f64().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run python3: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0.0;
    for child in children {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("python3: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        match (out.status.success(), fields.next(), fields.next()) {
            (true, Some(Ok(n)), Some(Ok(secs))) if secs > 0.0 => total += n / secs,
            _ => {
                return Err(format!(
                    "argon2-cffi not usable (run scripts/setup): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
    Ok(total)
}

/// The CPU model and its AVX2 / AVX-512F flags, from /proc/cpuinfo.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    format!(
        "{} (avx2: {}, avx512f: {})",
        field("model name"),
        if has("avx2") { "yes" } else { "no" },
        if has("avx512f") { "yes" } else { "no" }
    )
}
