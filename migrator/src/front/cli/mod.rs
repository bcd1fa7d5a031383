//! An operator command line for any app binary built on migrator: the generic commands, plus
//! the app's own subcommands beside them.
//!
//! ```text
//! APP [--database-url URL] status [--json]      every migration and its row
//!     plan [--json]                              what `up` would do here, and why; changes nothing
//!     up [--yes] [--dry-run]                     apply pending migrations (policy applies)
//!     mark NAME success|failed|skipped|pending [--yes]   set a migration's status by hand
//!     backup                                     back the database up now
//!     wait                                       block until nothing is pending (init containers)
//!     backfills [--json]                         background backfills and their progress
//!     backfill pause|resume|cancel NAME          control a background backfill everywhere
//!     work [--threads N] [--batch-size N]        work on active backfills until none is left
//!     ...                                        the app's own commands
//! ```
//!
//! Exit codes: 0 done (also nothing to do); 1 a migration (or an app's check) failed; 2 usage
//! or configuration error; 3 refused by policy. `--database-url` overrides `DATABASE_URL`;
//! `MIGRATION_DATABASE_URL`, when set, is what the generic commands migrate and read (see
//! [`Database::with_migration_url`]).
//!
//! An app adds its commands as a [`clap::Subcommand`] enum implementing [`AppCommand`]:
//!
//! ```no_run
//! use migrator::cli::{App, AppCommand, EXIT_OK};
//! use migrator::{Database, Result};
//!
//! #[derive(clap::Subcommand)]
//! enum MyCommands {
//!     /// Count the users.
//!     CountUsers,
//! }
//!
//! impl AppCommand for MyCommands {
//!     fn run(self, db: &Database) -> Result<u8> {
//!         match self {
//!             MyCommands::CountUsers => {
//!                 let _conn = db.get()?;
//!                 Ok(EXIT_OK)
//!             }
//!         }
//!     }
//! }
//!
//! struct MyApp;
//! impl App for MyApp {
//!     type Command = MyCommands;
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     migrator::cli::main("my-app", &MyApp)
//! }
//! ```
//!
//! An app with no commands of its own uses `type Command = migrator::cli::NoCommands;`.

#[cfg(feature = "backfill")]
mod backfills;
mod exit;
mod progress;
mod render;

pub use exit::{exit_code, EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE};

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::access::connection::Database;
use crate::foundation::config::{Config, Environment};
use crate::foundation::error::{Error, Result};
use crate::policy::plan::MarkAs;
use crate::running::migrations::Migrator;

/// How often `wait` reads the tracking table.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// An app's own subcommand, run with the database the command line opened.
pub trait AppCommand: Subcommand {
    /// Runs the command; returns the exit code (an error maps to one by [`exit_code`]).
    fn run(self, db: &Database) -> Result<u8>;
}

/// For apps with no commands of their own.
#[derive(Clone, Copy, Debug, Subcommand)]
pub enum NoCommands {}

impl AppCommand for NoCommands {
    fn run(self, _db: &Database) -> Result<u8> {
        match self {}
    }
}

/// The app-specific parts of the command line.
pub trait App: Sync {
    /// The app's own subcommands, beside the generic ones ([`NoCommands`] for none).
    type Command: AppCommand;

    /// Reads and checks the app's own configuration (e.g. password hashing parameters) before
    /// any command connects or writes; a configuration error there exits 2 (default: none).
    fn check_config(&self) -> Result<()> {
        Ok(())
    }

    /// The app's migrations (default: every registered one).
    fn migrator(&self) -> Result<Migrator> {
        Migrator::from_registry()
    }
}

#[derive(Parser)]
#[command(
    version,
    about = "Database migrations: status, plan, apply, and the app's commands."
)]
struct Args<C: AppCommand> {
    /// Database URL; overrides DATABASE_URL (postgres://..., sqlite://PATH).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command<C>,
}

