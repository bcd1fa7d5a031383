//! Applying one migration: its transaction (or `running` row), its outcome recorded, a panic
//! turned into an error, whatever it left open rolled back; and the report of settled ones.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;

use crate::config::Config;
use crate::connection::{AnyConnection, Database};
use crate::context::{Context, ProgressObserver};
use crate::ddl_lock::{self, BlockerWatch};
use crate::error::{Error, Result};
use crate::lock::LockWatch;
use crate::registry::Migration;
use crate::report::{ChecksumDrift, MigrationState, Outcome, Report, StatusReport};
use crate::runner::Migrator;
use crate::tracking::{self, Record, Status, Table};

/// The outcome of a migration this run does not attempt.
pub(crate) fn settled(m: &MigrationState) -> Outcome {
    match m.row.as_ref().map(|r| r.status) {
        Some(Status::Skipped) => Outcome::Skipped,
        _ => Outcome::AlreadyApplied,
    }
}

/// Logs rows of unknown migrations and checksum drift, and puts them in `report`.
pub(crate) fn warn_anomalies(state: &StatusReport, report: &mut Report, migrator: &Migrator) {
    for row in &state.unknown_applied {
        log::warn!(
            "applied_migrations lists {} (status {}), which this binary does not contain: \
             was it renamed, or is this binary older than the database?",
            row.id,
            row.status
        );
    }
    report.unknown_applied = state.unknown_applied.clone();
    for m in state.migrations.iter().filter(|m| m.checksum_drift) {
        let recorded = m
            .row
            .as_ref()
            .and_then(|r| r.checksum.clone())
            .unwrap_or_default();
        let current = migrator
            .find(&m.id)
            .map(|x| x.checksum().to_owned())
            .unwrap_or_default();
        log::warn!(
            "Migration {} changed since it was applied (checksum {recorded}, now {current}); \
             applied migrations are not run again: put further changes in a new migration",
            m.id
        );
        report.checksum_drift.push(ChecksumDrift {
            id: m.id.clone(),
            recorded,
            current,
        });
    }
}

/// What every migration of one locked run shares.
pub(crate) struct Run<'a> {
    pub(crate) db: &'a Database,
    pub(crate) config: &'a Config,
    /// The tracking table the lock guards.
    pub(crate) table: &'a Table,
    /// This runner's `applied_by`.
    pub(crate) me: &'a str,
    /// The run's lock, watched while migrations run.
    pub(crate) lock: &'a Arc<LockWatch>,
}

