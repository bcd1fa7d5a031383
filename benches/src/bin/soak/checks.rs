//! The end of the run: one PASS/FAIL line per check, the figures (latency per endpoint and
//! phase, peak RSS per process), and the summary line.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool, Integer, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::demo::Gone;
use crate::faults::{IdleSamples, Report};
use crate::load::{Endpoint, Phase, Stats};
use crate::setup::{self, Env};
use crate::{note, Plan};

const BACKFILL: &str = "hash_kroger_passwords";

/// Rows verified with argon2-cffi in short mode (besides every row the load set).
const SHORT_SAMPLE: usize = 3_000;

/// The backfill's row when the wait ended.
pub(crate) struct Finished {
    pub status: String,
    pub rows_done: i64,
    pub rows_total: i64,
    pub last_error: String,
    /// How long after the fault window it finished (or the wait gave up).
    pub waited: Duration,
    /// Why it could not be read, if so.
    pub error: Option<String>,
}

#[derive(QueryableByName)]
struct BackfillRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    rows_done: i64,
    #[diesel(sql_type = BigInt)]
    rows_total: i64,
    #[diesel(sql_type = Text)]
    last_error: String,
}

/// The backfill's status, rows done and rows total.
pub(crate) fn progress(env: &Env) -> Result<(String, i64, i64), String> {
    backfill_row(env).map(|r| (r.status, r.rows_done, r.rows_total))
}

fn backfill_row(env: &Env) -> Result<BackfillRow, String> {
    let mut conn = setup::connect(&env.admin_url)?;
    let rows: Vec<BackfillRow> = diesel::sql_query(format!(
        "SELECT status, CAST(rows_done AS BIGINT) AS rows_done, \
         CAST(rows_total AS BIGINT) AS rows_total, COALESCE(last_error, '') AS last_error \
         FROM migrator_backfills WHERE name = '{BACKFILL}'"
    ))
    .load(&mut conn)
    .map_err(|e| format!("read migrator_backfills: {e}"))?;
    rows.into_iter()
        .next()
        .ok_or_else(|| format!("no row {BACKFILL} in migrator_backfills"))
}