#[derive(Subcommand)]
enum Command<C: AppCommand> {
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
    /// Set a migration's status by hand (asks for confirmation in production).
    Mark {
        /// The migration ID.
        name: String,
        /// The new status (`pending` deletes its row).
        status: MarkAs,
        /// Confirm without being asked.
        #[arg(long)]
        yes: bool,
    },
    /// Back the database up now into MIGRATION_BACKUP_DIR (pg_dump or VACUUM INTO).
    Backup,
    /// Block until nothing is pending (someone else migrates), for at most
    /// MIGRATION_LOCK_TIMEOUT_SECS: exit 0 when ready, 1 on timeout. For init containers.
    Wait,
    /// Background backfills: status, rows done and total, rate, ETA, workers.
    #[cfg(feature = "backfill")]
    Backfills {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause, resume or cancel a background backfill (every worker on every host sees it
    /// within one batch).
    #[cfg(feature = "backfill")]
    Backfill {
        /// What to do.
        action: crate::records::backfill::state::Control,
        /// The backfill's name.
        name: String,
    },
    /// Work on the active background backfills in the foreground until none is active.
    #[cfg(feature = "backfill")]
    Work {
        /// Worker threads (default MIGRATION_BACKFILL_THREADS if set, else all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Rows per batch to start with (it adapts to MIGRATION_BATCH_TARGET_MS).
        #[arg(long)]
        batch_size: Option<u32>,
    },
    #[command(flatten)]
    App(C),
}

/// Parses the process arguments, runs the command, and returns the exit code. Installs a
/// stderr logger (`RUST_LOG` filters it, default `info`) unless one is installed already.
pub fn main<A: App>(name: &str, app: &A) -> ExitCode {
    let args = match Args::<A::Command>::try_parse() {
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

fn connect(url: Option<String>) -> Result<Database> {
    match url {
        Some(url) => Database::connect(&url)?.with_migration_url_from_env(),
        None => Database::from_env(),
    }
}

fn run<A: App>(app: &A, args: Args<A::Command>) -> Result<u8> {
    app.check_config()?;
    let migrator = app.migrator()?;
    let db = connect(args.database_url)?;
    match args.command {
        Command::Status { json } => {
            let status = migrator.status(&db)?;
            render::status(db.for_migrations(), &status, json);
            Ok(EXIT_OK)
        }
        Command::Plan { json } => {
            let plan = migrator.plan(&db, &Config::from_env()?)?;
            render::plan(&plan, json);
            Ok(EXIT_OK)
        }
        Command::Up { dry_run: true, .. } => {
            let report = migrator.dry_run(&db, &Config::from_env()?)?;
            Ok(render::dry_run(&report))
        }
        Command::Up { yes, .. } => up(migrator, &db, yes),
        Command::Mark { name, status, yes } => mark(&migrator, &db, &name, status, yes),
        Command::Backup => {
            let backup = migrator.backup(&db, &Config::from_env()?)?;
            println!(
                "backup written: {} ({} bytes)",
                backup.path.display(),
                backup.bytes
            );
            Ok(EXIT_OK)
        }
        Command::Wait => {
            let timeout = Config::from_env()?.lock_timeout();
            let ready = migrator.wait_until_applied(&db, timeout, WAIT_POLL)?;
            Ok(if ready { EXIT_OK } else { EXIT_FAILED })
        }
        #[cfg(feature = "backfill")]
        Command::Backfills { json } => backfills::list(&db, json),
        #[cfg(feature = "backfill")]
        Command::Backfill { action, name } => backfills::control(&db, action, &name),
        #[cfg(feature = "backfill")]
        Command::Work {
            threads,
            batch_size,
        } => backfills::work(&migrator, &db, threads, batch_size),
        Command::App(command) => command.run(&db),
    }
}

fn mark(migrator: &Migrator, db: &Database, name: &str, to: MarkAs, yes: bool) -> Result<u8> {
    let config = Config::from_env()?;
    if config.environment() == Environment::Production && !yes {
        let question = format!(
            "Mark {name} as {to} in the production database ({})?",
            db.for_migrations().url()
        );
        if !(config.interactive() && crate::policy::confirm::ask(&question)) {
            return Err(Error::Refused {
                reason: "marking a migration in production needs confirmation: answer y at \
                         the prompt, or pass --yes"
                    .into(),
            });
        }
    }
    migrator.mark(db, &config, name, to)?;
    println!("{name} marked {to}");
    Ok(EXIT_OK)
}

fn up(mut migrator: Migrator, db: &Database, yes: bool) -> Result<u8> {
    let mut config = Config::from_env()?;
    config.dangerous_assume_yes(yes);
    let bar = std::io::stderr()
        .is_terminal()
        .then(progress::Bars::default);
    if let Some(bars) = &bar {
        migrator.progress_observer(bars.observer());
    }
    let result = migrator.run(db, &config);
    if let Some(bars) = bar {
        bars.finish();
    }
    match result {
        Ok(report) => {
            render::up(&report);
            Ok(EXIT_OK)
        }
        Err(e) => {
            // What the run did before it stopped, then (from `main`) why it stopped.
            if let Some(report) = e.report() {
                render::stopped(report);
            }
            Err(e)
        }
    }
}
