//! The Smart Meal Planner's integration tests: its migrations, commands and demo server, the
//! programs (`migrate_kroger_passwords`, `smart-meal-planner`) run as child processes, their
//! operator page in a browser, their hash parameters and pool, PgBouncer in front of them. The
//! binary links the app, so its migrations register themselves (inventory) and "every registered
//! migration" here is the app's set. One binary, one throwaway PostgreSQL cluster, one fresh
//! database per test; the helpers are the library's tests' (migrator-test-support).
//!
//! Tests that set the app's hash parameters (`kroger::set_hash_params`, once per process) all
//! set the same fast ones; `server_guards` needs the heavy ones and stays a binary of its own.

#[macro_use]
extern crate migrator_test_support;
#[path = "../common/mod.rs"]
mod common;

mod audit;
mod background;
mod background_demo;
mod cli_edges;
mod foreign_text;
mod hash_params;
mod hash_pool;
mod k8s_manifests;
mod kroger;
mod legacy_table;
mod lock_lost;
mod metrics;
mod operator_page;
mod pgbouncer;
mod safety;
mod schema;
mod search_path;
mod server;
mod statement_log;
mod wait;

/// The module files of this binary and of the helpers are found by `mod NAME;` alone: a file in
/// tests/app/ or tests/common/ that no `mod` declares is silently never compiled. This check
/// fails instead.
#[test]
fn every_module_file_is_declared() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for dir in ["app", "common"] {
        let main = if dir == "app" { "main.rs" } else { "mod.rs" };
        let root = std::fs::read_to_string(tests.join(dir).join(main)).unwrap();
        for entry in std::fs::read_dir(tests.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            assert!(
                name == main || root.contains(&format!("mod {stem};")),
                "tests/{dir}/{name} is not a module of tests/{dir}/{main} (never compiled): add \
                 `mod {stem};` there"
            );
        }
    }
}