/// Applies one migration and records the attempt. On failure returns the duration and cause.
pub(crate) fn apply(
    run: &Run<'_>,
    m: &'static Migration,
    observer: Option<ProgressObserver>,
) -> std::result::Result<(Duration, u64), (Duration, Error)> {
    let Run {
        db,
        config,
        table,
        me,
        lock,
    } = *run;
    let start = Instant::now();
    // Never start, or record, a migration without holding the lock. While it runs, its context
    // and progress reporter watch the lock too.
    let held = || lock.ensure_held();
    held().map_err(|e| (start.elapsed(), e))?;
    let mut conn = db.get().map_err(|e| (start.elapsed(), e))?;
    log::info!("Applying migration {}", m.id());
    let record = |status, elapsed: Duration, new_attempt| Record {
        name: m.id(),
        status,
        execution_time_ms: Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)),
        error_message: None,
        checksum: Some(m.checksum()),
        applied_by: me,
        new_attempt,
    };
    let mut rows = 0;
    // PostgreSQL: an attempt stopped by its lock timeout is retried whole (see `ddl_lock`).
    let mut retry: u32 = 0;
    let result = loop {
        let watch = BlockerWatch::start(db, &mut conn, config);
        let outcome = if m.is_transactional() {
            conn.transaction::<_, Error, _>(|conn| {
                ddl_lock::configure(conn, m, config, true, retry == 0)?;
                let mut ctx = Context::new(
                    conn,
                    db,
                    config,
                    m.id(),
                    true,
                    observer.clone(),
                    Some(Arc::clone(lock)),
                );
                call(m, &mut ctx)?;
                rows = ctx.progress().snapshot().done;
                drop(ctx);
                // Lost meanwhile: roll back rather than commit beside another runner.
                held()?;
                tracking::write(conn, table, &record(Status::Success, start.elapsed(), true))
            })
        } else {
            let running = if retry == 0 {
                tracking::write(
                    &mut conn,
                    table,
                    &record(Status::Running, Duration::ZERO, true),
                )
            } else {
                Ok(())
            };
            let outcome = running
                .and_then(|()| ddl_lock::configure(&mut conn, m, config, false, retry == 0))
                .and_then(|()| {
                    let mut ctx = Context::new(
                        &mut conn,
                        db,
                        config,
                        m.id(),
                        false,
                        observer.clone(),
                        Some(Arc::clone(lock)),
                    );
                    call(m, &mut ctx)?;
                    rows = ctx.progress().snapshot().done;
                    Ok(())
                })
                .and_then(|()| held())
                .and_then(|()| {
                    tracking::write(
                        &mut conn,
                        table,
                        &record(Status::Success, start.elapsed(), false),
                    )
                });
            if outcome.is_err() {
                unwind_transactions(&mut conn);
            }
            ddl_lock::reset(&mut conn, m);
            outcome
        };
        let seen = watch.map(BlockerWatch::stop).unwrap_or_default();
        match outcome {
            Err(e) if ddl_lock::is_lock_timeout(&e, &seen) => {
                let blockers = ddl_lock::describe(&seen.ever);
                let timeout_ms = config.ddl_lock_timeout().as_millis();
                if retry < config.ddl_lock_retries() {
                    let pause = ddl_lock::backoff(retry);
                    log::warn!(
                        "Migration {} could not take a table lock within {timeout_ms} ms \
                         (MIGRATION_DDL_LOCK_TIMEOUT_MS) on attempt {} of {}; {blockers}; \
                         retrying in {} ms",
                        m.id(),
                        retry + 1,
                        config.ddl_lock_retries().saturating_add(1),
                        pause.as_millis()
                    );
                    std::thread::sleep(pause);
                    retry += 1;
                    if let Err(lost) = held() {
                        break Err(lost);
                    }
                    continue;
                }
                break Err(Error::DdlLockTimeout {
                    timeout: config.ddl_lock_timeout(),
                    attempts: retry.saturating_add(1),
                    blockers,
                    cause: Box::new(e),
                });
            }
            other => break other,
        }
    };
    let elapsed = start.elapsed();
    match result {
        Ok(()) => {
            log::info!("Migration {} applied in {} ms", m.id(), elapsed.as_millis());
            Ok((elapsed, rows))
        }
        Err(cause) => {
            let message = cause.to_string();
            log::error!("Migration {} failed: {message}", m.id());
            if let Err(lost) = held() {
                // Another runner may own the row now: record nothing.
                log::error!("Not recording the failure of migration {}: {lost}", m.id());
                return Err((elapsed, lost));
            }
            // Whatever the migration left open (a panic inside a nested transaction, a raw
            // BEGIN) is rolled back, so that the failed row is committed, and the connection
            // goes back to the pool clean.
            unwind_transactions(&mut conn);
            // A transactional attempt's `running`/`success` writes were rolled back with it.
            let failed = Record {
                error_message: Some(&message),
                ..record(Status::Failed, elapsed, m.is_transactional())
            };
            if let Err(e) = tracking::write(&mut conn, table, &failed) {
                log::error!("Could not record the failure of migration {}: {e}", m.id());
            }
            Err((elapsed, cause))
        }
    }
}

/// Rolls back every transaction level Diesel knows of, then any transaction opened behind its
/// back (a raw `BEGIN`; outside a transaction PostgreSQL only warns and SQLite errors, both
/// ignored).
fn unwind_transactions(conn: &mut AnyConnection) {
    use diesel::connection::{SimpleConnection, TransactionManager};
    type Manager = <AnyConnection as Connection>::TransactionManager;
    for _ in 0..64 {
        match Manager::transaction_manager_status_mut(conn).transaction_depth() {
            Ok(Some(_)) => {
                if Manager::rollback_transaction(conn).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = conn.batch_execute("ROLLBACK");
}

/// Calls the migration, turning a panic into an error so that it is rolled back and recorded.
pub(crate) fn call(m: &Migration, ctx: &mut Context<'_>) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(|| m.call(ctx))) {
        Ok(result) => result,
        Err(payload) => {
            let message = crate::error::panic_message(&*payload);
            Err(Error::Panic { message })
        }
    }
}
