//! Every environment variable the library reads, in one table: its concern, its default (taken
//! from the constants the code uses) and its meaning. This is the one place each is documented:
//! the README's configuration table is rendered from [`markdown`], and a test keeps the two
//! equal. The names themselves are constants in [`crate::config::vars`] (and `migrator::password::vars`).

use std::time::Duration;

use crate::foundation::config::vars::*;
use crate::foundation::config::{
    DEFAULT_BACKUP_DIR, DEFAULT_BATCH_TARGET, DEFAULT_DDL_LOCK_RETRIES, DEFAULT_DDL_LOCK_TIMEOUT,
    DEFAULT_INLINE_BACKFILL, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_REPLICA_LAG_MB,
    DEFAULT_MAX_REPLICA_LAG_TIME, DEFAULT_PG_DUMP, DEFAULT_PROGRESS_INTERVAL,
};

/// What a variable configures: the groups of [`table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Concern {
    /// The connection (`DATABASE_URL`, `MIGRATION_DATABASE_URL`).
    Connection,
    /// Whether and how a run may migrate in this environment.
    Policy,
    /// The migration lock and the DDL's table-lock bounds.
    Lock,
    /// The backup before migrating.
    Backup,
    /// Backfills that run inside a migration.
    InlineBackfill,
    /// The background backfill workers.
    BackgroundWorkers,
    /// The Argon2id parameters of new password hashes (feature `password`).
    Argon2,
}

impl Concern {
    /// The heading of this group in the README's table.
    pub fn title(self) -> &'static str {
        match self {
            Concern::Connection => "connection",
            Concern::Policy => "policy",
            Concern::Lock => "lock",
            Concern::Backup => "backup",
            Concern::InlineBackfill => "inline backfill",
            Concern::BackgroundWorkers => "background workers",
            Concern::Argon2 => "Argon2",
        }
    }
}

/// One environment variable the library reads: a row of [`table`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Variable {
    /// Its name.
    pub name: &'static str,
    /// What it configures.
    pub concern: Concern,
    /// Its default, as the README shows it (taken from the constants the code uses).
    pub default: String,
    /// What it does, in one sentence of Markdown.
    pub meaning: &'static str,
}

fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Every variable the library reads, grouped by concern, with its default and meaning. Values
/// that are not accepted are an error naming the variable and the accepted values.
pub fn table() -> Vec<Variable> {
    let row = |name, concern, default: String, meaning| Variable {
        name,
        concern,
        default,
        meaning,
    };
    use Concern::*;
    #[cfg_attr(not(feature = "password"), allow(unused_mut))]
    let mut rows = vec![
        row("DATABASE_URL", Connection, "required".into(),
            "`postgres://USER:PASSWORD@HOST:PORT/DB`, `postgresql://...` or `sqlite://PATH`; the password is always shown as `***`"),
        row(MIGRATION_DATABASE_URL, Connection, "unset: migrations use `DATABASE_URL`".into(),
            "a direct (session-mode) PostgreSQL URL for the migration run when `DATABASE_URL` goes through a transaction-pooling PgBouncer"),
        row(ENVIRONMENT, Policy, "required".into(),
            "`development`, `staging` or `production`: the defaults of the four below follow it"),
        row(AUTO_MIGRATE_ON_STARTUP, Policy, "true; production: false".into(),
            "run pending migrations when the application starts"),
        row(ENABLE_PROD_MIGRATIONS, Policy, "false (read in production only)".into(),
            "must be true for migrations to run in production"),
        row(MIGRATION_REQUIRE_CONFIRMATION, Policy, "false; production: true".into(),
            "show the plan and ask on a terminal, else require `MIGRATION_CONFIRM`"),
        row(MIGRATION_CONFIRM, Policy, "unset".into(),
            "a pinned plan: exactly the pending IDs, comma-separated, confirming an unattended run"),
        row(MIGRATION_PROGRESS_INTERVAL_SECS, Policy, secs(DEFAULT_PROGRESS_INTERVAL),
            "how often long migrations log their progress, in seconds"),
        row(MIGRATION_LOCK_TIMEOUT_SECS, Lock, secs(DEFAULT_LOCK_TIMEOUT),
            "how long a runner waits for another runner's migration lock, in seconds"),
        row(MIGRATION_DDL_LOCK_TIMEOUT_MS, Lock, millis(DEFAULT_DDL_LOCK_TIMEOUT),
            "PostgreSQL: the `lock_timeout` of a migration's statements, in milliseconds (greater than 0)"),
        row(MIGRATION_DDL_LOCK_RETRIES, Lock, DEFAULT_DDL_LOCK_RETRIES.to_string(),
            "PostgreSQL: how often a migration that hit its `lock_timeout` is retried (0: never)"),
        row(MIGRATION_BACKUP_BEFORE, Backup, "false; production: true".into(),
            "back the database up (under the lock) before migrating; if it fails, nothing is migrated"),
        row(MIGRATION_BACKUP_DIR, Backup, format!("`./{DEFAULT_BACKUP_DIR}`"),
            "where backups are written (mode 0600)"),
        row(MIGRATION_PG_DUMP, Backup, format!("`{DEFAULT_PG_DUMP}` from `PATH`"),
            "the `pg_dump` that writes PostgreSQL backups"),
        row(MIGRATION_BACKFILL, InlineBackfill, "`auto`".into(),
            "how a migration's backfill runs: `inline`, `background` or `auto` (inline, then the rest in the background)"),
        row(MIGRATION_INLINE_BACKFILL_SECS, InlineBackfill, secs(DEFAULT_INLINE_BACKFILL),
            "`auto`: how long a backfill works inline before handing the rest off, in seconds"),
        row(MIGRATION_INLINE_BACKFILL_THREADS, InlineBackfill, "all cores".into(),
            "threads computing an inline backfill (old name `MIGRATION_WORKER_THREADS`, still read, deprecated)"),
        row(MIGRATION_BATCH_SIZE, InlineBackfill, "the backfill's own (128 unless it sets one)".into(),
            "rows per batch of a backfill"),
        row(MIGRATION_BACKFILL_THREADS, BackgroundWorkers, "half the cores, at least 1".into(),
            "background worker threads per application process (0: none; the CLI's `work` uses all cores unless set)"),
        row(MIGRATION_BACKFILL_PAUSE_MS, BackgroundWorkers, "0".into(),
            "milliseconds every background worker sleeps between batches"),
        row(MIGRATION_BATCH_TARGET_MS, BackgroundWorkers, millis(DEFAULT_BATCH_TARGET),
            "the duration a background batch aims at, in milliseconds: the batch size adapts to it"),
        row(MIGRATION_MAX_REPLICA_LAG_SECS, BackgroundWorkers, secs(DEFAULT_MAX_REPLICA_LAG_TIME),
            "PostgreSQL: workers hold while a streaming standby replays more than this many seconds behind"),
        row(MIGRATION_MAX_REPLICA_LAG_MB, BackgroundWorkers, DEFAULT_MAX_REPLICA_LAG_MB.to_string(),
            "PostgreSQL: workers hold while a standby is more than this many MiB of WAL behind"),
        row(MIGRATION_REPLICA_LAG_INCLUDE, BackgroundWorkers, "none".into(),
            "comma-separated `application_name`s of WAL receivers whose lag counts although they are not physical standbys"),
        row(MIGRATION_REPLICA_LAG_EXCLUDE, BackgroundWorkers, "none".into(),
            "comma-separated `application_name`s of standbys whose lag never holds the workers (delayed standbys)"),
    ];
    #[cfg(feature = "password")]
    {
        let argon2 = crate::hashing::password::Params::default();
        use crate::hashing::password::vars::{
            ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM,
        };
        rows.extend([
            row(
                ARGON2_MEMORY_KIB,
                Argon2,
                argon2.memory_kib.to_string(),
                "memory of new Argon2id hashes, in KiB",
            ),
            row(
                ARGON2_ITERATIONS,
                Argon2,
                argon2.iterations.to_string(),
                "iterations (passes) of new Argon2id hashes",
            ),
            row(
                ARGON2_PARALLELISM,
                Argon2,
                argon2.parallelism.to_string(),
                "lanes of new Argon2id hashes",
            ),
        ]);
    }
    rows
}

