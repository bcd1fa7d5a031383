//! Confirmation before migrating (`MIGRATION_REQUIRE_CONFIRMATION`).
//!
//! The plan (environment, redacted database URL, each pending migration and whether it is
//! transactional) is shown, then:
//! - on an interactive terminal, the operator is asked
//!   `Apply N migration(s) to ENV database NAME? [y/N]`;
//! - otherwise the run proceeds only if `MIGRATION_CONFIRM` lists exactly the pending IDs
//!   (comma-separated, any order): a pinned plan, so that a deploy never applies a migration
//!   nobody reviewed. The refusal says the exact value that would confirm.
//! - `Config::dangerous_assume_yes` (the CLI's `up --yes`) confirms up front.

use std::io::{BufRead, Write};

use crate::config::Config;
use crate::connection::Database;
use crate::error::{Error, Result};

/// A pending migration as the plan shows it.
pub(crate) struct Planned {
    pub id: String,
    pub transactional: bool,
}

fn plan_lines(db: &Database, config: &Config, name: &str, plan: &[Planned]) -> Vec<String> {
    let mut lines = vec![format!(
        "Plan: {} migration(s) for {} database {name} ({}):",
        plan.len(),
        config.environment(),
        db.url()
    )];
    lines.extend(plan.iter().map(|m| {
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

/// Whether a pinned plan (`MIGRATION_CONFIRM`: comma-separated, any order, spaces ignored)
/// lists exactly `ids`.
pub(crate) fn pinned_plan_matches(given: Option<&str>, ids: &[&str]) -> bool {
    let Some(given) = given else {
        return false;
    };
    let mut listed: Vec<&str> = given
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    listed.sort_unstable();
    let mut wanted = ids.to_vec();
    wanted.sort_unstable();
    listed == wanted
}

/// Asks for, or checks, confirmation of `plan`; an error refuses the run.
pub(crate) fn confirm(db: &Database, config: &Config, plan: &[Planned]) -> Result<()> {
    if plan.is_empty() || !config.require_confirmation_setting().0 {
        return Ok(());
    }
    let name = crate::backup::database_name(db)?;
    let lines = plan_lines(db, config, &name, plan);
    for line in &lines {
        log::info!("{line}");
    }
    let ids: Vec<&str> = plan.iter().map(|m| m.id.as_str()).collect();
    let pinned = ids.join(",");
    if config.assume_yes_value() {
        log::warn!("Plan confirmed up front (--yes)");
        return Ok(());
    }
    if config.interactive_value() {
        let mut stderr = std::io::stderr().lock();
        for line in &lines {
            let _ = writeln!(stderr, "{line}");
        }
        drop(stderr);
        let question = format!(
            "Apply {} migration(s) to {} database {name}?",
            plan.len(),
            config.environment()
        );
        return if ask(&question) {
            log::info!("Plan confirmed at the terminal");
            Ok(())
        } else {
            Err(Error::Refused {
                reason: "the plan was not confirmed at the prompt".into(),
            })
        };
    }
    match config.confirm_value() {
        Some(_) if pinned_plan_matches(config.confirm_value(), &ids) => {
            log::info!("Plan confirmed by MIGRATION_CONFIRM");
            Ok(())
        }
        Some(given) => Err(Error::Refused {
            reason: format!(
                "MIGRATION_CONFIRM={given:?} does not list exactly the pending \
                 migrations; to apply them, set MIGRATION_CONFIRM={pinned}"
            ),
        }),
        None => Err(Error::Refused {
            reason: format!(
                "MIGRATION_REQUIRE_CONFIRMATION is true and there is no terminal to ask: \
                 review the plan and set MIGRATION_CONFIRM={pinned}"
            ),
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
