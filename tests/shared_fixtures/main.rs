//! The integration tests of the migrations in `migrator_tests::fixtures` (also run by the
//! `migrator-test-runner` binary in other processes): exactly that set is registered here.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod linking;
mod search_path;
