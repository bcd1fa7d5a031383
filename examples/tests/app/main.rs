//! The integration tests that link the reference app, `smart_meal_planner`: its migrations
//! register themselves (inventory), so "every registered migration" here is the app's set.
//! One binary, one throwaway PostgreSQL cluster, one fresh database per test.
//!
//! Tests that set the app's hash parameters (`kroger::set_hash_params`, once per process) all
//! set the same fast ones; `server_guards` needs the heavy ones and stays a binary of its own.

#[macro_use]
extern crate migrator_test_support;
#[path = "../common/mod.rs"]
mod common;

mod background;
mod k8s_manifests;
mod kroger;
mod metrics;
mod safety;
mod schema;
mod server;
mod statement_log;
mod wait;
