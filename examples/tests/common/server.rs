//! The demo server as a child process: started on a free loopback port with cheap Argon2
//! parameters and a log file, killed if a test fails.

#![allow(
    unsafe_code,
    reason = "libc calls on our own child processes and descriptors; each block says why it is sound"
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http::{self, Response};

/// A running server; killed if the test fails.
#[derive(Debug)]
pub struct Server {
    /// The server process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo server binary.
pub const SERVER: &str = env!("CARGO_BIN_EXE_smart-meal-planner");

/// Starts the server in `dir` with `env` on top of the defaults (cheap Argon2, batches of 50,
/// a log file in `dir`).
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    spawn(dir, &[("MIGRATION_BATCH_SIZE", "50")], env)
}

/// Starts the server in `dir` with exactly `env` (plus its port, cheap Argon2 and a log file):
/// the app's own batch size, for tests that only need its `/health`.
pub fn start_plain(dir: &Path, env: &[(&str, &str)]) -> Server {
    spawn(dir, &[], env)
}

fn spawn(dir: &Path, defaults: &[(&str, &str)], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = dir.join(format!("server-{port}.log"));
    let child = super::isolated(SERVER)
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("ARGON2_MEMORY_KIB", "2048")
        .env("ARGON2_ITERATIONS", "1")
        .envs(defaults.iter().copied())
        .env("LOG_FILE", &log)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo server");
    Server { child, port, log }
}

impl Server {
    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/health` until start-up is over (any answer but `migrating`), within 120 s.
    pub fn settled_health(&mut self) -> Response {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(exit) = self.child.try_wait().expect("poll the demo server") {
                panic!("the demo server exited ({exit}):\n{}", self.log());
            }
            if let Some(r) = http::get(self.port, "/health") {
                let migrating = serde_json::from_str::<serde_json::Value>(&r.body)
                    .is_ok_and(|body| body["status"] == "migrating");
                if !migrating {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "/health still migrating or silent after 120 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls /health until `want` (bounded); returns the statuses seen on the way.
    pub fn wait_for(&mut self, want: &str) -> (Response, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("the server exited ({exit}) before {want}:\n{}", self.log());
            }
            if let Some(r) = http::get(self.port, "/health") {
                let status = r.json()["status"].as_str().unwrap_or("").to_owned();
                if seen.last() != Some(&status) {
                    seen.push(status.clone());
                }
                if status == want {
                    return (r, seen);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {want} in time; saw {seen:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits (bounded) for the server to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server kept running:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit code, which must come within `within` (else a panic with the
    /// log): a bound on shutdown, such as an orchestrator's grace period before its SIGKILL.
    pub fn terminate_within(mut self, within: Duration) -> i32 {
        self.sigterm();
        self.wait_exit(within).code().unwrap_or(-1)
    }

    /// SIGTERM, then its exit code.
    pub fn terminate(mut self) -> i32 {
        self.sigterm();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }
}
