//! What a run did, and what the tracking table says.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// What happened to one migration in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Applied by this run.
    Applied,
    /// Attempted by this run and failed (rolled back if transactional).
    Failed,
    /// Applied before; not run.
    AlreadyApplied,
    /// Marked `skipped` by an operator; not run.
    Skipped,
    /// Pending, but not attempted: the run stopped before it (an earlier migration failed, the
    /// lock was lost, a backup or a confirmation refused the run).
    NotRun,
    /// Dry run: ran inside a transaction that was rolled back.
    Rehearsed,
    /// Dry run: not transactional (or after one that is not), so not rehearsed.
    NotRehearsable,
}

impl Outcome {
    /// Its name in logs, metrics and JSON: `applied`, `failed`, `already_applied`, `skipped`,
    /// `not_run`, `rehearsed`, `not_rehearsable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
            Outcome::AlreadyApplied => "already_applied",
            Outcome::Skipped => "skipped",
            Outcome::NotRun => "not_run",
            Outcome::Rehearsed => "rehearsed",
            Outcome::NotRehearsable => "not_rehearsable",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As [`Outcome::as_str`].
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One migration in a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The migration's ID.
    pub id: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long this run's attempt took.
    pub duration: Option<Duration>,
    /// Why it failed.
    pub error: Option<String>,
    /// Rows it reported through its progress (`Context::progress`, `Context::execute`).
    pub rows: Option<u64>,
}

impl MigrationReport {
    /// The entry of migration `id` with `outcome` and nothing timed: one this run settled
    /// without running it, or is about to run.
    pub(crate) fn with_outcome(id: impl Into<String>, outcome: Outcome) -> MigrationReport {
        MigrationReport {
            id: id.into(),
            outcome,
            duration: None,
            error: None,
            rows: None,
        }
    }
}

/// An applied migration whose code changed since it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChecksumDrift {
    /// The migration's ID.
    pub id: String,
    /// The checksum recorded when it ran.
    pub recorded: String,
    /// The checksum of the code in this binary.
    pub current: String,
}

/// What a run did: every known migration in order, plus the anomalies it found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Diesel SQL migrations applied by this run (versions), also when one of them failed (those
    /// before it, which Diesel committed).
    pub sql_migrations: Vec<String>,
    /// Every code migration of the binary, in order.
    pub migrations: Vec<MigrationReport>,
    /// Rows of `applied_migrations` whose migration this binary does not contain.
    pub unknown_applied: Vec<AppliedMigration>,
    /// Applied migrations whose code changed since they ran.
    pub checksum_drift: Vec<ChecksumDrift>,
    /// The backup taken before migrating, if any.
    pub backup: Option<Backup>,
}

impl Report {
    /// The migrations this run applied, in order.
    pub fn applied(&self) -> impl Iterator<Item = &MigrationReport> {
        self.migrations
            .iter()
            .filter(|m| m.outcome == Outcome::Applied)
    }

    /// The migration that failed, if any.
    pub fn failed(&self) -> Option<&MigrationReport> {
        self.migrations
            .iter()
            .find(|m| m.outcome == Outcome::Failed)
    }

    /// The entry of migration `id`.
    pub fn get(&self, id: &str) -> Option<&MigrationReport> {
        self.migrations.iter().find(|m| m.id == id)
    }
}

/// The state of one migration as the tracking table shows it (see [`crate::Migrator::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationState {
    /// The migration's ID.
    pub id: String,
    /// Whether it runs in a transaction.
    pub transactional: bool,
    /// `file:line` of its definition.
    pub location: String,
    /// Its row, if it has one.
    pub row: Option<AppliedMigration>,
    /// Whether the next run would attempt it (a `running` row counts: its runner may be dead).
    pub pending: bool,
    /// Whether its code changed since it was applied.
    pub checksum_drift: bool,
}

impl MigrationState {
    /// The status to show: its row's (`success`, `failed`, ...), or `pending` without one.
    pub fn status_label(&self) -> &'static str {
        self.row.as_ref().map_or("pending", |r| r.status.as_str())
    }
}