/// Waits (at most `within`) until the backfill is no longer active or paused.
pub(crate) fn wait_finished(env: &Env, within: Duration, start: Instant) -> Finished {
    note(
        start,
        "fault window over; waiting for the backfill to finish",
    );
    let began = Instant::now();
    let mut last_note = Instant::now();
    loop {
        let row = backfill_row(env);
        let settled = match &row {
            Ok(r) => !matches!(r.status.as_str(), "active" | "paused"),
            Err(_) => false,
        };
        if settled || began.elapsed() > within {
            return match row {
                Ok(r) => Finished {
                    status: r.status,
                    rows_done: r.rows_done,
                    rows_total: r.rows_total,
                    last_error: r.last_error,
                    waited: began.elapsed(),
                    error: None,
                },
                Err(e) => Finished {
                    status: "unknown".into(),
                    rows_done: 0,
                    rows_total: 0,
                    last_error: String::new(),
                    waited: began.elapsed(),
                    error: Some(e),
                },
            };
        }
        if last_note.elapsed() > Duration::from_secs(10) {
            last_note = Instant::now();
            if let Ok(r) = &row {
                note(
                    start,
                    &format!(
                        "backfill {}: {}/{} rows",
                        r.status, r.rows_done, r.rows_total
                    ),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    hash: String,
    #[diesel(sql_type = BigInt)]
    by_backfill: i64,
    #[diesel(sql_type = BigInt)]
    by_app: i64,
    #[diesel(sql_type = Bool)]
    backfill_after_app: bool,
}

struct Checks {
    failed: usize,
    total: usize,
}

impl Checks {
    fn check(&mut self, pass: bool, name: &str, detail: &str) {
        self.total += 1;
        if !pass {
            self.failed += 1;
        }
        println!("{} {name}: {detail}", if pass { "PASS" } else { "FAIL" });
    }
}

fn ms(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1000.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Verifies `rows` (id, PHC hash, password) with argon2-cffi (the reference C), one python3
/// process per core: (verified, failed, first failed ids).
fn argon2_cffi(rows: &[(i32, String, String)]) -> Result<(u64, u64, String), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(cores).max(1);
    let results: Vec<Result<(u64, u64, String), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || argon2_cffi_one(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a verifier thread panicked".into()))
            })
            .collect()
    });
    let (mut ok, mut bad, mut first) = (0, 0, Vec::new());
    for result in results {
        let (o, b, f) = result?;
        ok += o;
        bad += b;
        if f != "-" {
            first.push(f);
        }
    }
    Ok((
        ok,
        bad,
        if first.is_empty() {
            "-".into()
        } else {
            first.join(",")
        },
    ))
}

fn argon2_cffi_one(rows: &[(i32, String, String)]) -> Result<(u64, u64, String), String> {
    const SCRIPT: &str = r"import sys
from argon2.low_level import verify_secret, Type
ok = bad = 0
first = []
for line in sys.stdin.buffer:
    i, h, p = line.rstrip(b'\n').split(b'\t')
    try:
        verify_secret(h, bytes.fromhex(p.decode()), Type.ID)
        ok += 1
    except Exception:
        bad += 1
        if len(first) < 5:
            first.append(i.decode())
print(ok, bad, ','.join(first) or '-')
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3 (scripts/setup installs it): {e}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| "no stdin for python3".to_string())?;
    let mut input = Vec::with_capacity(rows.len() * 120);
    for (id, hash, password) in rows {
        let hex: String = password.bytes().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(input, "{id}\t{hash}\t{hex}");
    }
    // Written from another thread: the child's output cannot fill its pipe meanwhile.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("python3: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "python3 with argon2-cffi failed (scripts/setup installs argon2-cffi): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let ok = parts.next().and_then(|v| v.parse().ok());
    let bad = parts.next().and_then(|v| v.parse().ok());
    match (ok, bad) {
        (Some(ok), Some(bad)) => Ok((ok, bad, parts.next().unwrap_or("-").to_owned())),
        _ => Err(format!(
            "unexpected output of the argon2-cffi check: {text}"
        )),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    plan: &Plan,
    env: &Env,
    stats: &Stats,
    report: &Report,
    finished: &Finished,
    pages: &[(String, u16, String)],
    processes: &[Gone],
    idle: IdleSamples,
    start: Instant,
) -> usize {
    let mut c = Checks {
        failed: 0,
        total: 0,
    };
    println!();

    // The faults themselves: a soak whose faults did not happen proves nothing.
    let mut faults: Vec<_> = report.faults.iter().collect();
    faults.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (name, at, outcome) in &faults {
        match outcome {
            Ok(what) => println!("     fault at +{at:.1}s {name}: {what}"),
            Err(why) => println!("     fault at +{at:.1}s {name}: FAILED: {why}"),
        }
    }
    let broken = faults.iter().filter(|f| f.2.is_err()).count();
    c.check(
        broken == 0,
        "faults injected",
        &format!(
            "{} of {} applied; sessions terminated: {}",
            faults.len() - broken,
            faults.len(),
            if report.terminated.is_empty() {
                "none".to_string()
            } else {
                report
                    .terminated
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    );

    // The migration lock's sessions, terminated during the first start-up.
    match &report.startup_lock {
        Some((at, outcome)) => c.check(
            outcome.is_ok(),
            "every process ready after its migration lock session was terminated at start-up",
            &match outcome {
                Ok(what) => format!("{what} {at:.1} s after the first start; all three ready"),
                Err(why) => why.clone(),
            },
        ),
        None => c.check(
            false,
            "migration lock session terminated at start-up",
            "not run",
        ),
    }

    // The backfill's own row.
    c.check(
        finished.status == "finished",
        "backfill finished",
        &match &finished.error {
            Some(e) => e.clone(),
            None => format!(
                "status {} {:.1} s after the fault window (limit {} s){}",
                finished.status,
                finished.waited.as_secs_f64(),
                plan.finish_within.as_secs(),
                if finished.last_error.is_empty() {
                    String::new()
                } else {
                    format!(", last_error: {}", finished.last_error)
                }
            ),
        },
    );

    // Every row, with its hash writes as the trigger counted them.
    let users: Result<Vec<UserRow>, String> =
        setup::connect(&env.admin_url).and_then(|mut conn| {
            diesel::sql_query(
                "SELECT u.id, COALESCE(u.kroger_password_hash, '') AS hash, \
             COALESCE(w.b, 0) AS by_backfill, COALESCE(w.a, 0) AS by_app, \
             COALESCE(w.late, false) AS backfill_after_app \
             FROM user_profiles u LEFT JOIN ( \
               SELECT user_id, count(*) FILTER (WHERE by_backfill) AS b, \
                      count(*) FILTER (WHERE NOT by_backfill) AS a, \
                      COALESCE(max(seq) FILTER (WHERE by_backfill) \
                               > min(seq) FILTER (WHERE NOT by_backfill), false) AS late \
               FROM soak_hash_writes GROUP BY user_id) w ON w.user_id = u.id \
             ORDER BY u.id",
            )
            .load(&mut conn)
            .map_err(|e| format!("read user_profiles: {e}"))
        });
    match users {
        Err(e) => {
            c.check(false, "rows_done equals the truth", &e);
            c.check(false, "every row hashed exactly once", &e);
            c.check(false, "every hash verifies with argon2-cffi", &e);
        }
        Ok(users) => rows_checks(&mut c, plan, env, stats, finished, &users),
    }

    // Requests.
    let failures: u64 = stats.failures.values().sum();
    let by_endpoint = |m: &BTreeMap<Endpoint, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{v} {}", k.label()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    c.check(
        failures == 0,
        "no request failed other than documented 503s and 429s",
        &format!(
            "{} sent, {} ok, 503: {}, 429: {}, failed: {}",
            stats.sent,
            stats.ok,
            by_endpoint(&stats.documented_503),
            stats.too_many_429,
            by_endpoint(&stats.failures)
        ),
    );
    for example in &stats.failure_examples {
        println!("     e.g. {example}");
    }

    // Secrets: every log, every page, the PostgreSQL logs.
    secrets_check(&mut c, env, stats, pages);

    // Processes.
    let unclean: Vec<&Gone> = processes.iter().filter(|p| !p.clean).collect();
    c.check(
        unclean.is_empty(),
        "demo processes stopped cleanly (exit 0 on SIGTERM)",
        &if unclean.is_empty() {
            format!("{} processes ran", processes.len())
        } else {
            unclean
                .iter()
                .map(|p| format!("{}: {}", p.name, p.how))
                .collect::<Vec<_>>()
                .join("; ")
        },
    );

    latency_measure(stats);
    c.check(
        idle.samples > 0 && idle.seen == 0,
        "no transaction on user_profiles left idle across a compute",
        &format!(
            "sessions of {} idle > 200 ms in a transaction holding a lock on user_profiles: \
             seen in {} of {} samples (every 250 ms from the workers' start), at most {} at once",
            crate::setup::ROLE,
            idle.seen,
            idle.samples,
            idle.most
        ),
    );
    figures(plan, env, stats, processes);
    println!(
        "soak: {} checks, {} failed ({} mode, seed {}, {:.0} s)",
        c.total,
        c.failed,
        if plan.short { "short" } else { "full" },
        plan.seed,
        start.elapsed().as_secs_f64()
    );
    c.failed
}

fn rows_checks(
    c: &mut Checks,
    plan: &Plan,
    env: &Env,
    stats: &Stats,
    finished: &Finished,
    users: &[UserRow],
) {
    let backfill_writes: i64 = users.iter().map(|u| u.by_backfill).sum();
    let app_writes: i64 = users.iter().map(|u| u.by_app).sum();
    c.check(
        finished.error.is_none() && finished.rows_done == backfill_writes,
        "rows_done equals the truth",
        &format!(
            "rows_done {} (rows_total {}), hash writes by the backfill counted by the trigger {}",
            finished.rows_done, finished.rows_total, backfill_writes
        ),
    );

    // Exactly once: a row the load never set a password of is written once (by the backfill,
    // or by the app's verification that upgrades it first); a row without a password never;
    // a row the load set: the backfill at most once and never after the app.
    let (mut unhashed, mut twice, mut late, mut written_without) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    for u in users {
        let id = i64::from(u.id);
        let writes = u.by_backfill + u.by_app;
        let wrong = if stats.set_users.contains_key(&id) {
            if u.by_backfill > 1 {
                twice += 1;
                true
            } else if u.backfill_after_app {
                late += 1;
                true
            } else {
                false
            }
        } else if env.seeded(id).is_some() {
            match writes {
                0 => unhashed += 1,
                1 => {}
                _ => twice += 1,
            }
            writes != 1
        } else {
            if writes != 0 {
                written_without += 1;
            }
            writes != 0
        };
        if wrong && examples.len() < 5 {
            examples.push(format!(
                "{id} (backfill {}, app {})",
                u.by_backfill, u.by_app
            ));
        }
    }
    let exactly_once = unhashed + twice + late + written_without == 0;
    c.check(
        exactly_once,
        "every row hashed exactly once",
        &format!(
            "{} rows; hash writes: {backfill_writes} by the backfill, {app_writes} by the app \
             ({} users' passwords set by the load); never hashed {unhashed}, hashed twice \
             {twice}, backfill after the app {late}, hashed without a password {written_without}{}",
            users.len(),
            stats.set_users.len(),
            if examples.is_empty() {
                String::new()
            } else {
                format!("; e.g. ids {}", examples.join(", "))
            }
        ),
    );

    // Every hash against the password it must verify, with the reference C.
    // Short mode: a sample (every row the load set a password of, and 1 in `stride` of the
    // others, from a seeded offset): the reference C at these parameters costs about 1-2 ms
    // per hash. Full mode: every row.
    let stride = if plan.short {
        (users.len() / SHORT_SAMPLE).max(1) as i64
    } else {
        1
    };
    let offset = (plan.seed % stride as u64) as i64;
    let mut to_verify = Vec::new();
    let mut unknown = 0;
    let mut missing = 0;
    let mut with_password = 0;
    for u in users {
        let id = i64::from(u.id);
        if env.seeded(id).is_some() || stats.set_users.contains_key(&id) {
            with_password += 1;
        }
        if !stats.set_users.contains_key(&id) && id % stride != offset {
            if u.hash.is_empty() == env.seeded(id).is_some() {
                missing += 1; // a hash missing (or one where none belongs), outside the sample
            }
            continue;
        }
        let expected = match stats.set_users.get(&id) {
            Some(Some(password)) => Some(password.clone()),
            Some(None) => {
                unknown += 1;
                continue;
            }
            None => env.seeded(id),
        };
        match expected {
            Some(_) if u.hash.is_empty() => missing += 1,
            Some(password) => to_verify.push((u.id, u.hash.clone(), password)),
            None if !u.hash.is_empty() => missing += 1,
            None => {}
        }
    }
    let scope = format!(
        "{} mode: {} of the {with_password} rows with a password{}",
        if plan.short { "short" } else { "full" },
        if plan.short {
            format!(
                "a sample of {} (every row the load set, 1 in {stride} of the others)",
                to_verify.len()
            )
        } else {
            format!("all {}", to_verify.len())
        },
        if unknown > 0 {
            format!(" ({unknown} users skipped: a set of theirs got no answer)")
        } else {
            String::new()
        }
    );
    match argon2_cffi(&to_verify) {
        Ok((ok, bad, first)) => c.check(
            bad == 0 && missing == 0 && ok as usize == to_verify.len(),
            "every hash verifies with argon2-cffi",
            &format!(
                "{scope}: {ok} verified, {bad} did not{}, {missing} without the hash they need",
                if bad > 0 {
                    format!(" (ids {first})")
                } else {
                    String::new()
                }
            ),
        ),
        Err(e) => c.check(false, "every hash verifies with argon2-cffi", &e),
    }
}

fn secrets_check(c: &mut Checks, env: &Env, stats: &Stats, pages: &[(String, u16, String)]) {
    let secrets = [
        env.secret_marker.as_str(),
        migrator_benches::pg::server().password(),
    ];
    let mut found = Vec::new();
    let mut scanned = 0usize;
    let mut texts: Vec<(String, String)> = Vec::new();
    for path in crate_logs(env) {
        texts.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).unwrap_or_default(),
        ));
    }
    texts.push(("PostgreSQL server log".into(), env.cluster.log()));
    texts.push(("standby's server log".into(), env.standby.log()));
    for (what, status, body) in pages {
        if *status == 0 {
            found.push(format!("{what}: no answer"));
        }
        texts.push((format!("page {what} ({status})"), body.clone()));
    }
    for (what, text) in &texts {
        scanned += text.len();
        for secret in secrets {
            if text.contains(secret) {
                let kind = if secret == env.secret_marker {
                    "a Kroger password"
                } else {
                    "the database password"
                };
                found.push(format!("{kind} in {what}"));
            }
        }
    }
    found.extend(stats.leaks.iter().take(5).cloned());
    c.check(
        found.is_empty(),
        "no seeded plaintext in any log, page or PostgreSQL log",
        &if found.is_empty() {
            format!(
                "{} texts, {} KiB scanned (demo logs, PostgreSQL and standby logs, {} pages, \
                 every response body)",
                texts.len(),
                scanned / 1024,
                pages.len()
            )
        } else {
            found.join("; ")
        },
    );
}

