//! `MIGRATION_ADMIN_TOKEN`: who may pause, resume and cancel backfills from the operator page,
//! and see error texts, hosts and workers. It is presented once (the login form, or an
//! `Authorization: Bearer` header on each request of a script), never in a URL.
//!
//! The server keeps only a BLAKE2b digest of the token and compares digests in constant time
//! (`subtle`), so neither the comparison's timing nor its length gives the token away, and no
//! `Debug` output or log line can show it.

use axum::http::{header, HeaderMap};
use blake2::{Blake2b512, Digest};
use subtle::ConstantTimeEq;

/// The variable that enables the operator page's controls.
pub(crate) const MIGRATION_ADMIN_TOKEN: &str = "MIGRATION_ADMIN_TOKEN";

/// The variable naming the admin token in the audit trail (default `admin`).
pub(crate) const MIGRATION_ADMIN_TOKEN_LABEL: &str = "MIGRATION_ADMIN_TOKEN_LABEL";

/// The configured admin token, as its digest, and its label.
pub(in crate::demo) struct AdminToken {
    digest: [u8; 64],
    label: String,
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
    /// control request is refused), named `label` in the audit trail.
    pub(in crate::demo) fn new(
        configured: Option<String>,
        label: Option<String>,
    ) -> Option<AdminToken> {
        configured.filter(|t| !t.is_empty()).map(|t| AdminToken {
            digest: digest(&t),
            label: label.unwrap_or_else(|| "admin".into()),
        })
    }

    /// Who acts with this token, for `migrator_audit`.
    pub(in crate::demo) fn actor(&self) -> migrator::audit::Actor {
        migrator::audit::Actor::token(&self.label)
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
        .filter(|t| !t.is_empty())
}

/// Whether a request presenting `presented` is the admin: only with a token configured and
/// presented, and the two equal.
pub(super) fn authorized(configured: Option<&AdminToken>, presented: Option<&str>) -> bool {
    match (configured, presented) {
        (Some(token), Some(presented)) => token.accepts(presented),
        _ => false,
    }
}
