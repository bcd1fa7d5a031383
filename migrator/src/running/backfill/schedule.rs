//! A migration schedules a named backfill ([`Context::backfill`]) or finishes one
//! ([`Context::finalize_backfill`]).

use std::time::Instant;

use diesel::sql_types::{BigInt, Nullable};
use diesel::{QueryableByName, RunQueryDsl};

use super::claim::Lease;
use super::{named, Backfill, BackfillReport};
use crate::foundation::config::BackfillMode;
use crate::foundation::error::{Error, Result};
use crate::records::backfill::state::{self, BackfillState, BackfillStatus};
use crate::records::backfill::store::{self, NewBackfill, Sink, Tables};
use crate::records::tracking;
use crate::running::context::Context;

/// What [`Context::backfill`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Scheduled {
    /// How it ran (`MIGRATION_BACKFILL`).
    pub mode: BackfillMode,
    /// Rows written inline by this migration.
    pub rows_inline: u64,
    /// Whether rows are left for the background workers.
    pub handed_off: bool,
    /// The backfill's row after scheduling.
    pub state: BackfillState,
}

#[derive(QueryableByName)]
struct MaxKey {
    #[diesel(sql_type = Nullable<BigInt>)]
    k: Option<i64>,
}

impl Context<'_> {
    /// Schedules the registered backfill `name` (see
    /// [`register_backfill!`](crate::register_backfill)) and, per `MIGRATION_BACKFILL`, runs it
    /// inline (`inline`), hands it to the background workers at once (`background`), or runs it
    /// inline for at most `MIGRATION_INLINE_BACKFILL_SECS` and hands off the rest (`auto`).
    ///
    /// The backfill covers the keys up to the largest one now (`upper_key`): rows the
    /// application inserts later are its own. Workers of any process of the binary (the app's,
    /// after start-up, or the CLI's `work`) share it through the database. A later migration
    /// that needs it done calls [`Context::finalize_backfill`].
    ///
    /// Only in `transaction = false` migrations (it works through the pool).
    pub fn backfill(&mut self, name: &str) -> Result<Scheduled> {
        let registered = named::find(name)?;
        self.database()?;
        let job = registered.build(self.config())?;
        let tables = self.backfill_tables()?;
        let mode = self.config().backfill_mode();
        job.backfill.check_key(self.conn())?;
        let upper_key = max_key(self, &job.backfill)?;
        // An estimate in bounded time, not a count: start-up must not read the whole table.
        let estimate = job.backfill.estimate_pending(self.conn(), upper_key)?;
        let rows_total = estimate.rows;
        let about = if estimate.exact { "" } else { "about " };
        let migration = self.id();
        let state = store::schedule(
            self.conn(),
            &tables,
            &NewBackfill {
                name: registered.name(),
                migration,
                rows_total,
                batch_size: job.backfill.effective_batch_size(),
                upper_key,
            },
        )?;
        store::set_definition(self.conn(), &tables, registered.name(), &job.checksum())?;
        if state.status != BackfillStatus::Active {
            log::info!(
                "Backfill {name} is {}: migration {} leaves it so",
                state.status,
                self.id()
            );
            return Ok(Scheduled {
                mode,
                rows_inline: 0,
                handed_off: false,
                state,
            });
        }
        let deadline = match mode {
            BackfillMode::Background => {
                log::info!(
                    "Backfill {name} scheduled: {about}{rows_total} rows up to key {} for the \
                     background workers",
                    upper_key.map_or_else(|| "(none)".to_owned(), |k| k.to_string())
                );
                return self.scheduled(name, &tables, mode, 0, true);
            }
            BackfillMode::Inline => None,
            BackfillMode::Auto => {
                Instant::now().checked_add(self.config().inline_backfill_budget())
            }
        };
        let report = self.run_inline(name, &job, &tables, deadline, true)?;
        if let Some(status) = report.stopped_by {
            // An operator paused or cancelled it meanwhile: the migration goes on without the
            // rest (a paused backfill goes to the background workers once resumed; a
            // cancelled one until a later migration finalizes it).
            log::info!(
                "Backfill {name} was {status} by an operator during migration {}: {} rows done \
                 inline; {}",
                self.id(),
                report.rows_updated,
                if status == BackfillStatus::Paused {
                    "the rest goes to the background workers once it is resumed"
                } else {
                    "nobody works on the rest unless a later migration finalizes it"
                }
            );
            return self.scheduled(
                name,
                &tables,
                mode,
                report.rows_updated,
                status == BackfillStatus::Paused,
            );
        }
        if report.unfinished {
            log::info!(
                "Backfill {name}: {} rows done inline within MIGRATION_INLINE_BACKFILL_SECS; \
                 the rest goes to the background workers",
                report.rows_updated
            );
            return self.scheduled(name, &tables, mode, report.rows_updated, true);
        }
        store::transition(
            self.conn(),
            &tables,
            name,
            &[BackfillStatus::Active],
            BackfillStatus::Finished,
            None,
        )?;
        self.scheduled(name, &tables, mode, report.rows_updated, false)
    }

    /// Finishes the backfill `name` inline, under the migration lock: every row still pending,
    /// including those beyond its `upper_key` (inserted after it was scheduled), whatever its
    /// state (paused, failed or cancelled ones too). For a migration that needs the backfill
    /// done, e.g. before dropping the column it read. A backfill never scheduled is run whole.
    ///
    /// Only in `transaction = false` migrations (it works through the pool).
    pub fn finalize_backfill(&mut self, name: &str) -> Result<BackfillReport> {
        let registered = named::find(name)?;
        self.database()?;
        let job = registered.build(self.config())?;
        let tables = self.backfill_tables()?;
        let upper_key = max_key(self, &job.backfill)?;
        let migration = self.id();
        store::schedule(
            self.conn(),
            &tables,
            &NewBackfill {
                name: registered.name(),
                migration,
                rows_total: 0,
                batch_size: job.backfill.effective_batch_size(),
                upper_key,
            },
        )?;
        store::set_definition(self.conn(), &tables, registered.name(), &job.checksum())?;
        log::info!("Finalizing backfill {name}: what is left runs inline");
        let report = self.run_inline(name, &job, &tables, None, false)?;
        store::transition(
            self.conn(),
            &tables,
            name,
            &[
                BackfillStatus::Active,
                BackfillStatus::Paused,
                BackfillStatus::Failed,
                BackfillStatus::Cancelled,
            ],
            BackfillStatus::Finished,
            None,
        )?;
        Ok(report)
    }

    fn backfill_tables(&mut self) -> Result<Tables> {
        let db = self.database()?.clone();
        let table = tracking::locate(&db, self.conn())?;
        store::ensure(self.conn(), &table)
    }

    fn run_inline(
        &mut self,
        name: &str,
        job: &super::Job,
        tables: &Tables,
        deadline: Option<Instant>,
        obey_operator: bool,
    ) -> Result<BackfillReport> {
        let db = self.database()?.clone();
        let mut backfill: Backfill = job.backfill.clone();
        if let Some(rows) = self.config().batch_size() {
            backfill.batch_size(rows);
        }
        if let Some(threads) = self.config().worker_threads() {
            backfill.threads(threads);
        }
        backfill.ddl_lock_timeout(self.config().ddl_lock_timeout());
        // The run is a worker too: its claims are leased like the background workers', so
        // that workers of other processes (still running, e.g. of the previous version) step
        // around them.
        let holder = format!(
            "{}:{}:inline",
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        );
        let leased = crate::access::backend::of(db.backend()).leases();
        if leased {
            // Under the migration lock: another inline run's lease is a dead one's.
            store::remove_gone_workers(self.conn(), tables, &holder, true)?;
            store::heartbeat(self.conn(), tables, &holder, 0, Some(name))?;
            backfill.lease = Some(Lease {
                tables: tables.clone(),
                name: name.to_owned(),
                holder: holder.clone(),
                ttl: Lease::ttl_for(self.config()),
            });
        }
        backfill.sink = Some(Sink {
            tables: tables.clone(),
            name: name.to_owned(),
            worker: leased.then(|| holder.clone()),
        });
        backfill.deadline = deadline;
        backfill.obey_operator = obey_operator;
        let report = backfill.run(&db, self.progress(), |inputs| (job.compute)(inputs));
        if leased {
            if let Err(e) = store::remove_worker(self.conn(), tables, &holder) {
                log::warn!("Could not remove the inline worker row of backfill {name}: {e}");
            }
        }
        report
    }

    fn scheduled(
        &mut self,
        name: &str,
        tables: &Tables,
        mode: BackfillMode,
        rows_inline: u64,
        handed_off: bool,
    ) -> Result<Scheduled> {
        let state = state::load_one(self.conn(), tables, name)?.ok_or_else(|| {
            Error::BackgroundBackfill {
                name: name.to_owned(),
                reason: "its row vanished".into(),
                source: None,
            }
        })?;
        Ok(Scheduled {
            mode,
            rows_inline,
            handed_off,
            state,
        })
    }
}

/// The largest key of the backfill's table now (`None` for an empty table).
fn max_key(ctx: &mut Context<'_>, backfill: &Backfill) -> Result<Option<i64>> {
    let found: MaxKey = diesel::sql_query(format!(
        "SELECT CAST(MAX({}) AS BIGINT) AS k FROM {}",
        backfill.key(),
        backfill.table()
    ))
    .get_result(ctx.conn())
    .map_err(Error::db(format!(
        "cannot read the largest key of {}",
        backfill.table()
    )))?;
    Ok(found.k)
}
