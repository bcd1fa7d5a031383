//! Runs the shared fixture migrations against `DATABASE_URL` in development, printing
//! `applied ID` per migration this process applied. Used by the multi-process tests.
//!
//! With the argument `startup`, it calls `Migrator::run_on_startup` with `Config::from_env()`
//! instead, which reads the whole policy from the real process environment, and prints the outcome.

use migrator::{config::Environment, report::Outcome, Config, Database, Migrator};
use migrator_tests::fixtures;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!(
            "[{}] {} {}",
            std::process::id(),
            record.level(),
            record.args()
        );
    }
    fn flush(&self) {}
}

fn main() {
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    assert_eq!(fixtures::IDS.len(), 4);
    let result = match std::env::args().nth(1).as_deref() {
        Some("startup") => startup(),
        _ => run(),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_configuration() {
                2
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

fn run() -> migrator::Result<()> {
    let db = Database::from_env()?;
    let mut config = Config::new(Environment::Development);
    config.set_lock_timeout(std::time::Duration::from_secs(120));
    let report = Migrator::from_registry()?.run(&db, &config)?;
    for m in &report.migrations {
        if m.outcome == Outcome::Applied {
            println!("applied {}", m.id);
        }
    }
    Ok(())
}

fn startup() -> migrator::Result<()> {
    let db = Database::from_env()?;
    match Migrator::from_registry()?.run_on_startup(&db, &Config::from_env()?)? {
        migrator::report::StartupOutcome::Skipped { reason } => println!("skipped: {reason}"),
        migrator::report::StartupOutcome::Completed(report) => {
            println!("completed: {} applied", report.applied().count())
        }
        migrator::report::StartupOutcome::Failed(e) => println!("failed, starting anyway: {e}"),
        other => println!("{other:?}"),
    }
    Ok(())
}
