//! The plan: what a run would do here and now, and why.
//!
//! One decision, one place: [`Migrator::plan`](crate::Migrator::plan) computes it, and `run`,
//! confirmation, the CLI's `plan` and an application's health endpoint read it; front ends only render it
//! (as text, or as JSON from its one [`serde::Serialize`] form).

use std::path::PathBuf;

use serde::Serialize;

use crate::foundation::config::{vars, Config, Environment, Setting, Source};
use crate::foundation::error::{Error, Result};
use crate::foundation::report::StatusReport;

/// Where a pending migration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Kind {
    /// A Diesel SQL migration (run first, in Diesel's own table).
    Sql,
    /// A code migration (`#[migration]`).
    Code,
}

/// One pending migration, in run order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedMigration {
    /// Its ID (a SQL migration's Diesel name).
    pub id: String,
    /// SQL or code.
    pub kind: Kind,
    /// Whether it runs in one transaction.
    pub transactional: bool,
}

/// One policy decision: a variable, its effective value, and what it decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Decision {
    /// The variable (`ENABLE_PROD_MIGRATIONS`, ...).
    pub variable: &'static str,
    /// Its effective value, as the variable spells it.
    pub value: String,
    /// Whether it was set or is the environment's default.
    pub source: Source,
    /// Whether it lets `up` go ahead.
    pub allows: bool,
    /// What it decides, in words.
    pub why: String,
}

/// What confirmation (`MIGRATION_REQUIRE_CONFIRMATION`) needs before `up` applies the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Confirmation {
    /// None: nothing is pending, or confirmation is not required.
    NotRequired,
    /// Confirmed up front (`up --yes`).
    AssumedYes,
    /// `up` asks at the terminal.
    Terminal,
    /// `MIGRATION_CONFIRM` lists exactly the pending migrations.
    Pinned,
    /// An unattended run needs `MIGRATION_CONFIRM`; it is not set.
    Missing,
    /// `MIGRATION_CONFIRM` is set but does not list exactly the pending migrations.
    Mismatch {
        /// What it is set to.
        given: String,
    },
}

impl Confirmation {
    /// Whether `up` may go ahead without asking anyone (a terminal question still may refuse).
    pub fn allows(&self) -> bool {
        !matches!(self, Confirmation::Missing | Confirmation::Mismatch { .. })
    }
}

/// Where the backup taken before migrating goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupTarget {
    /// The directory (`MIGRATION_BACKUP_DIR`).
    pub dir: PathBuf,
    /// The label that ends the file name (`before-ID` of the first pending migration).
    pub label: String,
}

/// What a run would do here and now, and why (see [`crate::Migrator::plan`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// The environment.
    pub environment: Environment,
    /// The database, password redacted.
    pub database: String,
    /// Pending migrations in run order: SQL migrations first, then code migrations.
    pub pending: Vec<PlannedMigration>,
    /// Each policy decision that applies to `up`, in order.
    pub decisions: Vec<Decision>,
    /// What confirmation needs.
    pub confirmation: Confirmation,
    /// The exact `MIGRATION_CONFIRM` value that confirms this plan (the pending IDs, in run
    /// order, comma-separated), when something is pending.
    pub confirm_with: Option<String>,
    /// Where the backup goes, when one is taken first.
    pub backup: Option<BackupTarget>,
    /// Whether `up` would go ahead: no decision blocks it.
    pub up_allowed: bool,
    /// Why `up` would refuse, if it would (every blocking decision, joined).
    pub refusal: Option<String>,
    /// Why start-up would skip migrating, if it would.
    pub startup_skip: Option<String>,
    /// The tracking table read against the binary's migrations.
    #[serde(skip)]
    pub status: StatusReport,
}

impl Plan {
    /// Builds the plan of `config` for the tracking state `status` (pending SQL included).
    pub(crate) fn new(config: &Config, database: String, status: StatusReport) -> Plan {
        let pending: Vec<PlannedMigration> = status
            .pending_sql
            .iter()
            .map(|id| PlannedMigration {
                id: id.clone(),
                kind: Kind::Sql,
                transactional: true,
            })
            .chain(status.pending().map(|m| PlannedMigration {
                id: m.id.clone(),
                kind: Kind::Code,
                transactional: m.transactional,
            }))
            .collect();
        let ids: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
        let confirm_with = (!ids.is_empty()).then(|| ids.join(","));
        let confirmation = confirmation(config, &ids);
        let mut decisions = vec![environment_decision(config)];
        if !pending.is_empty() {
            decisions.push(confirmation_decision(config, &confirmation, &confirm_with));
            decisions.push(backup_decision(config));
        }
        let backup = match (config.backup_before().value, pending.first()) {
            (true, Some(first)) => Some(BackupTarget {
                dir: config.backup_dir().to_path_buf(),
                label: format!("before-{}", first.id),
            }),
            _ => None,
        };
        let blocking: Vec<&str> = decisions
            .iter()
            .filter(|d| !d.allows)
            .map(|d| d.why.as_str())
            .collect();
        let refusal = (!blocking.is_empty()).then(|| blocking.join("; "));
        Plan {
            environment: config.environment(),
            database,
            pending,
            decisions,
            confirmation,
            confirm_with,
            backup,
            up_allowed: refusal.is_none(),
            refusal,
            startup_skip: config.startup_skip_reason(),
            status,
        }
    }

