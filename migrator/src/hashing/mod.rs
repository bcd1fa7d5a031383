//! Hashing, above the foundation: Argon2id password hashing, with no database code. It may import
//! the foundation only; the raw Argon2id (kernels, lanes, memory, and all of the hashing's
//! `unsafe`) is the `migrator-hasher` package (`migrator/hasher/`), outside this crate.
//!
//! - `password/`: PHC strings, parameters and their bounds, verification and rehash decisions
//!   (public `password`, feature `password`).

pub mod password;
