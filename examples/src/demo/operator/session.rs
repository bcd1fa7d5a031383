//! The operator page's admin sessions: created by presenting `MIGRATION_ADMIN_TOKEN` once (the
//! login form), then carried by a cookie, never by the token.
//!
//! - The cookie `migrator_session` holds 32 random bytes (hex) and is `HttpOnly`,
//!   `SameSite=Strict`, `Path=/migrations`, with `Max-Age` = the session's lifetime, and
//!   `Secure` when `MIGRATION_ADMIN_COOKIE_SECURE` says so (default: in production).
//! - The server keeps at most [`MAX_SESSIONS`] sessions in memory, by a BLAKE2b digest of the
//!   identifier; each expires `MIGRATION_ADMIN_SESSION_SECS` (default 3600) after login, however
//!   active (the page refreshes itself), and a logout ends it. A full store drops the session
//!   closest to expiry. A restart ends every session.
//! - Each session has its own CSRF token, put in the page's forms and required (compared in
//!   constant time) by every POST that uses the cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use blake2::{Blake2b512, Digest};
use password_hash::rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub(super) const COOKIE: &str = "migrator_session";
/// The most sessions kept at once.
pub(super) const MAX_SESSIONS: usize = 64;
/// The variable that sets the session lifetime in seconds.
pub(crate) const MIGRATION_ADMIN_SESSION_SECS: &str = "MIGRATION_ADMIN_SESSION_SECS";
/// The variable that adds `Secure` to the cookie (boolean; default true in production).
pub(crate) const MIGRATION_ADMIN_COOKIE_SECURE: &str = "MIGRATION_ADMIN_COOKIE_SECURE";
/// The default session lifetime.
pub(in crate::demo) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// 32 random bytes from the OS, as 64 hex digits.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    OsRng.try_fill_bytes(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(id: &str) -> [u8; 64] {
    Blake2b512::digest(id.as_bytes()).into()
}

struct Session {
    csrf: String,
    expires: Instant,
}

/// A live session, as a request presented it.
#[derive(Clone)]
pub(in crate::demo) struct Current {
    /// The session's CSRF token, for the page's forms.
    pub(super) csrf: String,
    digest: [u8; 64],
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(<redacted>)")
    }
}

impl Current {
    /// Whether `presented` is this session's CSRF token (in constant time).
    pub(super) fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// The sessions of this process.
pub(in crate::demo) struct Sessions {
    live: Mutex<HashMap<[u8; 64], Session>>,
    lifetime: Duration,
    secure: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// An empty store: sessions live `lifetime`; cookies are `Secure` when `secure`.
    pub(in crate::demo) fn new(lifetime: Duration, secure: bool) -> Sessions {
        Sessions {
            live: Mutex::new(HashMap::new()),
            lifetime,
            secure,
        }
    }

    /// Starts a session: its `Set-Cookie` value and its state, or `None` when the OS gave no
    /// randomness.
    pub(super) fn start(&self) -> Option<(String, Current)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut live = self.live.lock().ok()?;
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            let oldest = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                live.remove(&oldest);
                log::warn!("Operator page: {MAX_SESSIONS} admin sessions; ended the oldest");
            }
        }
        let key = digest(&id);
        live.insert(
            key,
            Session {
                csrf: csrf.clone(),
                expires: now + self.lifetime,
            },
        );
        let cookie = self.cookie(&id, self.lifetime.as_secs());
        Some((cookie, Current { csrf, digest: key }))
    }

    /// The live session whose cookie `headers` carry, if any.
    pub(super) fn current(&self, headers: &HeaderMap) -> Option<Current> {
        let id = cookie_value(headers)?;
        let key = digest(id);
        let now = Instant::now();
        let mut live = self.live.lock().ok()?;
        match live.get(&key) {
            Some(s) if s.expires > now => Some(Current {
                csrf: s.csrf.clone(),
                digest: key,
            }),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends `session`; returns the `Set-Cookie` value that clears the cookie.
    pub(super) fn end(&self, session: &Current) -> String {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&session.digest);
        }
        self.clearing_cookie()
    }

    /// The `Set-Cookie` value that clears the cookie.
    pub(super) fn clearing_cookie(&self) -> String {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path=/migrations; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of the `migrator_session` cookie of a request.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = cookie.split(';').next().unwrap_or_default();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn sessions_start_expire_end_and_are_capped() {
        let sessions = Sessions::new(Duration::from_secs(60), true);
        let (cookie, current) = sessions.start().unwrap();
        assert!(
            cookie.ends_with("; Path=/migrations; Max-Age=60; HttpOnly; SameSite=Strict; Secure")
        );
        let found = sessions.current(&with_cookie(&cookie)).unwrap();
        assert!(found.csrf_matches(Some(&current.csrf)));
        assert!(!found.csrf_matches(Some("x")) && !found.csrf_matches(None));
        assert!(sessions.end(&found).contains("Max-Age=0"));
        assert!(sessions.current(&with_cookie(&cookie)).is_none());

        let expired = Sessions::new(Duration::ZERO, false);
        let (cookie, _) = expired.start().unwrap();
        assert!(!cookie.contains("Secure"));
        assert!(expired.current(&with_cookie(&cookie)).is_none());

        let first = sessions.start().unwrap().0;
        for _ in 0..MAX_SESSIONS {
            sessions.start().unwrap();
        }
        assert!(sessions.current(&with_cookie(&first)).is_none());
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }
}
