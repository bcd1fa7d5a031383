//! The crate's one error type.

use crate::{Costs, Kernel};

/// A `Result` whose error defaults to [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a hash could not be computed. Messages never contain the password, the salt or the
/// secret, only their lengths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel needs a CPU feature (AVX2, AVX-512F) that this CPU lacks.
    #[error("the {0} Argon2 kernel needs a CPU feature this CPU lacks")]
    UnsupportedKernel(Kernel),

    /// An input is longer than Argon2 can encode (4 GiB or more).
    #[error("the {what} is too long ({len} bytes)")]
    TooLong {
        /// Which input: `password`, `secret`, `associated data`, `salt` or `output`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },

    /// The costs or lengths are outside RFC 9106's bounds.
    #[error(
        "invalid Argon2id inputs: m={m} t={t} p={p}, salt of {salt_len} bytes, output of \
         {output_len} bytes (need t >= 1, 1 <= p < 2^24, m >= 8p, a salt of 8 bytes or more, \
         an output of 4 bytes or more)",
        m = costs.memory_kib,
        t = costs.iterations,
        p = costs.lanes
    )]
    InvalidInputs {
        /// The costs given.
        costs: Costs,
        /// The salt's length in bytes.
        salt_len: usize,
        /// The output's length in bytes.
        output_len: usize,
    },

    /// This thread's reused memory is borrowed already (a hash inside a hash on one thread).
    #[error("Argon2 memory already in use on this thread")]
    MemoryInUse,

    /// BLAKE2b refused a length (never with inputs that passed the checks above).
    #[error("BLAKE2b failed")]
    Blake2b(#[source] Box<dyn std::error::Error + Send + Sync>),
}
