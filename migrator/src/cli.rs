//! Building blocks of an operator command line, shared by every app binary built on migrator.
//!
//! ```text
//! APP [--database-url URL] status [--json]      every migration and its row
//!     plan [--json]                              what `up` would do here, and why; changes nothing
//!     up [--yes] [--dry-run]                     apply pending migrations (policy applies)
//!     verify [--json] [--check-hashes] [--clear-verified-plaintext]
//!     mark NAME success|failed|skipped|pending [--yes]   set a migration's status by hand
//!     backup                                     back the database up now
//!     work [--threads N] [--batch-size N]        join a running backfill from another host
//! ```
//!
//! Exit codes: 0 done (also nothing to do); 1 a migration or verification failed; 2 usage or
//! configuration error; 3 refused by policy. `--database-url` overrides `DATABASE_URL`.
//!
//! ```no_run
//! struct MyApp;
//! impl migrator::cli::App for MyApp {}
//!
//! fn main() -> std::process::ExitCode {
//!     migrator::cli::main("my-app", &MyApp)
//! }
//! ```

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::config::Config;
use crate::connection::Database;
use crate::error::{Error, Result};
use crate::report::{Outcome, StatusReport};
use crate::runner::{MarkAs, Migrator};

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: a migration or verification failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: refused by policy.
pub const EXIT_REFUSED: u8 = 3;

/// Options of `verify`.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Check every stored hash against its plaintext.
    pub check_hashes: bool,
    /// Remove plaintexts whose hash verifies them.
    pub clear_verified_plaintext: bool,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Named counts, in display order (e.g. `total_users`).
    pub counts: Vec<(&'static str, u64)>,
    /// Problems found; any makes `verify` exit 1.
    pub problems: Vec<String>,
    /// Other remarks.
    pub notes: Vec<String>,
}

/// Options of `work`.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct WorkOptions {
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Rows per batch.
    pub batch_size: Option<usize>,
}

/// The app-specific parts of the command line. Every method has a default, so an app
/// implements only what it has.
pub trait App: Sync {
    /// Reads and checks the app's own configuration (e.g. password hashing parameters) before
    /// any command connects or writes; a configuration error there exits 2 (default: none).
    fn check_config(&self) -> Result<()> {
        Ok(())
    }

    /// The app's migrations (default: every registered one).
    fn migrator(&self) -> Result<Migrator> {
        Migrator::from_registry()
    }

    /// `verify`: checks what the migrations produced.
    fn verify(&self, _db: &Database, _options: &VerifyOptions) -> Result<VerifyReport> {
        Ok(VerifyReport {
            notes: vec!["this app defines no verification".into()],
            ..VerifyReport::default()
        })
    }

    /// `work`: takes part in a running backfill until it is done; returns the rows done here.
    fn work(&self, _db: &Database, _options: &WorkOptions) -> Result<u64> {
        Err(Error::msg("this app has no backfill to work on"))
    }
}

