//! The operator's actions besides a run: a backup now, a rehearsal (dry run), and marking a
//! migration's status by hand. [`Migrator`]'s methods of the same names call these.

use std::time::Instant;

use diesel::Connection;

use crate::access::connection::Database;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};
use crate::foundation::report::{MigrationReport, Outcome, Report};
use crate::policy::plan::MarkAs;
use crate::records::audit;
use crate::records::backup::{self, Backup};
use crate::records::lock::LockGuard;
use crate::records::tracking::{self, Record, Status};
use crate::running::apply::{call, settled, warn_anomalies};
use crate::running::context::Context;
use crate::running::migrations::Migrator;

/// [`Migrator::backup`].
pub(crate) fn backup(db: &Database, config: &Config) -> Result<Backup> {
    let _lock = LockGuard::acquire(db, config.lock_timeout())?;
    backup::take(db, config, "manual")
}

/// [`Migrator::dry_run`].
pub(crate) fn dry_run(migrator: &Migrator, db: &Database, config: &Config) -> Result<Report> {
    let lock = LockGuard::acquire(db, config.lock_timeout())?;
    let table = lock.tracking_table();
    let mut conn = db.get()?;
    let rows = if tracking::exists(&mut conn, &table)? {
        tracking::load(&mut conn, &table)?
    } else {
        Vec::new()
    };
    let state = migrator.compare(rows);
    let mut report = Report::default();
    warn_anomalies(&state, &mut report, migrator);
    if let Some(sql) = &migrator.sql {
        report.sql_migrations = sql.pending_read_only(&mut conn)?;
    }
    let mut blocked = false;
    let _ = conn.transaction::<(), Error, _>(|conn| {
        for m in &state.migrations {
            let mut entry = MigrationReport::with_outcome(m.id.clone(), settled(m));
            let migration = migrator.find(&m.id);
            match migration {
                _ if !m.pending => {}
                Some(migration) if migration.is_transactional() && !blocked => {
                    let start = Instant::now();
                    let mut ctx = Context::new(conn, db, config, migration.id(), true, None, None);
                    match call(migration, &mut ctx) {
                        Ok(()) => {
                            entry.outcome = Outcome::Rehearsed;
                            entry.rows = Some(ctx.progress().snapshot().done);
                        }
                        Err(e) => {
                            log::warn!("Rehearsal of migration {} failed: {e}", m.id);
                            entry.outcome = Outcome::Failed;
                            entry.error = Some(e.to_string());
                            blocked = true;
                        }
                    }
                    entry.duration = Some(start.elapsed());
                }
                _ => {
                    entry.outcome = Outcome::NotRehearsable;
                    blocked = true;
                }
            }
            report.migrations.push(entry);
        }
        // Roll everything back.
        Err(Error::from(diesel::result::Error::RollbackTransaction))
    });
    Ok(report)
}

/// [`Migrator::mark`], recorded in `migrator_audit` as the OS user (refusals too).
pub(crate) fn mark(
    migrator: &Migrator,
    db: &Database,
    config: &Config,
    id: &str,
    to: MarkAs,
) -> Result<()> {
    let result = mark_unrecorded(migrator, db, config, id, to);
    let outcome = audit::outcome(&result, &format!("marked {to}"));
    let _ = audit::record(db, &audit::Actor::os_user(), "mark", id, &outcome);
    result
}

fn mark_unrecorded(
    migrator: &Migrator,
    db: &Database,
    config: &Config,
    id: &str,
    to: MarkAs,
) -> Result<()> {
    let migration = migrator
        .find(id)
        .ok_or_else(|| Error::UnknownMigration { id: id.to_owned() })?;
    let lock = LockGuard::acquire(db, config.lock_timeout())?;
    let table = lock.tracking_table();
    let mut conn = db.get()?;
    tracking::ensure_table(&mut conn, &table)?;
    // The table the lock guards is the one this run uses, and this database from now on.
    tracking::remember(db, &table);
    let status = match to {
        MarkAs::Success => Status::Success,
        MarkAs::Failed => Status::Failed,
        MarkAs::Skipped => Status::Skipped,
        MarkAs::Pending => {
            tracking::delete(&mut conn, &table, id)?;
            log::info!("Migration {id} marked pending (its row was deleted)");
            return Ok(());
        }
    };
    tracking::write(
        &mut conn,
        &table,
        &Record {
            name: id,
            status,
            execution_time_ms: None,
            error_message: None,
            checksum: Some(migration.checksum()),
            applied_by: &tracking::runner_identity(),
            new_attempt: false,
        },
    )?;
    log::info!("Migration {id} marked {status}");
    Ok(())
}

impl Migrator {
    /// Backs the database up now, under the migration lock, into `MIGRATION_BACKUP_DIR` (the
    /// CLI's `backup`): `pg_dump` custom format on PostgreSQL, `VACUUM INTO` on SQLite.
    pub fn backup(&self, db: &Database, config: &Config) -> Result<crate::records::backup::Backup> {
        crate::running::operate::backup(db.for_migrations(), config)
    }

    /// Rehearses the pending migrations without changing anything (the CLI's `up --dry-run`):
    /// under the lock, every pending transactional migration runs, in order, inside one
    /// transaction that is then rolled back, and the report says what each did
    /// ([`Outcome::Rehearsed`], with the rows it reported through its progress). A
    /// non-transactional migration cannot be rehearsed; it and the ones after it (which may
    /// depend on it) are [`Outcome::NotRehearsable`]. Pending SQL migrations are listed in
    /// `sql_migrations` and not rehearsed. No row of `applied_migrations` is written, no backup
    /// is taken, and no confirmation is asked.
    pub fn dry_run(&self, db: &Database, config: &Config) -> Result<Report> {
        crate::running::operate::dry_run(self, db.for_migrations(), config)
    }

    /// Sets the status of migration `id` by hand, under the lock (what an operator would
    /// otherwise do with `UPDATE applied_migrations ...`). Unknown IDs are refused.
    pub fn mark(&self, db: &Database, config: &Config, id: &str, to: MarkAs) -> Result<()> {
        crate::running::operate::mark(self, db.for_migrations(), config, id, to)
    }
}
