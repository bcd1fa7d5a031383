//! The environment policy: which environment this is, what it allows (`ENVIRONMENT`,
//! `AUTO_MIGRATE_ON_STARTUP`, `ENABLE_PROD_MIGRATIONS`, `MIGRATION_REQUIRE_CONFIRMATION`,
//! `MIGRATION_BACKUP_BEFORE`), and how a run is confirmed (`MIGRATION_CONFIRM`, `--yes`, the
//! question on a terminal).

use super::parse::{parse_bool, ENVIRONMENTS};
use super::{vars, Environment};
use crate::foundation::error::{Error, Result};

/// The policy settings of a [`Config`]. The booleans are `None` when not set: their defaults
/// depend on the environment (see [`Config`]'s table), and a [`Setting`] says which applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    pub(super) environment: Environment,
    pub(super) auto_migrate_on_startup: Option<bool>,
    pub(super) enable_prod_migrations: Option<bool>,
    pub(super) require_confirmation: Option<bool>,
    pub(super) backup_before: Option<bool>,
    pub(super) confirm: Option<String>,
    pub(super) assume_yes: bool,
    pub(super) interactive: Option<bool>,
}

impl Policy {
    pub(super) fn new(environment: Environment) -> Policy {
        Policy {
            environment,
            auto_migrate_on_startup: None,
            enable_prod_migrations: None,
            require_confirmation: None,
            backup_before: None,
            confirm: None,
            assume_yes: false,
            interactive: None,
        }
    }

    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Policy> {
        let environment = match lookup(vars::ENVIRONMENT) {
            Some(value) => value.parse()?,
            None => {
                return Err(Error::MissingVariable {
                    variable: vars::ENVIRONMENT,
                    expected: ENVIRONMENTS,
                })
            }
        };
        let flag = |name: &'static str| lookup(name).map(|v| parse_bool(name, &v)).transpose();
        Ok(Policy {
            auto_migrate_on_startup: flag(vars::AUTO_MIGRATE_ON_STARTUP)?,
            enable_prod_migrations: flag(vars::ENABLE_PROD_MIGRATIONS)?,
            require_confirmation: flag(vars::MIGRATION_REQUIRE_CONFIRMATION)?,
            backup_before: flag(vars::MIGRATION_BACKUP_BEFORE)?,
            confirm: lookup(vars::MIGRATION_CONFIRM),
            ..Policy::new(environment)
        })
    }
}