/// Every log file the demo processes wrote (log files and captured stdout/stderr).
fn crate_logs(env: &Env) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&env.dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// The latencies of `endpoint` in `phases`, sorted (microseconds).
fn latencies(stats: &Stats, phases: &[Phase], endpoint: Endpoint) -> Vec<u64> {
    let mut all: Vec<u64> = phases
        .iter()
        .filter_map(|p| stats.latencies.get(&(*p, endpoint)))
        .flatten()
        .copied()
        .collect();
    all.sort_unstable();
    all
}

/// Issue 17, item 2: `/check-db-connection` and a password verify against their latency
/// without workers, on the median (the p99 beside it). A measurement, printed with the 2x
/// target, never a pass/fail check: wall-clock figures on a shared machine are not asserted
/// (the p99 moves 2-4x from one run to the next with no change in the code).
fn latency_measure(stats: &Stats) {
    let mut parts = Vec::new();
    let mut within = true;
    for e in [Endpoint::CheckDb, Endpoint::Verify] {
        let base = latencies(stats, &[Phase::Baseline], e);
        let workers = latencies(stats, &[Phase::Workers], e);
        if base.is_empty() || workers.is_empty() {
            within = false;
            parts.push(format!("{}: no requests to compare", e.label()));
            continue;
        }
        let ratio = |p: f64| percentile(&workers, p) as f64 / percentile(&base, p).max(1) as f64;
        within &= ratio(50.0) <= 2.0;
        parts.push(format!(
            "{} p50 {} against {} ms ({:.2}x; p99 {:.2}x)",
            e.label(),
            ms(percentile(&workers, 50.0)),
            ms(percentile(&base, 50.0)),
            ratio(50.0),
            ratio(99.0)
        ));
    }
    println!(
        "MEASURE latency with workers against without (median; target 2x: {}): {}",
        if within { "within" } else { "over" },
        parts.join("; ")
    );
}

