//! The paced load: a few client threads, each sending one request every interval to a ready
//! demo process on 127.0.0.1 (verify, set password, `/check-db-connection`, `/health`), each
//! with users of its own so that it knows every user's current password. Bounded in time (it
//! stops when told) and in count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use migrator_benches::http;

use crate::demo::Fleet;
use crate::setup::Env;
use crate::{note, Plan};

/// At most this many requests per client thread, whatever the durations.
const MAX_REQUESTS_PER_CLIENT: u64 = 200_000;
/// One request may take this long before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Which part of the run a request was sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// No workers anywhere.
    Baseline = 0,
    /// The rolling restart that starts the workers (not measured).
    Restart = 1,
    /// Workers, no fault yet.
    Workers = 2,
    /// The fault window.
    Faults = 3,
    /// After the window, until the backfill finished.
    Tail = 4,
}

impl Phase {
    fn from(v: u8) -> Phase {
        match v {
            0 => Phase::Baseline,
            1 => Phase::Restart,
            2 => Phase::Workers,
            3 => Phase::Faults,
            _ => Phase::Tail,
        }
    }
}

/// The endpoints the load calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Verify,
    SetPassword,
    CheckDb,
    Health,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 4] = [
        Endpoint::Verify,
        Endpoint::SetPassword,
        Endpoint::CheckDb,
        Endpoint::Health,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Verify => "POST /users/{id}/kroger-password/verify",
            Endpoint::SetPassword => "PUT /users/{id}/kroger-password",
            Endpoint::CheckDb => "GET /check-db-connection",
            Endpoint::Health => "GET /health",
        }
    }
}

/// What the load saw.
#[derive(Default)]
pub(crate) struct Stats {
    /// Latency in microseconds of every answered request, by phase and endpoint.
    pub latencies: BTreeMap<(Phase, Endpoint), Vec<u64>>,
    pub sent: u64,
    pub ok: u64,
    /// 503s the demo documents (start-up migrations running; database unavailable on
    /// `/health`), and 429s.
    pub documented_503: BTreeMap<Endpoint, u64>,
    pub too_many_429: u64,
    /// Everything else: other statuses, no answer, a wrong verification result.
    pub failures: BTreeMap<Endpoint, u64>,
    /// The first few failures, described.
    pub failure_examples: Vec<String>,
    /// Response bodies that contained a password or the database password.
    pub leaks: Vec<String>,
    /// Users whose password was set by the load (their current password, `None` if a set
    /// got no answer and the password is unknown).
    pub set_users: BTreeMap<i64, Option<String>>,
}

impl Stats {
    fn fail(&mut self, endpoint: Endpoint, what: String) {
        *self.failures.entry(endpoint).or_default() += 1;
        if self.failure_examples.len() < 12 {
            self.failure_examples.push(what);
        }
    }

    fn merge(&mut self, other: Stats) {
        for (k, mut v) in other.latencies {
            self.latencies.entry(k).or_default().append(&mut v);
        }
        self.sent += other.sent;
        self.ok += other.ok;
        for (k, v) in other.documented_503 {
            *self.documented_503.entry(k).or_default() += v;
        }
        self.too_many_429 += other.too_many_429;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for e in other.failure_examples {
            if self.failure_examples.len() < 12 {
                self.failure_examples.push(e);
            }
        }
        self.leaks.extend(other.leaks);
        self.set_users.extend(other.set_users);
    }
}

/// A small deterministic generator (splitmix64), seeded from the run's seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The running load.
pub(crate) struct Load {
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Stats>>,
}

struct Client {
    number: usize,
    rng: Rng,
    /// (user id, current password; `None`: unknown after a set that got no answer).
    users: Vec<(i64, Option<String>)>,
    set_count: u64,
    /// Users a `PUT` was sent for.
    put_sent: std::collections::BTreeSet<i64>,
    marker: String,
    interval: Duration,
}

