//! The integration tests that register no migration and link no crate that does: the library
//! alone, and the demo's binaries run as child processes. One binary, one throwaway PostgreSQL
//! cluster, one fresh database per test.

#[macro_use]
extern crate migrator_test_support;
#[path = "../common/mod.rs"]
mod common;

mod audit;
mod backfill;
mod background_demo;
mod cli_edges;
mod database_url;
mod hash_params;
mod hash_pool;
mod operator_page;
mod pgbouncer;
