//! The demo server under test as a child process, for tests that only need its `/health`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::http::{self, Response};

/// A running demo server; killed when dropped.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo server in `dir` with exactly `env` (plus its port and log file).
pub fn start(dir: &Path, env: &[(&str, &str)]) -> Demo {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let log = dir.join(format!("demo-{port}.log"));
    let child = super::isolated(super::server::SERVER)
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("ARGON2_MEMORY_KIB", "2048")
        .env("ARGON2_ITERATIONS", "1")
        .env("LOG_FILE", &log)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo server");
    Demo { child, port, log }
}

impl Demo {
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
}
