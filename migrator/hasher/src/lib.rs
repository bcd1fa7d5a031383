//! The Argon2id engine of [migrator](https://example.invalid/migrator): block compression in
//! three kernels (AVX-512F, AVX2, portable), the memory fill with lanes in parallel, and the
//! working memory (reused per thread, on huge pages, wiped after every hash).
//!
//! An implementation detail: depend on `migrator` and use `migrator::password`, which makes
//! PHC strings, salts and parameters out of this raw hash and verifies them.
//!
//! ```
//! use migrator_hasher::{hash, Costs, Inputs, Kernel, Options};
//!
//! let inputs = Inputs {
//!     password: b"password",
//!     salt: b"somesalt",
//!     secret: &[],
//!     associated_data: &[],
//! };
//! let costs = Costs { memory_kib: 256, iterations: 2, lanes: 1 };
//! let mut out = [0u8; 32];
//! hash(Kernel::detected(), costs, &inputs, &mut out, Options::default())?;
//! assert_ne!(out, [0u8; 32]);
//! # Ok::<(), migrator_hasher::Error>(())
//! ```
//!
//! It is its own package so that debug builds optimise it alone (`[profile.dev.package]` in
//! the workspace's `Cargo.toml`): unoptimised, its SIMD intrinsics are function calls and a
//! hash takes many times as long, while the rest of migrator compiles faster unoptimised. Its
//! hot path is in non-generic functions, compiled here, never in the caller's crate. It has no
//! database code, and it holds all of the hashing's `unsafe` (`unsafe_code` is denied in the
//! workspace, migrator included): the SIMD kernels (`compress/avx2.rs`, `compress/avx512.rs`)
//! and the memory (`argon2id/memory.rs`), each module allowed by name with a reason, each block
//! with a `// SAFETY:` comment.

#![warn(missing_docs)]

mod argon2id;
mod compress;
mod error;

pub use argon2id::{hash, reused_memory, Costs, Inputs, LaneThreads, Options};
pub use compress::Kernel;
pub use error::{Error, Result};
