//! Strict parsing of the variables' values; an error names the variable.

use std::time::Duration;

use crate::foundation::error::{Error, Result};

/// What `ENVIRONMENT` accepts.
pub(super) const ENVIRONMENTS: &str = "one of development, staging, production";
const BOOLEANS: &str = "true/false, 1/0, yes/no or on/off";
const SECONDS: &str = "a whole number of seconds";

pub(super) fn invalid(variable: &'static str, value: &str, expected: &'static str) -> Error {
    // These variables hold no secrets; still, keep a hostile value from flooding the logs.
    let value: String = value.chars().take(64).collect();
    Error::InvalidVariable {
        variable,
        value,
        expected,
    }
}

/// Parses a boolean variable strictly.
pub(crate) fn parse_bool(variable: &'static str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, BOOLEANS)),
    }
}

/// Parses a positive whole number variable strictly.
pub(crate) fn parse_u32(variable: &'static str, value: &str) -> Result<u32> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(variable, value, "a whole number greater than 0")),
    }
}

pub(super) fn parse_seconds(variable: &'static str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| invalid(variable, value, SECONDS))
}

/// Parses a whole number (0 or more) of megabytes strictly.
pub(super) fn parse_mb(variable: &'static str, value: &str) -> Result<u64> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| invalid(variable, value, "a whole number of megabytes (0 or more)"))
}

/// Parses a whole number of milliseconds strictly: 0 or more with `allow_zero`, else more
/// than 0.
pub(super) fn parse_millis(
    variable: &'static str,
    value: &str,
    allow_zero: bool,
) -> Result<Duration> {
    match value.trim().parse::<u32>() {
        Ok(ms) if allow_zero || ms > 0 => Ok(Duration::from_millis(u64::from(ms))),
        _ if allow_zero => Err(invalid(
            variable,
            value,
            "a whole number of milliseconds (0 or more)",
        )),
        _ => Err(invalid(
            variable,
            value,
            "a whole number of milliseconds greater than 0",
        )),
    }
}
