//! `migrator_audit`: who did what, and when, to the migrations and backfills of a database.
//!
//! Every operator action (`mark` from the CLI, pause, resume and cancel of a background
//! backfill from the CLI or an operator page) writes one row, refused actions included, and one
//! log line (`Operator action: ...`). The table lives beside `applied_migrations` (the same
//! schema on PostgreSQL), is created on first use, and is for operators to query:
//!
//! ```sql
//! SELECT at, actor, action, target, outcome, process FROM migrator_audit ORDER BY id DESC;
//! ```
//!
//! | column | meaning |
//! |---|---|
//! | `id` | increasing |
//! | `at` | when, UTC |
//! | `actor` | who: `token:LABEL` for an operator page's admin session, `os:USER@HOST` for the CLI |
//! | `action` | `mark`, `backfill pause`, `backfill resume`, `backfill cancel` |
//! | `target` | the migration or backfill named |
//! | `outcome` | `marked success`, `paused`, ... or `refused: REASON` / `failed: REASON` |
//! | `process` | `host:pid` of the process that acted |
//!
//! An actor never holds a secret: a token is named by its configured label, never by itself.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend;
use crate::access::connection::{AnyConnection, Database};
use crate::foundation::error::{Error, Result};
use crate::records::tracking::{self, Table};

/// The table's name.
pub const AUDIT: &str = "migrator_audit";

/// Who acted. Its text is stored as it is: it must name the operator, never hold a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// The operator at this machine: `os:USER@HOST` (`USER`, else `LOGNAME`, else `unknown`).
    pub fn os_user() -> Actor {
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        Actor(format!(
            "os:{}@{}",
            clean(&user),
            clean(&gethostname::gethostname().to_string_lossy())
        ))
    }

    /// An operator authenticated by a token whose configured label is `label`: `token:LABEL`.
    pub fn token(label: &str) -> Actor {
        Actor(format!("token:{}", clean(label)))
    }

    /// The text stored in `actor`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most 100 printable characters of `text`.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// One row of `migrator_audit`.
#[derive(Clone, Debug, PartialEq, Eq, QueryableByName, serde::Serialize)]
pub struct AuditEntry {
    /// Increasing.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// When (UTC, as the database prints it).
    #[diesel(sql_type = Text)]
    pub at: String,
    /// Who ([`Actor`]).
    #[diesel(sql_type = Text)]
    pub actor: String,
    /// What: `mark`, `backfill pause`, ...
    #[diesel(sql_type = Text)]
    pub action: String,
    /// The migration or backfill.
    #[diesel(sql_type = Text)]
    pub target: String,
    /// What came of it.
    #[diesel(sql_type = Text)]
    pub outcome: String,
    /// `host:pid` of the process that acted.
    #[diesel(sql_type = Nullable<Text>)]
    pub process: Option<String>,
}

fn sql_name(table: &Table) -> String {
    backend::qualified(table.schema(), AUDIT)
}

fn create(conn: &mut AnyConnection, name: &str) -> Result<()> {
    let ddl = backend::of(conn.backend()).create_audit_table(name);
    // Two processes creating it at once on PostgreSQL: one may fail on the catalog; it exists.
    conn.batch_execute(&ddl)
        .or_else(|_| conn.batch_execute(&ddl))
        .map_err(Error::db(format!("cannot create the {AUDIT} table")))
}

/// Records that `actor` did `action` to `target` with `outcome` (a row, created with the
/// table if missing, and a log line). A failure to record is returned (and logged): callers
/// decide whether the action may stand unrecorded.
pub fn record(
    db: &Database,
    actor: &Actor,
    action: &str,
    target: &str,
    outcome: &str,
) -> Result<()> {
    log::info!("Operator action: {actor} {action} {target}: {outcome}");
    let written = (|| {
        let mut conn = db.get()?;
        let name = sql_name(&tracking::locate(db, &mut conn)?);
        create(&mut conn, &name)?;
        diesel::sql_query(format!(
            "INSERT INTO {name} (actor, action, target, outcome, process) \
             VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind::<Text, _>(actor.as_str())
        .bind::<Text, _>(action)
        .bind::<Text, _>(target)
        .bind::<Text, _>(outcome)
        .bind::<Text, _>(tracking::runner_identity())
        .execute(&mut *conn)
        .map_err(Error::db(format!("cannot write to {AUDIT}")))?;
        Ok(())
    })();
    if let Err(e) = &written {
        log::error!("Could not record the operator action {action} {target} by {actor}: {e}");
    }
    written
}

/// The latest `limit` rows, newest first (none when the table does not exist yet).
pub fn list(db: &Database, limit: i64) -> Result<Vec<AuditEntry>> {
    let mut conn = db.get()?;
    let table = tracking::locate(db, &mut conn)?;
    let exists = tracking::exists_beside(&mut conn, &table, AUDIT)?;
    if !exists {
        return Ok(Vec::new());
    }
    diesel::sql_query(format!(
        "SELECT CAST(id AS BIGINT) AS id, CAST(at AS TEXT) AS at, actor, action, target, \
         outcome, process FROM {} ORDER BY id DESC LIMIT $1",
        sql_name(&table)
    ))
    .bind::<BigInt, _>(limit)
    .load(&mut *conn)
    .map_err(Error::db(format!("cannot read {AUDIT}")))
}

/// The outcome text of a result: `ok` for success, `refused: ...` for a state or name the
/// action does not allow, `failed: ...` otherwise.
pub fn outcome<T>(result: &Result<T>, ok: &str) -> String {
    match result {
        Ok(_) => ok.to_owned(),
        Err(e) if e.is_configuration() => format!("refused: {e}"),
        Err(e) => format!("failed: {e}"),
    }
}

/// [`crate::backfill::control`], recorded: pause, resume or cancel backfill `name` as `actor`.
/// The action's result is returned whether or not it could be recorded (the log says so).
#[cfg(feature = "backfill")]
pub fn control_backfill(
    db: &Database,
    actor: &Actor,
    name: &str,
    action: crate::records::backfill::state::Control,
) -> Result<crate::records::backfill::state::BackfillState> {
    use crate::records::backfill::state::Control;
    let (what, done) = match action {
        Control::Pause => ("backfill pause", "paused"),
        Control::Resume => ("backfill resume", "resumed"),
        _ => ("backfill cancel", "cancelled"),
    };
    let result = crate::records::backfill::state::control(db, name, action);
    let _ = record(db, actor, what, name, &outcome(&result, done));
    result
}
