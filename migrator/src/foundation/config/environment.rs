//! The deployment environment, and an effective setting with where it came from.

use std::fmt;
use std::str::FromStr;

use super::parse::{invalid, ENVIRONMENTS};
use crate::foundation::error::{Error, Result};

/// The deployment environment (`ENVIRONMENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Environment {
    /// A developer's machine: migrate on start-up, start even if a migration fails.
    Development,
    /// Production-like testing: as development.
    Staging,
    /// Strict: migrations need `ENABLE_PROD_MIGRATIONS=true`, a failure stops start-up.
    Production,
}

impl Environment {
    /// The lowercase name, as `ENVIRONMENT` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = Error;

    fn from_str(value: &str) -> Result<Environment> {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" => Ok(Environment::Development),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            _ => Err(invalid("ENVIRONMENT", value, ENVIRONMENTS)),
        }
    }
}

/// Where a setting's value came from; `plan` and skip messages say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Source {
    /// The environment's default.
    Default,
    /// Set explicitly (environment variable or builder).
    Explicit,
}

/// An effective setting and where its value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// Set explicitly, or the environment's default.
    pub source: Source,
}

pub(super) fn setting(explicit: Option<bool>, default: bool) -> Setting<bool> {
    match explicit {
        Some(value) => Setting {
            value,
            source: Source::Explicit,
        },
        None => Setting {
            value: default,
            source: Source::Default,
        },
    }
}
