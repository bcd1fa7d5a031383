//! Front ends, the top layer: what programs and people use the library through. It may import
//! every layer before it; nothing in the crate imports it (metrics are recorded from every
//! layer through the `metrics` facade; exporting them is the application's).
//!
//! - `cli/`: the operator command line (public `cli`, feature `cli`);
//! - `testing/`: `#[migrator::test]`'s harness, a fresh migrated database per test (public
//!   `testing`, feature `testing`);
//! - `variables.rs`: every environment variable the library reads, in one table (public
//!   `variables`).

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "testing")]
pub mod testing;
pub mod variables;
