//! The faults, each at a seeded random moment of the fault window (they may overlap, as in
//! production): `kill -9` of a demo process and its restart, `pg_terminate_backend` of random
//! sessions (app, worker, lock), a long REPEATABLE READ report, an operator's open transaction
//! on a pending row, a role-level `idle_in_transaction_session_timeout` of 2 s, pause and
//! resume from the operator page, standby replay paused.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Integer, Text};
use diesel::{QueryableByName, RunQueryDsl};
use migrator_benches::http;

use crate::demo::{Fleet, ADMIN_TOKEN};
use crate::load::Rng;
use crate::setup::{self, Env, DB, ROLE};
use crate::{note, Plan};

const BACKFILL: &str = "hash_kroger_passwords";

#[derive(Clone, Debug)]
enum Fault {
    Kill(usize),
    Terminate,
    Report,
    OperatorTransaction,
    IdleInTransactionTimeout,
    PauseResume,
    ReplayPause,
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Kill(slot) => format!("kill -9 of demo {} and restart", ["A", "B", "C"][*slot]),
            Fault::Terminate => "pg_terminate_backend (app, worker, lock)".into(),
            Fault::Report => "REPEATABLE READ report".into(),
            Fault::OperatorTransaction => "operator's open transaction on a pending row".into(),
            Fault::IdleInTransactionTimeout => {
                format!("ALTER ROLE {ROLE} SET idle_in_transaction_session_timeout = '2s'")
            }
            Fault::PauseResume => "pause and resume from the operator page".into(),
            Fault::ReplayPause => "standby replay paused".into(),
        }
    }
}

/// What the faults did.
#[derive(Default)]
pub(crate) struct Report {
    /// (fault, seconds into the window, what happened or why it could not be done).
    pub faults: Vec<(String, f64, Result<String, String>)>,
    /// Sessions terminated, by kind.
    pub terminated: BTreeMap<&'static str, u64>,
    /// The migration lock's sessions terminated during the first start-up: (seconds after
    /// the start, what happened; an error if a process was not ready without a restart).
    pub startup_lock: Option<(f64, Result<String, String>)>,
}

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    app: String,
    #[diesel(sql_type = Text)]
    query: String,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

/// Runs every fault at its moment; returns when all are over.
pub(crate) fn run(
    plan: &Plan,
    window: Duration,
    env: &Env,
    fleet: &Fleet,
    start: Instant,
) -> Report {
    let mut rng = Rng::new(plan.seed ^ 0xfa17);
    let window = window.as_millis() as u64;
    let mut at = |within: u64| Duration::from_millis(rng.below(within.max(1)));
    let mut schedule = Vec::new();
    for _ in 0..plan.kills {
        let slot = (at(3_000).as_millis() % 3) as usize;
        schedule.push((at(window * 8 / 10), Fault::Kill(slot)));
    }
    for _ in 0..plan.terminations {
        schedule.push((at(window), Fault::Terminate));
    }
    schedule.push((
        at(window.saturating_sub(plan.report.as_millis() as u64)),
        Fault::Report,
    ));
    // These need rows left to do: in the first half.
    schedule.push((at(window / 2), Fault::OperatorTransaction));
    schedule.push((at(window * 4 / 10), Fault::IdleInTransactionTimeout));
    schedule.push((at(window / 2), Fault::PauseResume));
    schedule.push((at(window / 2), Fault::ReplayPause));
    schedule.sort_by_key(|(at, _)| *at);
    for (at, fault) in &schedule {
        note(
            start,
            &format!("scheduled at +{:.1}s: {}", at.as_secs_f64(), fault.name()),
        );
    }
    let report = Mutex::new(Report::default());
    let opened = Instant::now();
    std::thread::scope(|scope| {
        for (i, (at, fault)) in schedule.into_iter().enumerate() {
            let report = &report;
            scope.spawn(move || {
                let wait = at.saturating_sub(opened.elapsed());
                std::thread::sleep(wait);
                let began = opened.elapsed().as_secs_f64();
                note(start, &format!("fault: {}", fault.name()));
                let mut rng = Rng::new(plan.seed ^ (i as u64 + 77));
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    apply(&fault, plan, env, fleet, &mut rng, report)
                }))
                .unwrap_or_else(|_| Err("the fault panicked (see stderr)".into()));
                note(
                    start,
                    &format!("fault over: {}: {}", fault.name(), show(&outcome)),
                );
                report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .faults
                    .push((fault.name(), began, outcome));
            });
        }
    });
    report.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn show(outcome: &Result<String, String>) -> String {
    match outcome {
        Ok(what) => what.clone(),
        Err(why) => format!("FAILED: {why}"),
    }
}