/// [`table`] as the Markdown table of the README, one group after another.
pub fn markdown() -> String {
    let mut out = String::from("| variable | concern | default | meaning |\n|---|---|---|---|\n");
    for v in table() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            v.name,
            v.concern.title(),
            v.default,
            v.meaning
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration table is [`markdown`], between its two markers.
    #[cfg(feature = "password")]
    #[test]
    fn the_readme_table_is_rendered_from_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let begin = "<!-- variables: rendered from migrator::config::variables::markdown() -->\n";
        let end = "<!-- end of variables -->";
        let start = readme.find(begin).map(|i| i + begin.len());
        let stop = readme.find(end);
        let (Some(start), Some(stop)) = (start, stop) else {
            panic!("README.md lacks the markers {begin:?} and {end:?}");
        };
        let expected = markdown();
        assert!(
            readme[start..stop] == expected,
            "README.md's variable table differs from migrator::config::variables::markdown(); replace it with:\n{expected}"
        );
    }

    /// Every name in [`ALL`] and every Argon2 variable has exactly one row.
    #[cfg(feature = "password")]
    #[test]
    fn every_variable_has_one_row() {
        let rows = table();
        let argon2 = crate::hashing::password::vars::ALL;
        for name in ALL.iter().chain(&argon2) {
            let count = rows.iter().filter(|v| v.name == *name).count();
            let deprecated = *name == MIGRATION_WORKER_THREADS;
            assert_eq!(count, usize::from(!deprecated), "{name}");
        }
        assert_eq!(rows.len(), ALL.len() - 1 + argon2.len());
    }

    /// The inline threads' new name wins; the old one is still read when it alone is set.
    #[test]
    fn the_old_name_of_the_inline_threads_is_still_read() {
        let config = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::foundation::config::Config::from_lookup(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let env = (ENVIRONMENT, "development");
        let old = config(&[env, (MIGRATION_WORKER_THREADS, "3")]).map(|c| c.worker_threads());
        assert_eq!(old.ok(), Some(Some(3)));
        let both = [
            env,
            (MIGRATION_WORKER_THREADS, "3"),
            (MIGRATION_INLINE_BACKFILL_THREADS, "5"),
        ];
        assert_eq!(config(&both).ok().and_then(|c| c.worker_threads()), Some(5));
        let bad = config(&[env, (MIGRATION_INLINE_BACKFILL_THREADS, "many")]);
        let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(MIGRATION_INLINE_BACKFILL_THREADS),
            "{message}"
        );
    }
}