#[derive(Parser)]
#[command(version, about = "Database migrations: status, plan, apply, verify.")]
struct Args {
    /// Database URL; overrides DATABASE_URL (postgres://..., sqlite://PATH).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every migration with its status, attempts, last error and checksum drift.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What `up` would do under the current environment, and why. Changes nothing.
    Plan {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the pending migrations (ENVIRONMENT, ENABLE_PROD_MIGRATIONS, confirmation and
    /// backup apply; AUTO_MIGRATE_ON_STARTUP does not).
    Up {
        /// Confirm the plan without being asked (you are the operator running it).
        #[arg(long)]
        yes: bool,
        /// Rehearse: run the pending transactional migrations in a transaction that is rolled
        /// back, and report what they did. Changes nothing.
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
    },
    /// Check what the migrations produced.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Verify every stored hash against its plaintext.
        #[arg(long)]
        check_hashes: bool,
        /// Remove plaintexts whose hash verifies them (in batches); report the rows refused.
        #[arg(long)]
        clear_verified_plaintext: bool,
    },
    /// Set a migration's status by hand (asks for confirmation in production).
    Mark {
        /// The migration ID.
        name: String,
        /// The new status (`pending` deletes its row).
        status: MarkStatus,
        /// Confirm without being asked.
        #[arg(long)]
        yes: bool,
    },
    /// Back the database up now into MIGRATION_BACKUP_DIR (pg_dump or VACUUM INTO).
    Backup,
    /// Take part in a running backfill until it is done (safe to start on any host, any time).
    Work {
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Rows per batch.
        #[arg(long)]
        batch_size: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MarkStatus {
    Success,
    Failed,
    Skipped,
    Pending,
}

/// Parses the process arguments, runs the command, and returns the exit code. Installs a
/// stderr logger (`RUST_LOG` filters it, default `info`) unless one is installed already.
pub fn main(name: &str, app: &dyn App) -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .try_init();
    match run(app, args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for an error.
pub fn exit_code(error: &Error) -> u8 {
    if error.is_refusal() {
        EXIT_REFUSED
    } else if error.is_configuration() {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

fn connect(url: Option<String>) -> Result<Database> {
    match url {
        Some(url) => Database::connect(&url),
        None => Database::from_env(),
    }
}

fn run(app: &dyn App, args: Args) -> Result<u8> {
    app.check_config()?;
    let migrator = app.migrator()?;
    let db = connect(args.database_url)?;
    match args.command {
        Command::Status { json } => {
            let status = migrator.status(&db)?;
            print_status(&db, &status, json);
            Ok(EXIT_OK)
        }
        Command::Plan { json } => plan(&migrator, &db, json),
        Command::Up { yes, dry_run } => {
            if dry_run {
                dry_run_command(&migrator, &db)
            } else {
                up(migrator, &db, yes)
            }
        }
        Command::Verify {
            json,
            check_hashes,
            clear_verified_plaintext,
        } => {
            let options = VerifyOptions {
                check_hashes,
                clear_verified_plaintext,
            };
            let report = app.verify(&db, &options)?;
            print_verify(&report, json);
            Ok(if report.problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        Command::Mark { name, status, yes } => {
            let config = Config::from_env()?;
            if config.environment() == crate::config::Environment::Production && !yes {
                let question = format!(
                    "Mark {name} as {} in the production database ({})?",
                    format!("{status:?}").to_lowercase(),
                    db.url()
                );
                if !(config.interactive_value() && crate::confirm::ask(&question)) {
                    return Err(Error::Refused {
                        reason: "marking a migration in production needs confirmation: answer                                  y at the prompt, or pass --yes"
                            .into(),
                    });
                }
            }
            let to = match status {
                MarkStatus::Success => MarkAs::Success,
                MarkStatus::Failed => MarkAs::Failed,
                MarkStatus::Skipped => MarkAs::Skipped,
                MarkStatus::Pending => MarkAs::Pending,
            };
            migrator.mark(&db, &config, &name, to)?;
            println!("{name} marked {}", format!("{:?}", to).to_lowercase());
            Ok(EXIT_OK)
        }
        Command::Backup => {
            let config = Config::from_env()?;
            let backup = migrator.backup(&db, &config)?;
            println!(
                "backup written: {} ({} bytes)",
                backup.path.display(),
                backup.bytes
            );
            Ok(EXIT_OK)
        }
        Command::Work {
            threads,
            batch_size,
        } => {
            let rows = app.work(
                &db,
                &WorkOptions {
                    threads,
                    batch_size,
                },
            )?;
            println!("rows written by this process: {rows}");
            Ok(EXIT_OK)
        }
    }
}

fn print_status(db: &Database, status: &StatusReport, json: bool) {
    if json {
        let migrations: Vec<Value> = status
            .migrations
            .iter()
            .map(|m| {
                let row = m.row.as_ref();
                json!({
                    "id": m.id,
                    "status": m.status_label(),
                    "pending": m.pending,
                    "transactional": m.transactional,
                    "attempts": row.map_or(0, |r| r.attempts),
                    "applied_at": row.and_then(|r| r.applied_at.clone()),
                    "execution_time_ms": row.and_then(|r| r.execution_time_ms),
                    "error_message": row.and_then(|r| r.error_message.clone()),
                    "checksum_drift": m.checksum_drift,
                })
            })
            .collect();
        let unknown: Vec<Value> = status
            .unknown_applied
            .iter()
            .map(|r| json!({"id": r.name, "status": r.status.to_string()}))
            .collect();
        let out = json!({
            "database": db.url().redacted(),
            "migrations": migrations,
            "unknown_applied": unknown,
            "pending": status.pending().count(),
        });
        println!("{out:#}");
        return;
    }
    println!("Database: {}", db.url());
    println!(
        "{:<40} {:<8} {:>8} {:>10}  APPLIED AT / NOTES",
        "MIGRATION", "STATUS", "ATTEMPTS", "TIME (ms)"
    );
    for m in &status.migrations {
        let row = m.row.as_ref();
        let state = m.status_label();
        let mut notes = vec![row.and_then(|r| r.applied_at.clone()).unwrap_or_default()];
        if m.checksum_drift {
            notes.push("CODE CHANGED since applied".into());
        }
        if let Some(e) = row.and_then(|r| r.error_message.as_ref()) {
            notes.push(format!("last error: {e}"));
        }
        if !m.transactional {
            notes.push("non-transactional".into());
        }
        println!(
            "{:<40} {:<8} {:>8} {:>10}  {}",
            m.id,
            state,
            row.map_or(0, |r| r.attempts),
            row.and_then(|r| r.execution_time_ms)
                .map_or("-".to_owned(), |ms| ms.to_string()),
            notes.join("; ").trim_start_matches("; ")
        );
    }
    for r in &status.unknown_applied {
        println!(
            "{:<40} {:<8} {:>8} {:>10}  applied, but not in this binary",
            r.name, r.status, r.attempts, "-"
        );
    }
    println!("{} pending", status.pending().count());
}

fn plan(migrator: &Migrator, db: &Database, json: bool) -> Result<u8> {
    let config = Config::from_env()?;
    let status = migrator.status(db)?;
    let pending: Vec<_> = status.pending().collect();
    let ids: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
    // Each variable that decides, and what it decides.
    let mut decisions: Vec<(&str, String, bool)> = Vec::new();
    let env = config.environment();
    match config.run_refusal() {
        Some(reason) => decisions.push(("ENABLE_PROD_MIGRATIONS", reason, false)),
        None if env == crate::config::Environment::Production => decisions.push((
            "ENABLE_PROD_MIGRATIONS",
            "true: production migrations are allowed".into(),
            true,
        )),
        None => decisions.push((
            "ENVIRONMENT",
            format!("{env}: migrations are allowed"),
            true,
        )),
    }
    if !pending.is_empty() {
        if config.require_confirmation_setting().0 {
            let pinned = ids.join(",");
            let (text, ok) = if crate::confirm::pinned_plan_matches(config.confirm_value(), &ids) {
                ("true: confirmed by MIGRATION_CONFIRM".to_owned(), true)
            } else if config.interactive_value() {
                (
                    "true: `up` will ask at the terminal (or pass --yes)".to_owned(),
                    true,
                )
            } else {
                (
                    format!("true: an unattended run needs MIGRATION_CONFIRM={pinned}"),
                    false,
                )
            };
            decisions.push(("MIGRATION_REQUIRE_CONFIRMATION", text, ok));
        } else {
            decisions.push((
                "MIGRATION_REQUIRE_CONFIRMATION",
                "false: no confirmation".into(),
                true,
            ));
        }
        if config.backup_before_setting().0 {
            decisions.push((
                "MIGRATION_BACKUP_BEFORE",
                format!(
                    "true: a backup is written to {} first",
                    config.backup_dir_value().display()
                ),
                true,
            ));
        } else {
            decisions.push(("MIGRATION_BACKUP_BEFORE", "false: no backup".into(), true));
        }
    }
    let allowed = decisions.iter().all(|(_, _, ok)| *ok);
    let startup = config
        .startup_skip_reason()
        .map_or("would migrate".to_owned(), |r| format!("would skip: {r}"));
    if json {
        let out = json!({
            "environment": env.as_str(),
            "database": db.url().redacted(),
            "pending": pending.iter().map(|m| json!({"id": m.id, "transactional": m.transactional})).collect::<Vec<_>>(),
            "up_allowed": allowed,
            "decisions": decisions.iter().map(|(var, text, ok)| json!({"variable": var, "decision": text, "allows": ok})).collect::<Vec<_>>(),
            "startup": startup,
        });
        println!("{out:#}");
    } else {
        println!("Environment: {env}");
        println!("Database: {}", db.url());
        if pending.is_empty() {
            println!("Nothing pending.");
        }
        for m in &pending {
            let tx = if m.transactional {
                "transactional"
            } else {
                "non-transactional"
            };
            println!("  {} ({tx})", m.id);
        }
        for (var, text, ok) in &decisions {
            println!("{} {var}: {text}", if *ok { "ok     " } else { "BLOCKS " });
        }
        if pending.is_empty() {
            println!("`up` has nothing to do.");
        } else if allowed {
            println!("`up` would apply {} migration(s).", pending.len());
        } else {
            println!("`up` would refuse.");
        }
        println!("Start-up {startup}.");
    }
    Ok(EXIT_OK)
}

fn dry_run_command(migrator: &Migrator, db: &Database) -> Result<u8> {
    let config = Config::from_env()?;
    let report = migrator.dry_run(db, &config)?;
    println!("Dry run (nothing was changed):");
    for version in &report.sql_migrations {
        println!("  {version}: SQL migration, pending, not rehearsed");
    }
    let mut failed = false;
    for m in &report.migrations {
        let line = match m.outcome {
            Outcome::Rehearsed => format!(
                "rehearsed in {} ms{}",
                m.duration.map_or(0, |d| d.as_millis()),
                m.rows
                    .filter(|r| *r > 0)
                    .map_or(String::new(), |r| format!(", {r} rows"))
            ),
            Outcome::NotRehearsable => {
                "not rehearsable (non-transactional, or after one that is)".to_owned()
            }
            Outcome::Failed => {
                failed = true;
                format!("FAILED: {}", m.error.as_deref().unwrap_or("unknown error"))
            }
            Outcome::Skipped => "skipped by an operator".to_owned(),
            _ => "already applied".to_owned(),
        };
        println!("  {}: {line}", m.id);
    }
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

fn up(mut migrator: Migrator, db: &Database, yes: bool) -> Result<u8> {
    let mut config = Config::from_env()?;
    config.dangerous_assume_yes(yes);
    let bar = std::io::stderr().is_terminal().then(progress_bar);
    if let Some((observer, _)) = &bar {
        migrator.progress_observer(Arc::clone(observer));
    }
    let result = migrator.run(db, &config);
    if let Some((_, bars)) = bar {
        if let Ok(bars) = bars.lock() {
            if let Some((_, bar)) = bars.as_ref() {
                bar.finish();
            }
        }
    }
    let report = result?;
    let applied: Vec<&str> = report
        .migrations
        .iter()
        .filter(|m| m.outcome == Outcome::Applied)
        .map(|m| m.id.as_str())
        .collect();
    if let Some(backup) = &report.backup {
        println!("backup written: {}", backup.path.display());
    }
    if applied.is_empty() && report.sql_migrations.is_empty() {
        println!("Nothing to do: no pending migrations.");
    } else {
        for version in &report.sql_migrations {
            println!("applied SQL migration {version}");
        }
        for id in applied {
            println!("applied {id}");
        }
    }
    Ok(EXIT_OK)
}

type Bars = Arc<Mutex<Option<(String, indicatif::ProgressBar)>>>;

/// An indicatif bar per migration, drawn on stderr.
fn progress_bar() -> (crate::context::ProgressObserver, Bars) {
    let bars: Bars = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&bars);
    let observer: crate::context::ProgressObserver = Arc::new(move |id, snapshot| {
        let Ok(mut current) = shared.lock() else {
            return;
        };
        let fresh = current.as_ref().is_none_or(|(bar_id, _)| bar_id != id);
        if fresh {
            if let Some((_, old)) = current.take() {
                old.finish();
            }
            let bar = indicatif::ProgressBar::new(snapshot.total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(id.to_owned());
            *current = Some((id.to_owned(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(snapshot.total);
            bar.set_position(snapshot.done);
        }
    });
    (observer, bars)
}

fn print_verify(report: &VerifyReport, json: bool) {
    if json {
        let counts: serde_json::Map<String, Value> = report
            .counts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let out = json!({
            "counts": counts,
            "problems": report.problems,
            "notes": report.notes,
            "ok": report.problems.is_empty(),
        });
        println!("{out:#}");
        return;
    }
    for (name, value) in &report.counts {
        println!("{name:<28} {value}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("PROBLEM: {problem}");
    }
    println!(
        "{}",
        if report.problems.is_empty() {
            "verify: ok"
        } else {
            "verify: FAILED"
        }
    );
}
