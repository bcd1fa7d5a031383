//! Names of the variables [`Params::from_env`](super::Params::from_env) reads.

/// Argon2 memory cost in KiB (default 19456).
pub const ARGON2_MEMORY_KIB: &str = "ARGON2_MEMORY_KIB";
/// Argon2 iterations (default 2).
pub const ARGON2_ITERATIONS: &str = "ARGON2_ITERATIONS";
/// Argon2 lanes (default 1).
pub const ARGON2_PARALLELISM: &str = "ARGON2_PARALLELISM";
/// Every variable above.
pub const ALL: [&str; 3] = [ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM];
