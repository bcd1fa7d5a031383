//! `backfills`, `backfill pause|resume|cancel NAME` and `work`: background backfills from the
//! command line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EXIT_OK;
use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::records::backfill::state::{BackfillState, BackfillStatus, Control};
use crate::running::backfill::{self, Workers};
use crate::running::migrations::Migrator;

/// How often `work` looks for a backfill while migrations that may schedule one are pending.
const WORK_POLL: Duration = Duration::from_millis(500);

/// `backfills [--json]`.
pub(super) fn list(db: &Database, json: bool) -> Result<u8> {
    let all = backfill::list(db.for_migrations())?;
    if json {
        let out = serde_json::to_string_pretty(&all)
            .map_err(|e| Error::io("cannot print the backfills as JSON")(e.into()))?;
        println!("{out}");
        return Ok(EXIT_OK);
    }
    if all.is_empty() {
        println!("no background backfills");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<28} {:<10} {:>21} {:>10} {:>9} {:>7}  MIGRATION",
        "NAME", "STATUS", "ROWS", "ROWS/S", "ETA", "WORKERS"
    );
    for b in &all {
        println!("{}", line(b));
        if let Some(error) = &b.last_error {
            println!("    last error: {error}");
        }
    }
    Ok(EXIT_OK)
}

fn line(b: &BackfillState) -> String {
    format!(
        "{:<28} {:<10} {:>21} {:>10.1} {:>9} {:>7}  {}",
        b.name,
        b.status,
        format!("{}/{}", b.rows_done, b.rows_total),
        b.rate_per_sec,
        b.eta_secs
            .map_or_else(|| "-".to_owned(), |s| format!("{s}s")),
        b.workers.len(),
        b.migration
    )
}

/// `backfill pause|resume|cancel NAME`, recorded in `migrator_audit` as the OS user.
pub(super) fn control(db: &Database, action: Control, name: &str) -> Result<u8> {
    let actor = crate::records::audit::Actor::os_user();
    let state = crate::records::audit::control_backfill(db.for_migrations(), &actor, name, action)?;
    println!("{name} is {}", state.status);
    Ok(EXIT_OK)
}

/// `work [--threads N] [--batch-size N]`: foreground workers until no backfill is active. While
/// nothing is active yet but migrations are pending (one may schedule a backfill), it waits for
/// at most `MIGRATION_LOCK_TIMEOUT_SECS`. SIGTERM and SIGINT stop it after the batches in
/// flight.
pub(super) fn work(
    migrator: &Migrator,
    db: &Database,
    threads: Option<usize>,
    batch_size: Option<u32>,
) -> Result<u8> {
    let mut config = Config::from_env()?;
    if let Some(rows) = batch_size {
        config.set_batch_size(rows);
    }
    let threads = threads.unwrap_or_else(|| {
        if config.backfill_threads_set() {
            config.backfill_threads()
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(Error::io(format!("cannot handle signal {signal}")))?;
    }
    let db = db.for_migrations();
    if !wait_for_active(migrator, db, &config, &stop)? {
        println!("rows written by this process: 0");
        return Ok(EXIT_OK);
    }
    let bar = std::io::stderr().is_terminal().then(|| watch(db.clone()));
    let result = Workers::run_until_idle(db.clone(), &config, threads.max(1), &stop);
    if let Some((done, handle)) = bar {
        done.store(true, Ordering::Relaxed);
        let _ = handle.join();
    }
    let report = result?;
    for b in backfill::list(db)? {
        if b.status == BackfillStatus::Failed {
            log::error!(
                "Backfill {} failed: {}",
                b.name,
                b.last_error.as_deref().unwrap_or("")
            );
        }
    }
    println!("rows written by this process: {}", report.rows_written);
    Ok(EXIT_OK)
}

/// Waits until a backfill is active; false when none is and no migration is pending (or the
/// wait timed out, or a signal came).
fn wait_for_active(
    migrator: &Migrator,
    db: &Database,
    config: &Config,
    stop: &AtomicBool,
) -> Result<bool> {
    let deadline = Instant::now().checked_add(config.lock_timeout());
    let mut logged = false;
    loop {
        let all = backfill::list(db)?;
        if all.iter().any(|b| b.status == BackfillStatus::Active) {
            return Ok(true);
        }
        let pending = migrator.status(db)?.pending_count();
        if pending == 0 || stop.load(Ordering::Relaxed) {
            if !all.is_empty() {
                log::info!(
                    "No backfill is active (paused, failed or cancelled ones are left alone)"
                );
            }
            return Ok(false);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            log::warn!(
                "{pending} migrations are still pending and no backfill is active after \
                 MIGRATION_LOCK_TIMEOUT_SECS: nothing to work on"
            );
            return Ok(false);
        }
        if !logged {
            log::info!("Waiting for the {pending} pending migrations to schedule a backfill");
            logged = true;
        }
        std::thread::sleep(WORK_POLL);
    }
}

/// A progress bar of all active backfills (every host's rows), redrawn twice a second.
fn watch(db: Database) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::clone(&done);
    let handle = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows, ETA {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        while !finished.load(Ordering::Relaxed) {
            if let Ok(all) = backfill::list(&db) {
                let active: Vec<&BackfillState> = all
                    .iter()
                    .filter(|b| b.status == BackfillStatus::Active)
                    .collect();
                bar.set_length(active.iter().map(|b| b.rows_total).sum());
                bar.set_position(active.iter().map(|b| b.rows_done).sum());
                let names: Vec<&str> = active.iter().map(|b| b.name.as_str()).collect();
                bar.set_message(names.join(", "));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bar.finish();
    });
    (done, handle)
}
