//! Confirmation before migrating (`MIGRATION_REQUIRE_CONFIRMATION`), acting on the plan's
//! [`Confirmation`] (which the plan computes, in one place, for `up` and `plan` alike):
//!
//! - `up --yes` ([`crate::Config::dangerous_assume_yes`]) confirms up front;
//! - on an interactive terminal, the plan is shown and the operator is asked
//!   `Apply N migration(s) to ENV database NAME? [y/N]`;
//! - otherwise the run proceeds only if `MIGRATION_CONFIRM` lists exactly the pending IDs
//!   (comma-separated, any order): a pinned plan, so that a deploy never applies a migration
//!   nobody reviewed. The refusal says the exact value that would confirm.

use std::io::{BufRead, Write};

use crate::access::connection::Database;
use crate::foundation::config::vars;
use crate::foundation::error::{Error, Result};
use crate::policy::plan::{Confirmation, Plan};

fn plan_lines(plan: &Plan, name: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "Plan: {} migration(s) for {} database {name} ({}):",
        plan.pending.len(),
        plan.environment,
        plan.database
    )];
    lines.extend(plan.pending.iter().map(|m| {
        format!(
            "  {} ({})",
            m.id,
            if m.transactional {
                "transactional"
            } else {
                "non-transactional"
            }
        )
    }));
    lines
}

/// Asks for, or checks, confirmation of `plan`; an error refuses the run.
pub(crate) fn confirm(db: &Database, plan: &Plan) -> Result<()> {
    if plan.confirmation == Confirmation::NotRequired {
        return Ok(());
    }
    let name = crate::records::backup::database_name(db)?;
    let lines = plan_lines(plan, &name);
    for line in &lines {
        log::info!("{line}");
    }
    match &plan.confirmation {
        Confirmation::NotRequired => Ok(()),
        Confirmation::AssumedYes => {
            log::warn!("Plan confirmed up front (--yes)");
            Ok(())
        }
        Confirmation::Pinned => {
            log::info!("Plan confirmed by MIGRATION_CONFIRM");
            Ok(())
        }
        Confirmation::Terminal => {
            let mut stderr = std::io::stderr().lock();
            for line in &lines {
                let _ = writeln!(stderr, "{line}");
            }
            drop(stderr);
            let question = format!(
                "Apply {} migration(s) to {} database {name}?",
                plan.pending.len(),
                plan.environment
            );
            if ask(&question) {
                log::info!("Plan confirmed at the terminal");
                Ok(())
            } else {
                Err(Error::Refused {
                    reason: "the plan was not confirmed at the prompt".into(),
                })
            }
        }
        Confirmation::Missing | Confirmation::Mismatch { .. } => Err(Error::Refused {
            reason: plan
                .decisions
                .iter()
                .find(|d| d.variable == vars::MIGRATION_REQUIRE_CONFIRMATION)
                .map_or_else(|| "the plan is not confirmed".into(), |d| d.why.clone()),
        }),
    }
}

/// Asks `question` on the terminal (stderr, answer on stdin); true only for y or yes.
pub(crate) fn ask(question: &str) -> bool {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    drop(stderr);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
