//! The integration tests that register no migration and link no crate that does: the library
//! alone (the app's tests that run its programs as child processes are the app's: examples/tests/
//! app). One binary, one throwaway PostgreSQL cluster, one fresh database per test.

#[macro_use]
extern crate migrator_test_support;
#[path = "../common/mod.rs"]
mod common;

mod backfill;
mod database_url;