/// The tracking table read against the binary's migrations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusReport {
    /// Every code migration of the binary, in order.
    pub migrations: Vec<MigrationState>,
    /// Rows whose migration this binary does not contain.
    pub unknown_applied: Vec<AppliedMigration>,
    /// Diesel SQL migrations not yet applied (names), when the migrator has any; they run
    /// before the code migrations.
    pub pending_sql: Vec<String>,
}

impl StatusReport {
    /// The code migrations the next run would attempt, in order.
    pub fn pending(&self) -> impl Iterator<Item = &MigrationState> {
        self.migrations.iter().filter(|m| m.pending)
    }

    /// How many migrations, SQL and code, the next run would attempt.
    pub fn pending_count(&self) -> usize {
        self.pending_sql.len() + self.pending().count()
    }
}

/// The JSON form of one migration's state (`status --json`, an application's health endpoint): `id`,
/// `status` ([`MigrationState::status_label`]), `pending`, `transactional`, `attempts`,
/// `applied_at`, `execution_time_ms`, `error_message`, `checksum_drift`.
impl Serialize for MigrationState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.row.as_ref();
        let mut map = serializer.serialize_map(Some(9))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("status", self.status_label())?;
        map.serialize_entry("pending", &self.pending)?;
        map.serialize_entry("transactional", &self.transactional)?;
        map.serialize_entry("attempts", &row.map_or(0, |r| r.attempts))?;
        map.serialize_entry("applied_at", &row.and_then(|r| r.applied_at.as_deref()))?;
        map.serialize_entry("execution_time_ms", &row.and_then(|r| r.execution_time_ms))?;
        map.serialize_entry(
            "error_message",
            &row.and_then(|r| r.error_message.as_deref()),
        )?;
        map.serialize_entry("checksum_drift", &self.checksum_drift)?;
        map.end()
    }
}

/// An applied row this binary does not know, as `{"id", "status"}`.
struct UnknownApplied<'a>(&'a AppliedMigration);

impl Serialize for UnknownApplied<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &self.0.id)?;
        map.serialize_entry("status", self.0.status.as_str())?;
        map.end()
    }
}

/// The JSON form of a status (`status --json`, an application's health endpoint): `migrations` (see
/// [`MigrationState`]), `unknown_applied` (`{"id", "status"}` each), `pending_sql` and
/// `pending` ([`StatusReport::pending_count`]).
impl Serialize for StatusReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let unknown: Vec<UnknownApplied<'_>> =
            self.unknown_applied.iter().map(UnknownApplied).collect();
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("migrations", &self.migrations)?;
        map.serialize_entry("unknown_applied", &unknown)?;
        map.serialize_entry("pending_sql", &self.pending_sql)?;
        map.serialize_entry("pending", &self.pending_count())?;
        map.end()
    }
}

/// The `status` of a row of `applied_migrations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// A non-transactional migration started and has not finished (or was interrupted).
    Running,
    /// Applied; never run again.
    Success,
    /// The latest attempt failed; the next run retries it.
    Failed,
    /// An operator chose not to run it; never run.
    Skipped,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Status, String> {
        match value {
            "running" => Ok(Status::Running),
            "success" => Ok(Status::Success),
            "failed" => Ok(Status::Failed),
            "skipped" => Ok(Status::Skipped),
            other => Err(format!(
                "unknown status {other:?}: expected running, success, failed or skipped"
            )),
        }
    }
}

/// One row of `applied_migrations`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// The migration ID.
    pub id: String,
    /// Its status.
    pub status: Status,
    /// When the latest attempt ended (started, while running), UTC, as the database prints it.
    pub applied_at: Option<String>,
    /// Duration of the latest attempt.
    pub execution_time_ms: Option<i64>,
    /// Why the latest attempt failed.
    pub error_message: Option<String>,
    /// Checksum of the code when it last ran (NULL for rows written by hand or older tools).
    pub checksum: Option<String>,
    /// How many times it was attempted.
    pub attempts: i64,
    /// Host and process id of the runner.
    pub applied_by: Option<String>,
}

/// A backup that was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backup {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}
