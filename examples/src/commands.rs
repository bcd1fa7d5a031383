//! The app's own commands of `migrate_kroger_passwords`, beside migrator's generic ones:
//! `verify` (the deployment guide's checks of migration 001). (`work`, which joins the
//! background backfill of 001 from any host, is one of migrator's generic commands.)

use migrator::cli::{AppCommand, EXIT_FAILED, EXIT_OK};
use migrator::{Database, Result};
use serde_json::{json, Value};

use crate::kroger;

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

/// The Smart Meal Planner's commands.
#[derive(Clone, Copy, Debug, clap::Subcommand)]
pub enum Commands {
    /// Check what migration 001 produced: the deployment guide's counts.
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
}

impl AppCommand for Commands {
    fn run(self, db: &Database) -> Result<u8> {
        match self {
            Commands::Verify {
                json,
                check_hashes,
                clear_verified_plaintext,
            } => {
                let options = VerifyOptions {
                    check_hashes,
                    clear_verified_plaintext,
                };
                let report = kroger::verify(db, &options)?;
                print_verify(&report, json);
                Ok(if report.problems.is_empty() {
                    EXIT_OK
                } else {
                    EXIT_FAILED
                })
            }
        }
    }
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
