//! The shared test helpers: this package's binaries name them `common` (`mod common;`).

// Each test binary is its own crate.
#![allow(unreachable_pub)]

pub use migrator_test_support::*;
