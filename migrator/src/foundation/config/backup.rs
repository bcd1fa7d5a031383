//! Backups before a run: where they go (`MIGRATION_BACKUP_DIR`) and which `pg_dump` makes them
//! (`MIGRATION_PG_DUMP`). Whether one is made is the policy's (`MIGRATION_BACKUP_BEFORE`).

use std::path::PathBuf;

use super::vars;

/// Default of `MIGRATION_BACKUP_DIR`.
pub(crate) const DEFAULT_BACKUP_DIR: &str = "backups";

/// Default of `MIGRATION_PG_DUMP`: `pg_dump` found on `PATH`.
pub(crate) const DEFAULT_PG_DUMP: &str = "pg_dump";

/// The backup settings of a [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Backup {
    pub(super) backup_dir: PathBuf,
    pub(super) pg_dump: PathBuf,
}

impl Default for Backup {
    fn default() -> Backup {
        Backup {
            backup_dir: PathBuf::from(DEFAULT_BACKUP_DIR),
            pg_dump: PathBuf::from(DEFAULT_PG_DUMP),
        }
    }
}

impl Backup {
    /// An empty value is the default.
    pub(super) fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Backup {
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let default = Backup::default();
        Backup {
            backup_dir: path(vars::MIGRATION_BACKUP_DIR).unwrap_or(default.backup_dir),
            pg_dump: path(vars::MIGRATION_PG_DUMP).unwrap_or(default.pg_dump),
        }
    }
}