fn apply(
    fault: &Fault,
    plan: &Plan,
    env: &Env,
    fleet: &Fleet,
    rng: &mut Rng,
    report: &Mutex<Report>,
) -> Result<String, String> {
    match fault {
        Fault::Kill(slot) => fleet.kill_and_restart(*slot),
        Fault::Terminate => terminate(env, rng, report),
        Fault::Report => {
            let mut conn = setup::connect(&env.admin_url)?;
            conn.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ;
                 SELECT count(*) FROM pg_class;
                 SELECT pg_sleep({});
                 COMMIT;",
                plan.report.as_secs_f64()
            ))
            .map_err(|e| format!("the report: {e}"))?;
            Ok(format!(
                "a REPEATABLE READ transaction held its snapshot for {} s",
                plan.report.as_secs()
            ))
        }
        Fault::OperatorTransaction => {
            let mut conn = setup::connect(&env.admin_url)?;
            conn.batch_execute("BEGIN")
                .map_err(|e| format!("BEGIN: {e}"))?;
            let offset = rng.below(200);
            let rows: Vec<Id> = diesel::sql_query(format!(
                "SELECT id FROM user_profiles WHERE kroger_password IS NOT NULL \
                 AND kroger_password_hash IS NULL ORDER BY id OFFSET {offset} LIMIT 1 FOR UPDATE"
            ))
            .load(&mut conn)
            .map_err(|e| format!("lock a pending row: {e}"))?;
            let Some(row) = rows.first() else {
                let _ = conn.batch_execute("ROLLBACK");
                return Err("no pending row was left to lock: the fault came too late".into());
            };
            std::thread::sleep(plan.operator_hold);
            conn.batch_execute("ROLLBACK")
                .map_err(|e| format!("ROLLBACK: {e}"))?;
            Ok(format!(
                "row {} locked (FOR UPDATE) for {} s, then rolled back",
                row.id,
                plan.operator_hold.as_secs()
            ))
        }
        Fault::IdleInTransactionTimeout => {
            setup::exec(
                &env.admin_url,
                &format!("ALTER ROLE {ROLE} SET idle_in_transaction_session_timeout = '2s'"),
            )?;
            Ok("new sessions of the app's role get it (kept to the end)".into())
        }
        Fault::PauseResume => pause_resume(plan, fleet, rng),
        Fault::ReplayPause => {
            let paused = Instant::now();
            std::panic::catch_unwind(AssertUnwindSafe(|| env.standby.pause_replay()))
                .map_err(|_| "pg_wal_replay_pause failed (see stderr)".to_string())?;
            std::thread::sleep(plan.replay_pause);
            std::panic::catch_unwind(AssertUnwindSafe(|| env.standby.resume_replay()))
                .map_err(|_| "pg_wal_replay_resume failed (see stderr)".to_string())?;
            Ok(format!(
                "replay paused for {:.1} s, resumed",
                paused.elapsed().as_secs_f64()
            ))
        }
    }
}

/// Watches (30 s at most) for the migration lock's session (application_name `migrator
/// HOST:PID`) and terminates it once: (seconds until then, what happened).
pub(crate) fn terminate_lock_at_startup(
    admin_url: String,
) -> std::thread::JoinHandle<(f64, Result<String, String>)> {
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut conn = match setup::connect(&admin_url) {
            Ok(conn) => conn,
            Err(e) => return (0.0, Err(e)),
        };
        while began.elapsed() < Duration::from_secs(30) {
            let sessions: Result<Vec<Id>, _> = diesel::sql_query(format!(
                "SELECT pid AS id FROM pg_stat_activity WHERE datname = '{DB}' \
                 AND application_name LIKE 'migrator %' AND pg_terminate_backend(pid)"
            ))
            .load(&mut conn);
            match sessions {
                Ok(killed) if !killed.is_empty() => {
                    let pids: Vec<String> = killed.iter().map(|k| k.id.to_string()).collect();
                    return (
                        began.elapsed().as_secs_f64(),
                        Ok(format!(
                            "lock sessions terminated (holder and waiters): pids {}",
                            pids.join(", ")
                        )),
                    );
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return (began.elapsed().as_secs_f64(), Err(format!("{e}"))),
            }
        }
        (
            30.0,
            Err("no migration lock session was seen within 30 s".into()),
        )
    })
}