impl Load {
    pub(crate) fn start(plan: &Plan, env: &Env, fleet: Arc<Fleet>, start: Instant) -> Load {
        let phase = Arc::new(AtomicU8::new(Phase::Baseline as u8));
        let stop = Arc::new(AtomicBool::new(false));
        // Users spread over the whole key range (not every 97th: they have no password), so
        // that verifications meet rows the backfill has not reached, is hashing, and did.
        let mut rng = Rng::new(plan.seed ^ 0x5eed);
        let mut chosen = std::collections::BTreeSet::new();
        let mut attempts = 0;
        while chosen.len() < plan.load_users && attempts < plan.load_users * 20 {
            attempts += 1;
            let id = 1 + rng.below(plan.rows as u64) as i64;
            if id % 97 != 0 {
                chosen.insert(id);
            }
        }
        let chosen: Vec<i64> = chosen.into_iter().collect();
        note(
            start,
            &format!(
                "load: {} clients, one request each per {} ms, {} users",
                plan.clients,
                plan.interval.as_millis(),
                chosen.len()
            ),
        );
        let clients = (0..plan.clients)
            .map(|number| {
                let client = Client {
                    number,
                    rng: Rng::new(plan.seed.wrapping_add(1 + number as u64)),
                    users: chosen
                        .iter()
                        .skip(number)
                        .step_by(plan.clients)
                        .map(|&id| (id, env.seeded(id)))
                        .collect(),
                    set_count: 0,
                    put_sent: Default::default(),
                    marker: env.secret_marker.clone(),
                    interval: plan.interval,
                };
                let (phase, stop, fleet) =
                    (Arc::clone(&phase), Arc::clone(&stop), Arc::clone(&fleet));
                std::thread::spawn(move || client.run(&phase, &stop, &fleet))
            })
            .collect();
        Load {
            phase,
            stop,
            clients,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Stops the clients and merges what they saw.
    pub(crate) fn stop(self) -> Stats {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Stats::default();
        for client in self.clients {
            match client.join() {
                Ok(stats) => all.merge(stats),
                Err(_) => {
                    all.fail(Endpoint::Health, "a load client thread panicked".into());
                }
            }
        }
        all
    }
}

impl Client {
    fn run(mut self, phase: &AtomicU8, stop: &AtomicBool, fleet: &Fleet) -> Stats {
        let mut stats = Stats::default();
        let mut next = Instant::now() + self.interval.mul_f64(self.number as f64 / 4.0);
        let mut hint = self.number;
        while !stop.load(Ordering::SeqCst) && stats.sent < MAX_REQUESTS_PER_CLIENT {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // Paced (open loop): a slow answer does not make the next request later.
            next += self.interval;
            if Instant::now() > next + Duration::from_secs(1) {
                next = Instant::now();
            }
            let sent_in = Phase::from(phase.load(Ordering::SeqCst));
            hint += 1;
            let Some((port, inflight)) = fleet.pick(hint) else {
                continue;
            };
            self.one(port, sent_in, &mut stats);
            inflight.fetch_sub(1, Ordering::SeqCst);
        }
        for (id, password) in &self.users {
            if self.put_sent.contains(id) {
                stats.set_users.insert(*id, password.clone());
            }
        }
        stats
    }

    fn one(&mut self, port: u16, phase: Phase, stats: &mut Stats) {
        let roll = self.rng.below(100);
        let endpoint = match roll {
            0..=39 => Endpoint::Verify,
            40..=54 => Endpoint::SetPassword,
            55..=84 => Endpoint::CheckDb,
            _ => Endpoint::Health,
        };
        let user = self.rng.below(self.users.len() as u64) as usize;
        let (id, current) = self.users[user].clone();
        let (method, path, body, new_password) = match endpoint {
            Endpoint::Verify => {
                let Some(current) = current.as_ref() else {
                    return; // unknown after a set that got no answer: nothing to check
                };
                (
                    "POST",
                    format!("/users/{id}/kroger-password/verify"),
                    serde_json::json!({ "password": current }).to_string(),
                    None,
                )
            }
            Endpoint::SetPassword => {
                self.set_count += 1;
                self.put_sent.insert(id);
                let new = format!("{}-new-{id}-{}", self.marker, self.set_count);
                (
                    "PUT",
                    format!("/users/{id}/kroger-password"),
                    serde_json::json!({ "password": new }).to_string(),
                    Some(new),
                )
            }
            Endpoint::CheckDb => ("GET", "/check-db-connection".into(), String::new(), None),
            Endpoint::Health => ("GET", "/health".into(), String::new(), None),
        };
        let content_type = (!body.is_empty()).then_some("application/json");
        stats.sent += 1;
        let started = Instant::now();
        let answer = http::request_within(port, method, &path, content_type, &body, TIMEOUT);
        let took = started.elapsed();
        let Some(r) = answer else {
            if new_password.is_some() {
                self.users[user].1 = None; // it may or may not have been stored
            }
            stats.fail(
                endpoint,
                format!("{method} {path} on port {port}: no answer within {TIMEOUT:?}"),
            );
            return;
        };
        if r.body.contains(&self.marker)
            || r.body.contains(migrator_benches::pg::server().password())
        {
            stats.leaks.push(format!(
                "{method} {path} answered a body with a secret in it"
            ));
        }
        stats
            .latencies
            .entry((phase, endpoint))
            .or_default()
            .push(took.as_micros() as u64);
        match r.status {
            200 => {
                let right = match endpoint {
                    Endpoint::Verify => r.body.contains("\"verified\":true"),
                    Endpoint::SetPassword => r.body.contains("\"updated\":true"),
                    _ => true,
                };
                if right {
                    stats.ok += 1;
                    if let Some(new) = new_password {
                        self.users[user].1 = Some(new);
                    }
                } else {
                    stats.fail(
                        endpoint,
                        format!("{method} {path}: 200 with a wrong answer {}", r.body),
                    );
                }
            }
            503 => *stats.documented_503.entry(endpoint).or_default() += 1,
            429 => stats.too_many_429 += 1,
            status => {
                if new_password.is_some() {
                    self.users[user].1 = None;
                }
                let body: String = r.body.chars().take(160).collect();
                stats.fail(endpoint, format!("{method} {path}: {status} {body}"));
            }
        }
    }
}
