//! The bounds of the Argon2 parameters: one definition for reading `ARGON2_*`, making a
//! [`Hasher`](super::Hasher) and verifying a stored hash, so that whatever hashes
//! here also verifies here.

use std::fmt;
use std::ops::RangeInclusive;

use super::vars;

/// The memory (KiB) this crate hashes and verifies with (see `Params::MEMORY_KIB`).
pub(super) const MEMORY_KIB: RangeInclusive<u32> = argon2::Params::MIN_M_COST..=1 << 20;
/// The iterations this crate hashes and verifies with.
pub(super) const ITERATIONS: RangeInclusive<u32> = argon2::Params::MIN_T_COST..=64;
/// The lanes this crate hashes and verifies with.
pub(super) const PARALLELISM: RangeInclusive<u32> = argon2::Params::MIN_P_COST..=64;
/// Argon2's own rule: at least 8 KiB (blocks) of memory per lane.
pub(super) const MIN_MEMORY_KIB_PER_LANE: u32 = 8;

/// A parameter outside the bounds of [`Params`](super::Params).
#[derive(Debug)]
pub(crate) struct OutOfBounds {
    /// The variable that sets it.
    pub(crate) variable: &'static str,
    /// Its letter in a PHC string.
    letter: char,
    /// The value given.
    pub(crate) value: u32,
    /// The values accepted, the others as they are.
    pub(crate) bounds: RangeInclusive<u32>,
    /// Why the bounds are what they are, when another parameter sets them (else empty).
    pub(crate) why: &'static str,
}

impl std::error::Error for OutOfBounds {}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} is not from {} to {}{}",
            self.letter,
            self.value,
            self.bounds.start(),
            self.bounds.end(),
            self.why
        )
    }
}

/// The first of memory, iterations and lanes that is outside the bounds of [`Params`](super::Params).
pub(crate) fn out_of_bounds(
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> Option<OutOfBounds> {
    let check = |variable, letter, value, bounds: RangeInclusive<u32>, why| {
        (!bounds.contains(&value)).then_some(OutOfBounds {
            variable,
            letter,
            value,
            bounds,
            why,
        })
    };
    let per_lanes = parallelism.saturating_mul(MIN_MEMORY_KIB_PER_LANE);
    let (min_memory, why) = if per_lanes > *MEMORY_KIB.start() {
        (per_lanes, " (8 KiB per lane of ARGON2_PARALLELISM)")
    } else {
        (*MEMORY_KIB.start(), "")
    };
    check(vars::ARGON2_PARALLELISM, 'p', parallelism, PARALLELISM, "")
        .or_else(|| check(vars::ARGON2_ITERATIONS, 't', iterations, ITERATIONS, ""))
        .or_else(|| {
            check(
                vars::ARGON2_MEMORY_KIB,
                'm',
                memory_kib,
                min_memory..=*MEMORY_KIB.end(),
                why,
            )
        })
}