fn terminate(env: &Env, rng: &mut Rng, report: &Mutex<Report>) -> Result<String, String> {
    let mut conn = setup::connect(&env.admin_url)?;
    let sessions: Vec<Session> = diesel::sql_query(format!(
        "SELECT pid, COALESCE(application_name, '') AS app, COALESCE(query, '') AS query, \
         COALESCE(state, '') AS state FROM pg_stat_activity \
         WHERE datname = '{DB}' AND usename = '{ROLE}' AND pid <> pg_backend_pid()"
    ))
    .load(&mut conn)
    .map_err(|e| format!("list sessions: {e}"))?;
    // The lock's session names itself; a worker's session last ran the backfill's claim,
    // write or state queries; every other session is the app's pool.
    let kind = |s: &Session| -> &'static str {
        let q = s.query.to_ascii_lowercase();
        if s.app.starts_with("migrator ") {
            "lock"
        } else if q.contains("migrator_backfill")
            || q.contains("skip locked")
            || q.contains("(values")
            || q.contains("__o0")
        {
            "worker"
        } else {
            "app"
        }
    };
    let mut done = Vec::new();
    for wanted in ["app", "worker", "lock"] {
        let candidates: Vec<&Session> = sessions.iter().filter(|s| kind(s) == wanted).collect();
        if candidates.is_empty() {
            done.push(format!("no {wanted} session"));
            continue;
        }
        let victim = candidates[rng.below(candidates.len() as u64) as usize];
        let killed: Vec<Id> = diesel::sql_query(format!(
            "SELECT CASE WHEN pg_terminate_backend({}) THEN 1 ELSE 0 END AS id",
            victim.pid
        ))
        .load(&mut conn)
        .map_err(|e| format!("pg_terminate_backend: {e}"))?;
        if killed.first().is_some_and(|k| k.id == 1) {
            *report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .terminated
                .entry(wanted)
                .or_default() += 1;
            done.push(format!("{wanted} pid {} ({})", victim.pid, victim.state));
        } else {
            done.push(format!("{wanted} pid {} already gone", victim.pid));
        }
    }
    Ok(format!("terminated: {}", done.join(", ")))
}

/// POST `/migrations/backfills/hash_kroger_passwords/{action}` with the admin token as a
/// Bearer header, to a ready process (up to 5 tries on different processes).
fn control(fleet: &Fleet, rng: &mut Rng, action: &str) -> Result<(u16, String), String> {
    let path = format!("/migrations/backfills/{BACKFILL}/{action}");
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let mut last = String::from("no ready process");
    for _ in 0..5 {
        let Some((port, inflight)) = fleet.pick(rng.below(3) as usize) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let answer = http::request_with_headers(
            port,
            "POST",
            &path,
            &[("Authorization", bearer.as_str())],
            None,
            "",
        );
        inflight.fetch_sub(1, Ordering::SeqCst);
        match answer {
            Some(r) if r.status == 200 || r.status == 409 => return Ok((r.status, r.body)),
            Some(r) => {
                last = format!(
                    "{} {}",
                    r.status,
                    r.body.chars().take(200).collect::<String>()
                )
            }
            None => last = "no answer".into(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("POST {path}: {last}"))
}

fn pause_resume(plan: &Plan, fleet: &Fleet, rng: &mut Rng) -> Result<String, String> {
    let (status, body) = control(fleet, rng, "pause")?;
    if status == 409 {
        return Err(format!(
            "pause refused (409: {body}): the fault came too late"
        ));
    }
    std::thread::sleep(plan.paused);
    let (status, resumed) = control(fleet, rng, "resume")?;
    if status != 200 {
        return Err(format!("resume answered {status}: {resumed}"));
    }
    let state = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    Ok(format!(
        "paused ({}) for {} s, resumed ({})",
        state(&body),
        plan.paused.as_secs(),
        state(&resumed)
    ))
}

/// How often sessions of the app's role sat idle for more than 200 ms in a transaction that
/// holds a lock on `user_profiles` (issue 17 item 1: nothing held across a compute; the gap
/// between two statements of a short transaction is far below 200 ms).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdleSamples {
    pub samples: u64,
    pub seen: u64,
    pub most: i64,
}

/// Samples `pg_stat_activity` every 250 ms until `stop` is set.
pub(crate) fn sample_idle_in_transaction(
    admin_url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<IdleSamples> {
    std::thread::spawn(move || {
        let mut found = IdleSamples::default();
        let Ok(mut conn) = setup::connect(&admin_url) else {
            return found;
        };
        while !stop.load(Ordering::SeqCst) {
            let rows: Result<Vec<Id>, _> = diesel::sql_query(format!(
                "SELECT CAST(count(DISTINCT a.pid) AS INTEGER) AS id \
                 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
                 WHERE a.datname = '{DB}' AND a.usename = '{ROLE}' \
                 AND a.state = 'idle in transaction' \
                 AND clock_timestamp() - a.state_change > interval '200 milliseconds' \
                 AND l.relation = 'user_profiles'::regclass"
            ))
            .load(&mut conn);
            if let Ok(rows) = rows {
                let n = rows.first().map_or(0, |r| i64::from(r.id));
                found.samples += 1;
                found.seen += u64::from(n > 0);
                found.most = found.most.max(n);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        found
    })
}
