//! Migrations registered by `#[migration]`, collected with `inventory`, sorted and checked.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use crate::foundation::error::{Error, Result};
use crate::running::context::Context;

/// The signature of a code migration.
pub type MigrationFn = for<'a, 'b> fn(&'a mut Context<'b>) -> Result<()>;

/// A code migration: what `#[migration("NNN_name")]` registers.
///
/// Values are created by the macro at compile time; the runner only reads them.
pub struct Migration {
    id: &'static str,
    run: MigrationFn,
    transactional: bool,
    checksum: &'static str,
    legacy_checksum: &'static str,
    file: &'static str,
    line: u32,
    module_path: &'static str,
    /// `statement_timeout = "..."` in milliseconds; 0 when not given.
    statement_timeout_ms: u64,
    /// `lock_timeout = "..."` in milliseconds; 0 when not given.
    lock_timeout_ms: u64,
}

inventory::collect!(Migration);

impl Migration {
    /// Not public API: the `const` constructor the macro calls.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        id: &'static str,
        run: MigrationFn,
        transactional: bool,
        checksum: &'static str,
        legacy_checksum: &'static str,
        file: &'static str,
        line: u32,
        module_path: &'static str,
    ) -> Migration {
        Migration {
            id,
            run,
            transactional,
            checksum,
            legacy_checksum,
            file,
            line,
            module_path,
            statement_timeout_ms: 0,
            lock_timeout_ms: 0,
        }
    }

    /// Not public API: sets `lock_timeout = "..."` (milliseconds, 0 for the default); the
    /// macro calls it.
    #[doc(hidden)]
    pub const fn __with_lock_timeout_ms(self, ms: u64) -> Migration {
        Migration {
            lock_timeout_ms: ms,
            ..self
        }
    }

    /// The migration's own PostgreSQL DDL `lock_timeout` (`#[migration("...", lock_timeout =
    /// "30s")]`), overriding `MIGRATION_DDL_LOCK_TIMEOUT_MS` for it; `None`: the default.
    pub fn lock_timeout(&self) -> Option<Duration> {
        (self.lock_timeout_ms > 0).then(|| Duration::from_millis(self.lock_timeout_ms))
    }

    /// Not public API: sets `statement_timeout = "..."` (milliseconds, 0 for none); the macro
    /// calls it.
    #[doc(hidden)]
    pub const fn __with_statement_timeout_ms(self, ms: u64) -> Migration {
        Migration {
            statement_timeout_ms: ms,
            ..self
        }
    }

    /// The migration's own PostgreSQL `statement_timeout` (`#[migration("...",
    /// statement_timeout = "10m")]`); `None` means no limit: the runner sets
    /// `statement_timeout = 0` for it, overriding a role- or database-level value.
    pub fn statement_timeout(&self) -> Option<Duration> {
        (self.statement_timeout_ms > 0).then(|| Duration::from_millis(self.statement_timeout_ms))
    }

    /// The ID, e.g. `001_create_users`.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Whether the migration runs in one transaction together with its `success` row.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Checksum of the function's code when it was compiled: `v2:` and 16 hex digits, over a
    /// normal form of its tokens that ignores whitespace, comments and doc comments (defined and
    /// pinned in the macro crate), so that neither a toolchain upgrade nor a documentation edit
    /// changes it.
    pub fn checksum(&self) -> &'static str {
        self.checksum
    }

    /// Whether `recorded` (a checksum read from the tracking table) matches this code: the
    /// current form, or the form earlier versions recorded (no prefix), which is accepted so
    /// that upgrading this library never reports every applied migration as changed.
    pub fn checksum_matches(&self, recorded: &str) -> bool {
        recorded == self.checksum || recorded == self.legacy_checksum
    }

    /// `file:line` of the `#[migration]` attribute.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The module that defines the migration.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    pub(crate) fn call(&self, ctx: &mut Context<'_>) -> Result<()> {
        (self.run)(ctx)
    }

    /// The numeric prefix of the ID (saturating for absurdly long prefixes).
    fn number(&self) -> u128 {
        self.id
            .bytes()
            .take_while(u8::is_ascii_digit)
            .fold(0u128, |n, d| {
                n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
            })
    }

    /// Order: by numeric prefix, then by the whole ID.
    pub(crate) fn order(&self, other: &Migration) -> Ordering {
        self.number()
            .cmp(&other.number())
            .then_with(|| self.id.cmp(other.id))
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("id", &self.id)
            .field("transactional", &self.transactional)
            .field("checksum", &self.checksum)
            .field("statement_timeout", &self.statement_timeout())
            .field("lock_timeout", &self.lock_timeout())
            .field("location", &self.location())
            .finish()
    }
}

impl Migration {
    /// Every migration linked into this binary, in registration (unspecified) order;
    /// [`Migrator::from_registry`](crate::Migrator::from_registry) sorts and checks them.
    ///
    /// A migration defined in a library crate is only linked when the binary names something
    /// of that crate (`use that_crate as _;` is enough).
    pub fn registered() -> impl Iterator<Item = &'static Migration> {
        inventory::iter::<Migration>.into_iter()
    }
}

/// Sorts `migrations` and checks IDs: duplicates and malformed IDs are errors naming the places.
pub(crate) fn sorted(
    migrations: impl IntoIterator<Item = &'static Migration>,
) -> Result<Vec<&'static Migration>> {
    let mut all: Vec<&'static Migration> = migrations.into_iter().collect();
    if let Some(bad) = all.iter().find(|m| !valid_id(m.id)) {
        return Err(Error::InvalidMigrationId {
            id: bad.id.to_owned(),
            location: bad.location(),
        });
    }
    all.sort_by(|a, b| a.order(b).then_with(|| a.location().cmp(&b.location())));
    if let Some(pair) = all.windows(2).find(|pair| pair[0].id == pair[1].id) {
        return Err(Error::DuplicateMigration {
            id: pair[0].id.to_owned(),
            first: pair[0].location(),
            second: pair[1].location(),
        });
    }
    Ok(all)
}

/// `^[0-9]{3,}_[a-z0-9_]+$`, the rule the macro enforces at compile time.
pub(crate) fn valid_id(id: &str) -> bool {
    let digits = id.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &id.as_bytes()[digits..];
    digits >= 3
        && rest.len() >= 2
        && rest[0] == b'_'
        && rest[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}
