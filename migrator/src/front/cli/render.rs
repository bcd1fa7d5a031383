//! How the command line prints the library's values: text for people, JSON for scripts.

use serde_json::json;

use super::{EXIT_FAILED, EXIT_OK};
use crate::access::connection::Database;
use crate::foundation::report::{Outcome, Report, StatusReport};
use crate::policy::plan::Plan;

/// `status`: every migration and its row (a table, or JSON).
pub(super) fn status(db: &Database, status: &StatusReport, json: bool) {
    if json {
        let mut out = match serde_json::to_value(status) {
            Ok(out) => out,
            Err(e) => {
                eprintln!("cannot print the status as JSON: {e}");
                return;
            }
        };
        out["database"] = json!(db.url().redacted());
        println!("{out:#}");
        return;
    }
    println!("Database: {}", db.url());
    println!(
        "{:<40} {:<8} {:>8} {:>10}  APPLIED AT / NOTES",
        "MIGRATION", "STATUS", "ATTEMPTS", "TIME (ms)"
    );
    for m in &status.migrations {
        let row = m.row.as_ref();
        let state = m.status_label();
        let mut notes = vec![row.and_then(|r| r.applied_at.clone()).unwrap_or_default()];
        if m.checksum_drift {
            notes.push("CODE CHANGED since applied".into());
        }
        if let Some(e) = row.and_then(|r| r.error_message.as_ref()) {
            notes.push(format!("last error: {e}"));
        }
        if !m.transactional {
            notes.push("non-transactional".into());
        }
        println!(
            "{:<40} {:<8} {:>8} {:>10}  {}",
            m.id,
            state,
            row.map_or(0, |r| r.attempts),
            row.and_then(|r| r.execution_time_ms)
                .map_or("-".to_owned(), |ms| ms.to_string()),
            notes.join("; ").trim_start_matches("; ")
        );
    }
    for r in &status.unknown_applied {
        println!(
            "{:<40} {:<8} {:>8} {:>10}  applied, but not in this binary",
            r.id, r.status, r.attempts, "-"
        );
    }
    for version in &status.pending_sql {
        println!(
            "{version:<40} {:<8} {:>8} {:>10}  SQL migration",
            "pending", 0, "-"
        );
    }
    println!("{} pending", status.pending_count());
}

/// `plan`: the library's plan, as text or as its JSON form.
pub(super) fn plan(plan: &Plan, json: bool) {
    if json {
        match serde_json::to_string_pretty(plan) {
            Ok(out) => println!("{out}"),
            Err(e) => eprintln!("cannot print the plan as JSON: {e}"),
        }
        return;
    }
    println!("Environment: {}", plan.environment);
    println!("Database: {}", plan.database);
    if plan.pending.is_empty() {
        println!("Nothing pending.");
    }
    for m in &plan.pending {
        let tx = if m.transactional {
            "transactional"
        } else {
            "non-transactional"
        };
        let kind = match m.kind {
            crate::policy::plan::Kind::Sql => ", SQL",
            _ => "",
        };
        println!("  {} ({tx}{kind})", m.id);
    }
    for d in &plan.decisions {
        println!(
            "{} {}={} ({}): {}",
            if d.allows { "ok     " } else { "BLOCKS " },
            d.variable,
            d.value,
            match d.source {
                crate::foundation::config::Source::Default => "default",
                _ => "set",
            },
            d.why
        );
    }
    if let Some(confirm) = plan.confirm_with.as_deref() {
        println!("MIGRATION_CONFIRM={confirm}");
    }
    if let Some(backup) = &plan.backup {
        println!("Backup first: {} ({})", backup.dir.display(), backup.label);
    }
    if plan.pending.is_empty() {
        println!("`up` has nothing to do.");
    } else if plan.refusal.is_none() {
        println!("`up` would apply {} migration(s).", plan.pending.len());
    } else {
        println!("`up` would refuse.");
    }
    match &plan.startup_skip {
        None => println!("Start-up would migrate."),
        Some(reason) => println!("Start-up would skip: {reason}."),
    }
}

/// `up --dry-run`: what each pending migration did in the rehearsal; the exit code.
pub(super) fn dry_run(report: &Report) -> u8 {
    println!("Dry run (nothing was changed):");
    for version in &report.sql_migrations {
        println!("  {version}: SQL migration, pending, not rehearsed");
    }
    let mut failed = false;
    for m in &report.migrations {
        let line = match m.outcome {
            Outcome::Rehearsed => format!(
                "rehearsed in {} ms{}",
                m.duration.map_or(0, |d| d.as_millis()),
                m.rows
                    .filter(|r| *r > 0)
                    .map_or(String::new(), |r| format!(", {r} rows"))
            ),
            Outcome::NotRehearsable => {
                "not rehearsable (non-transactional, or after one that is)".to_owned()
            }
            Outcome::Failed => {
                failed = true;
                format!("FAILED: {}", m.error.as_deref().unwrap_or("unknown error"))
            }
            Outcome::Skipped => "skipped by an operator".to_owned(),
            _ => "already applied".to_owned(),
        };
        println!("  {}: {line}", m.id);
    }
    if failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// `up`: what the run applied.
/// What a run that stopped with an error had done: what it applied (kept), what failed, and
/// what it did not start, one line each, on standard output; the error follows on standard
/// error.
pub(super) fn stopped(report: &Report) {
    if let Some(backup) = &report.backup {
        println!("backup written: {}", backup.path.display());
    }
    for version in &report.sql_migrations {
        println!("applied SQL migration {version}");
    }
    for m in &report.migrations {
        match m.outcome {
            Outcome::Applied => println!("applied {}", m.id),
            Outcome::Failed => println!("failed {}", m.id),
            Outcome::NotRun => println!("not run {}", m.id),
            _ => {}
        }
    }
}

pub(super) fn up(report: &Report) {
    let applied: Vec<&str> = report
        .migrations
        .iter()
        .filter(|m| m.outcome == Outcome::Applied)
        .map(|m| m.id.as_str())
        .collect();
    if let Some(backup) = &report.backup {
        println!("backup written: {}", backup.path.display());
    }
    if applied.is_empty() && report.sql_migrations.is_empty() {
        println!("Nothing to do: no pending migrations.");
    } else {
        for version in &report.sql_migrations {
            println!("applied SQL migration {version}");
        }
        for id in applied {
            println!("applied {id}");
        }
    }
}
