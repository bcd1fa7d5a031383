//! The three demo processes (this binary re-executed as `child-demo`): started, restarted,
//! killed, their peak RSS read from `/proc/PID/status` (`VmHWM`) before they go.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use migrator_benches::http;
use migrator_benches::pg;

use crate::setup::Env;
use crate::Plan;

/// The operator page's token (`MIGRATION_ADMIN_TOKEN`).
pub(crate) const ADMIN_TOKEN: &str = "soak-admin-token-3c1e";

/// One running demo process.
pub(crate) struct Demo {
    pub name: String,
    pub port: u16,
    child: Child,
}

/// A demo process that is gone: its peak RSS and how it ended.
#[derive(Clone, Debug)]
pub(crate) struct Gone {
    pub name: String,
    pub peak_rss_kib: Option<u64>,
    pub how: String,
    /// Whether it ended as asked (SIGKILL by a fault, or exit 0 on SIGTERM).
    pub clean: bool,
}

struct Slot {
    demo: Option<Demo>,
    ready: bool,
    inflight: Arc<AtomicUsize>,
    generation: usize,
}

/// The three processes and the load's view of them.
pub(crate) struct Fleet {
    slots: Mutex<Vec<Slot>>,
    gone: Mutex<Vec<Gone>>,
    accepting: Arc<AtomicBool>,
    exe: PathBuf,
    dir: PathBuf,
    url: String,
    argon2_kib: u32,
    threads: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `VmHWM` of `pid` in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Fleet {
    pub(crate) fn new(env: &Env, plan: &Plan) -> Result<Fleet, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the soak binary to run the demo: {e}"))?;
        Ok(Fleet {
            slots: Mutex::new(
                (0..3)
                    .map(|_| Slot {
                        demo: None,
                        ready: false,
                        inflight: Arc::new(AtomicUsize::new(0)),
                        generation: 0,
                    })
                    .collect(),
            ),
            gone: Mutex::new(Vec::new()),
            accepting: Arc::new(AtomicBool::new(true)),
            exe,
            dir: env.dir.clone(),
            url: env.app_url.clone(),
            argon2_kib: plan.argon2_kib,
            threads: AtomicUsize::new(0),
        })
    }

    /// False once the run is over: the load sends nothing more.
    pub(crate) fn ready_flag(&self) -> &AtomicBool {
        &self.accepting
    }

    /// The processes that are gone so far.
    pub(crate) fn gone(&self) -> Vec<Gone> {
        lock(&self.gone).clone()
    }