fn figures(plan: &Plan, env: &Env, stats: &Stats, processes: &[Gone]) {
    println!();
    println!(
        "latency (ms) per endpoint, paced ({} clients x 1 request / {} ms): p50 / p99 (requests)",
        plan.clients,
        plan.interval.as_millis()
    );
    println!(
        "  {:<42} {:>22} {:>22} {:>14} {:>22}",
        "endpoint",
        "baseline (no workers)",
        "workers, no faults",
        "p50/p99 ratio",
        "faults and after"
    );
    let get = |phases: &[Phase], e: Endpoint| latencies(stats, phases, e);
    for e in Endpoint::ALL {
        let base = get(&[Phase::Baseline], e);
        let workers = get(&[Phase::Workers], e);
        let faults = get(&[Phase::Faults, Phase::Tail], e);
        let cell = |v: &[u64]| {
            format!(
                "{} / {} ({})",
                ms(percentile(v, 50.0)),
                ms(percentile(v, 99.0)),
                v.len()
            )
        };
        let ratio = |p: f64| {
            let b = percentile(&base, p);
            if b == 0 || workers.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", percentile(&workers, p) as f64 / b as f64)
            }
        };
        println!(
            "  {:<42} {:>22} {:>22} {:>14} {:>22}",
            e.label(),
            cell(&base),
            cell(&workers),
            format!("{}/{}", ratio(50.0), ratio(99.0)),
            cell(&faults)
        );
    }
    println!();
    println!("peak RSS (VmHWM) per demo process:");
    for p in processes {
        println!(
            "  {:<4} {:>9} KiB  ({})",
            p.name,
            p.peak_rss_kib
                .map_or_else(|| "?".to_string(), |k| k.to_string()),
            p.how
        );
    }
    let logs: String = crate_logs(env)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    println!(
        "demo log lines: {} 'Backfill held', {} 'Backfill resumed', {} batch writes cut by the \
         idle-in-transaction timeout, {} ERROR, {} WARN",
        count("Backfill held"),
        count("Backfill resumed"),
        count("idle-in-transaction timeout"),
        count("ERROR"),
        count("WARN")
    );
    println!();
}
