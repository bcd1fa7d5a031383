//! The integration tests of the library on real PostgreSQL and SQLite, one module per concern:
//! one binary, so one throwaway PostgreSQL cluster and one link for all of them, with one fresh
//! database per test.
//!
//! Each module registers migrations (and backfills) of its own and runs only those:
//! [`file_migrator!`], [`file_migration!`] and [`file_migrations!`] take the `#[migration]`s of
//! the calling file, so IDs may repeat between modules. (The binaries that run every registered migration, or need
//! a cluster of their own, stand alone: see tests/Cargo.toml.)
//!
//! Most of these tests wait (on a timeout they provoke, a lock held by another session, a
//! twenty-second backfill), so `scripts/test` runs this binary with more test threads than
//! cores; run alone, `cargo test -p migrator-tests --test integration -- --test-threads 8`
//! does the same.

#[macro_use]
extern crate migrator_test_support;
#[path = "../common/mod.rs"]
mod common;

mod backfill;
mod background_lib;
mod connections;
mod database_url;
mod ddl_lock;
mod engine;
mod foreign_text;
mod legacy_table;
mod lock_lost;
mod policy;
mod runner;
mod sql_migrations;
mod transactional_pool;
mod unwind;