    fn spawn(&self, slot: usize, generation: usize) -> Result<Demo, String> {
        let name = format!("{}{}", ["A", "B", "C"][slot], generation);
        let port = pg::free_port()?;
        let log = self.dir.join(format!("demo-{name}.log"));
        let out = self.dir.join(format!("demo-{name}.out"));
        let out_file = std::fs::File::create(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let err_file = out_file
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", out.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("child-demo");
        for var in migrator::config::vars::ALL
            .iter()
            .chain(migrator::password::vars::ALL.iter())
        {
            cmd.env_remove(var);
        }
        let threads = self.threads.load(Ordering::SeqCst).to_string();
        let kib = self.argon2_kib.to_string();
        let child = cmd
            .env_remove("PGPASSWORD")
            .current_dir(&self.dir)
            .env("DATABASE_URL", &self.url)
            .env("ENVIRONMENT", "staging")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_FILE", &log)
            .env("MIGRATION_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("MIGRATION_BACKFILL", "background")
            .env("MIGRATION_BACKFILL_THREADS", threads)
            .env("MIGRATION_MAX_REPLICA_LAG_SECS", "5")
            .env("MIGRATION_PROGRESS_INTERVAL_SECS", "5")
            .env("ARGON2_MEMORY_KIB", kib)
            .env("ARGON2_ITERATIONS", "1")
            .env("ARGON2_PARALLELISM", "1")
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start demo {name}: {e}"))?;
        Ok(Demo { name, port, child })
    }

    /// Polls `/health` until 200 `ok` (120 s at most); an error at once if it is `degraded`
    /// by a failed start-up migration (it would never be ready).
    fn wait_ready(demo: &mut Demo) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(exit)) = demo.child.try_wait() {
                return Err(format!(
                    "demo {} exited during start-up ({exit})",
                    demo.name
                ));
            }
            if let Some(r) = http::request_within(
                demo.port,
                "GET",
                "/health",
                None,
                "",
                Duration::from_secs(5),
            ) {
                let body: serde_json::Value =
                    serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
                if r.status == 200 && body["status"] == "ok" {
                    return Ok(());
                }
                if body["status"] == "degraded" && !body["error"].is_null() {
                    return Err(format!("demo {} is degraded: {}", demo.name, body["error"]));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("demo {} not ready within 120 s", demo.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn install(&self, slot: usize, demo: Demo) {
        let mut slots = lock(&self.slots);
        slots[slot].demo = Some(demo);
        slots[slot].ready = true;
    }

    /// Starts the three processes with `threads` workers each and waits until all serve. A
    /// process left `degraded` by its start-up migration is restarted once, as an orchestrator
    /// would on a failing readiness probe: what happened is returned.
    pub(crate) fn start_all(&self, threads: usize) -> Result<Vec<String>, String> {
        self.threads.store(threads, Ordering::SeqCst);
        let mut started = Vec::new();
        for slot in 0..3 {
            started.push(self.spawn(slot, 0)?);
        }
        let mut restarted = Vec::new();
        for (slot, mut demo) in started.into_iter().enumerate() {
            if let Err(why) = Self::wait_ready(&mut demo) {
                restarted.push(format!("{why}; restarted"));
                lock(&self.slots)[slot].generation += 1;
                self.terminate(demo);
                demo = self.spawn(slot, self.next_generation(slot))?;
                Self::wait_ready(&mut demo)?;
            }
            self.install(slot, demo);
        }
        Ok(restarted)
    }

    /// Takes `slot` out of the load and waits (5 s at most) for its requests in flight.
    fn drain(&self, slot: usize) -> Option<Demo> {
        let inflight = {
            let mut slots = lock(&self.slots);
            slots[slot].ready = false;
            Arc::clone(&slots[slot].inflight)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut slots = lock(&self.slots);
        slots[slot].generation += 1;
        slots[slot].demo.take()
    }

    fn next_generation(&self, slot: usize) -> usize {
        lock(&self.slots)[slot].generation
    }

    /// SIGTERM, then the exit status within 60 s (SIGKILL after that).
    #[allow(unsafe_code, reason = "kill(2) on our own child")]
    fn terminate(&self, mut demo: Demo) {
        let peak = peak_rss_kib(demo.child.id());
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(demo.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let (how, clean) = loop {
            match demo.child.try_wait() {
                Ok(Some(status)) => break (format!("SIGTERM: {status}"), status.success()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = demo.child.kill();
                    let _ = demo.child.wait();
                    break ("SIGTERM: still running after 60 s, killed".into(), false);
                }
            }
        };
        lock(&self.gone).push(Gone {
            name: demo.name,
            peak_rss_kib: peak,
            how,
            clean,
        });
    }

    /// One process after the other: out of the load, SIGTERM, a new one with `threads`
    /// workers, back in the load once ready.
    pub(crate) fn rolling_restart(&self, threads: usize) -> Result<(), String> {
        self.threads.store(threads, Ordering::SeqCst);
        for slot in 0..3 {
            if let Some(old) = self.drain(slot) {
                self.terminate(old);
            }
            let mut demo = self.spawn(slot, self.next_generation(slot))?;
            Self::wait_ready(&mut demo)?;
            self.install(slot, demo);
        }
        Ok(())
    }

    /// The fault: `kill -9` of the process in `slot` and its restart. Returns what happened.
    pub(crate) fn kill_and_restart(&self, slot: usize) -> Result<String, String> {
        let Some(mut demo) = self.drain(slot) else {
            return Err(format!("slot {slot} had no process"));
        };
        let peak = peak_rss_kib(demo.child.id());
        let name = demo.name.clone();
        demo.child
            .kill()
            .map_err(|e| format!("cannot SIGKILL demo {name}: {e}"))?;
        let _ = demo.child.wait();
        lock(&self.gone).push(Gone {
            name: name.clone(),
            peak_rss_kib: peak,
            how: "SIGKILL (fault)".into(),
            clean: true,
        });
        let restarted = Instant::now();
        let mut demo = self.spawn(slot, self.next_generation(slot))?;
        Self::wait_ready(&mut demo)?;
        let new = demo.name.clone();
        self.install(slot, demo);
        Ok(format!(
            "SIGKILL {name}, {new} serving after {:.1} s",
            restarted.elapsed().as_secs_f64()
        ))
    }

    /// A ready process for the next request (round robin from `hint`): its port and the
    /// in-flight counter to decrement when the request is over.
    pub(crate) fn pick(&self, hint: usize) -> Option<(u16, Arc<AtomicUsize>)> {
        if !self.accepting.load(Ordering::SeqCst) {
            return None;
        }
        let slots = lock(&self.slots);
        (0..slots.len()).find_map(|i| {
            let slot = &slots[(hint + i) % slots.len()];
            let demo = slot.demo.as_ref().filter(|_| slot.ready)?;
            slot.inflight.fetch_add(1, Ordering::SeqCst);
            Some((demo.port, Arc::clone(&slot.inflight)))
        })
    }

    /// The pages of every live process: `/migrations` (anonymous and with the token),
    /// `/health`, `/metrics`. (url, status, body).
    pub(crate) fn scrape_pages(&self) -> Vec<(String, u16, String)> {
        let ports: Vec<(String, u16)> = lock(&self.slots)
            .iter()
            .filter_map(|s| s.demo.as_ref().map(|d| (d.name.clone(), d.port)))
            .collect();
        let mut pages = Vec::new();
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        for (name, port) in ports {
            for (path, auth) in [
                ("/migrations", false),
                ("/migrations", true),
                ("/health", false),
                ("/health", true),
                ("/metrics", false),
            ] {
                let headers: Vec<(&str, &str)> = if auth {
                    vec![("Authorization", bearer.as_str())]
                } else {
                    Vec::new()
                };
                let what = format!("{name} {path}{}", if auth { " (admin)" } else { "" });
                match http::request_with_headers(port, "GET", path, &headers, None, "") {
                    Some(r) => pages.push((what, r.status, r.body)),
                    None => pages.push((what, 0, String::new())),
                }
            }
        }
        pages
    }

    /// SIGTERM to every live process; every process that ran, with its peak RSS.
    pub(crate) fn stop_all(&self) -> Vec<Gone> {
        for slot in 0..3 {
            if let Some(demo) = self.drain(slot) {
                self.terminate(demo);
            }
        }
        self.gone()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in lock(&self.slots).iter_mut() {
            if let Some(demo) = slot.demo.as_mut() {
                let _ = demo.child.kill();
                let _ = demo.child.wait();
            }
        }
    }
}