    /// Whether `up` would apply something now.
    pub fn would_apply(&self) -> bool {
        !self.pending.is_empty() && self.up_allowed
    }

    /// The policy refusal (production not enabled) as an error, if any. Confirmation is
    /// checked later, by [`crate::Migrator::run`], under the lock.
    pub(crate) fn check_policy(&self) -> Result<()> {
        match self.decisions.first() {
            Some(d) if !d.allows => Err(Error::Refused {
                reason: d.why.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// The one rule of confirmation, in the order `up` applies it: `--yes`, then the terminal, then
/// the pinned plan.
fn confirmation(config: &Config, ids: &[&str]) -> Confirmation {
    if ids.is_empty() || !config.require_confirmation().value {
        Confirmation::NotRequired
    } else if config.assume_yes() {
        Confirmation::AssumedYes
    } else if config.interactive() {
        Confirmation::Terminal
    } else {
        match config.confirm() {
            None => Confirmation::Missing,
            Some(given) if pinned_plan_matches(given, ids) => Confirmation::Pinned,
            Some(given) => Confirmation::Mismatch {
                given: given.to_owned(),
            },
        }
    }
}

/// Whether a pinned plan (`MIGRATION_CONFIRM`: comma-separated, any order, spaces ignored)
/// lists exactly `ids`.
fn pinned_plan_matches(given: &str, ids: &[&str]) -> bool {
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

fn flag(value: bool) -> String {
    value.to_string()
}

fn environment_decision(config: &Config) -> Decision {
    let env = config.environment();
    if env != Environment::Production {
        return Decision {
            variable: vars::ENVIRONMENT,
            value: env.to_string(),
            source: Source::Explicit,
            allows: true,
            why: format!("{env}: migrations are allowed"),
        };
    }
    let Setting {
        value: enabled,
        source,
    } = config.enable_prod_migrations();
    Decision {
        variable: vars::ENABLE_PROD_MIGRATIONS,
        value: flag(enabled),
        source,
        allows: enabled,
        why: config
            .run_refusal()
            .unwrap_or_else(|| "production migrations are allowed".into()),
    }
}

fn confirmation_decision(
    config: &Config,
    confirmation: &Confirmation,
    confirm_with: &Option<String>,
) -> Decision {
    let Setting {
        value: required,
        source,
    } = config.require_confirmation();
    let pinned = confirm_with.as_deref().unwrap_or_default();
    let why = match confirmation {
        Confirmation::NotRequired => "no confirmation".to_owned(),
        Confirmation::AssumedYes => "confirmed up front (--yes)".to_owned(),
        Confirmation::Terminal => "`up` asks at the terminal (or pass --yes)".to_owned(),
        Confirmation::Pinned => "confirmed by MIGRATION_CONFIRM".to_owned(),
        Confirmation::Missing => format!(
            "MIGRATION_REQUIRE_CONFIRMATION is true and there is no terminal to ask: review \
             the plan and set MIGRATION_CONFIRM={pinned}"
        ),
        Confirmation::Mismatch { given } => format!(
            "MIGRATION_CONFIRM={given:?} does not list exactly the pending migrations; to \
             apply them, set MIGRATION_CONFIRM={pinned}"
        ),
    };
    Decision {
        variable: vars::MIGRATION_REQUIRE_CONFIRMATION,
        value: flag(required),
        source,
        allows: confirmation.allows(),
        why,
    }
}

fn backup_decision(config: &Config) -> Decision {
    let Setting {
        value: backup,
        source,
    } = config.backup_before();
    Decision {
        variable: vars::MIGRATION_BACKUP_BEFORE,
        value: flag(backup),
        source,
        allows: true,
        why: if backup {
            format!(
                "a backup is written to {} first",
                config.backup_dir().display()
            )
        } else {
            "no backup".into()
        },
    }
}

/// What [`Migrator::mark`](crate::Migrator::mark) writes (the CLI's `mark NAME STATUS` parses it directly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum MarkAs {
    /// Applied (e.g. fixed by hand): never run.
    Success,
    /// Failed: run again on the next run.
    Failed,
    /// Not wanted: never run.
    Skipped,
    /// No row at all: run on the next run as if new.
    Pending,
}

impl std::fmt::Display for MarkAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MarkAs::Success => "success",
            MarkAs::Failed => "failed",
            MarkAs::Skipped => "skipped",
            MarkAs::Pending => "pending",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pinned_plan_matches;

    #[test]
    fn pinned_plans_list_exactly_the_pending_ids() {
        let ids = ["001_a", "002_b"];
        assert!(pinned_plan_matches("001_a,002_b", &ids));
        assert!(pinned_plan_matches(" 002_b , 001_a ,", &ids));
        assert!(!pinned_plan_matches("001_a", &ids));
        assert!(!pinned_plan_matches("001_a,002_b,003_c", &ids));
        assert!(!pinned_plan_matches("", &ids));
    }
}
