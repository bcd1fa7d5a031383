//! Hashing cannot exhaust the demo server's memory or threads (PostgreSQL): 800 concurrent
//! password requests at `ARGON2_MEMORY_KIB=262144` are served by one hashing thread per core
//! behind a bounded queue, the rest answered 429 with `Retry-After`, and the server's peak RSS
//! (`VmHWM`) stays within (cores + 2) x 256 MiB plus a fixed margin. An unknown user is
//! answered 404 without queueing for a hash, even while the queue is full. The figures are
//! printed (`cargo test -p smart-meal-planner --test app hash_pool -- --nocapture`).

use crate::common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{http, server, users, TestDb};
use migrator::connection::Backend;

const MEMORY_KIB: u64 = 262_144;
const REQUESTS: usize = 800;
/// What the server holds besides Argon2 blocks: code, heap, stacks, buffers of 800 requests.
const MARGIN_KIB: u64 = 128 * 1024;

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

#[test]
fn concurrent_password_requests_stay_within_cores_plus_two_argon2_blocks() {
    const ROWS: i64 = 200;
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let dir = tempfile::tempdir().unwrap();
    let memory = MEMORY_KIB.to_string();
    let mut s = server::start(
        dir.path(),
        &[
            ("DATABASE_URL", t.url.as_str()),
            ("ENVIRONMENT", "staging"),
            // 001 schedules its backfill and no worker hashes: only requests do.
            ("MIGRATION_BACKFILL", "background"),
            ("MIGRATION_BACKFILL_THREADS", "0"),
            ("ARGON2_MEMORY_KIB", memory.as_str()),
            ("ARGON2_ITERATIONS", "1"),
            // The queue holds no Argon2 memory, so its length does not move the peak; a short
            // one (the default is 64 per core) keeps this test quick.
            ("HASHING_QUEUE_LIMIT", "32"),
        ],
    );
    s.wait_for("ok");
    let pid = s.child.id();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let before = status_kib(pid, "VmRSS:");

    let barrier = Arc::new(Barrier::new(REQUESTS));
    let port = s.port;
    let started = Instant::now();
    let threads: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let id = 9 + (i as i64 % (ROWS - 9));
                    let (method, path, body) = match i % 10 {
                        // A user that does not exist: 404, never a hash, never 429.
                        9 => (
                            "POST",
                            "/users/1000000/kroger-password/verify".to_owned(),
                            r#"{"password":"x"}"#.to_owned(),
                        ),
                        n if n % 2 == 0 => (
                            "PUT",
                            format!("/users/{id}/kroger-password"),
                            format!(r#"{{"password":"new-{i}"}}"#),
                        ),
                        _ => (
                            "POST",
                            format!("/users/{id}/kroger-password/verify"),
                            format!(r#"{{"password":"kp-{id}-secret"}}"#),
                        ),
                    };
                    barrier.wait();
                    // 800 connects at once can overflow the listen backlog (the kernel drops
                    // or resets some): a request that got no connection at all is sent again,
                    // a few times; every request must still get an answer.
                    let mut r = None;
                    for _ in 0..5 {
                        r = http::request_within(
                            port,
                            method,
                            &path,
                            Some("application/json"),
                            &body,
                            Duration::from_secs(300),
                        );
                        if r.is_some() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    (i, r)
                })
                .unwrap()
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    let mut unknown = 0;
    for thread in threads {
        let (i, r) = thread.join().unwrap();
        let r = r.unwrap_or_else(|| panic!("request {i}: no answer"));
        match (i % 10, r.status) {
            (9, 404) => unknown += 1,
            (9, _) => panic!("unknown user, request {i}: {r:?}"),
            (_, 200) => served += 1,
            // Every 97th user has no Kroger password.
            (_, 404) => served += 1,
            (_, 429) => {
                assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                refused += 1;
            }
            _ => panic!("request {i}: {r:?}\n{}", s.log()),
        }
    }
    let elapsed = started.elapsed();
    let peak = status_kib(pid, "VmHWM:");
    let threads_now = status_kib(pid, "Threads:");
    let bound = (cores + 2) * MEMORY_KIB + MARGIN_KIB;
    println!(
        "hash_pool: {REQUESTS} concurrent requests at ARGON2_MEMORY_KIB={MEMORY_KIB}, {cores} \
         cores: {served} served, {refused} answered 429, {unknown} unknown users (404) in \
         {:.1} s; RSS before {} MiB, peak RSS (VmHWM) {} MiB, bound (cores + 2) x m + {} MiB = \
         {} MiB; server threads after: {threads_now}",
        elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
        MARGIN_KIB / 1024,
        bound / 1024,
    );
    assert_eq!(unknown, REQUESTS / 10);
    assert!(served > 0, "nothing was served");
    assert!(refused > 0, "the queue never filled: no 429");
    assert!(
        peak <= bound,
        "peak RSS {peak} KiB above (cores + 2) x {MEMORY_KIB} + {MARGIN_KIB} KiB = {bound} KiB"
    );
    assert_eq!(s.terminate(), 0);
}
