//! `MIGRATION_ADMIN_TOKEN`: who may pause, resume and cancel backfills from the operator page.
//!
//! The server keeps only a BLAKE2b digest of the token and compares digests in constant time
//! (`subtle`), so neither the comparison's timing nor its length gives the token away, and no
//! `Debug` output or log line can show it.

use axum::http::{header, HeaderMap};
use blake2::{Blake2b512, Digest};
use subtle::ConstantTimeEq;

/// The variable that enables the operator page's controls.
pub const MIGRATION_ADMIN_TOKEN: &str = "MIGRATION_ADMIN_TOKEN";

/// The configured admin token, as its digest.
pub(in crate::demo) struct AdminToken {
    digest: [u8; 64],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

fn digest(token: &str) -> [u8; 64] {
    Blake2b512::digest(token.as_bytes()).into()
}

impl AdminToken {
    /// The token configured in `MIGRATION_ADMIN_TOKEN` (`None` when unset or empty: then every
    /// control request is refused).
    pub(in crate::demo) fn new(configured: Option<String>) -> Option<AdminToken> {
        configured
            .filter(|t| !t.is_empty())
            .map(|t| AdminToken { digest: digest(&t) })
    }

    /// Whether `presented` is the configured token (in constant time).
    fn accepts(&self, presented: &str) -> bool {
        bool::from(self.digest.ct_eq(&digest(presented)))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The token a request presents: `Authorization: Bearer TOKEN`, else `field` (the `token` of
/// the query string or of the form).
pub(super) fn presented<'a>(headers: &'a HeaderMap, field: Option<&'a str>) -> Option<&'a str> {
    bearer(headers).or(field).filter(|t| !t.is_empty())
}

/// `value` percent-encoded for a query string (every byte but `A-Z a-z 0-9 - _ . ~`).
pub(super) fn query_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether a request presenting `presented` may use the controls: only with a token configured
/// and presented, and the two equal.
pub(super) fn authorized(configured: Option<&AdminToken>, presented: Option<&str>) -> bool {
    match (configured, presented) {
        (Some(token), Some(presented)) => token.accepts(presented),
        _ => false,
    }
}
