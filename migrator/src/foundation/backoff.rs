//! Growing waits: the one formula behind every retry and poll of the library that backs off
//! (the migration lock's polling, a retried DDL statement, a background worker's failed batch,
//! its idle polls and its waits for rows that others hold).
//!
//! A wait starts at `first` and doubles on each attempt up to `max`. With jitter, each wait is
//! a random 50–100 % of that, so that runners, threads and the application that met one
//! failure together do not retry in step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A growing wait (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Waits of `first`, doubling up to `max`, without jitter.
    pub(crate) const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            jitter: false,
        }
    }

    /// The same waits, each a random 50–100 % of its full length.
    pub(crate) const fn jittered(self) -> Backoff {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The full wait before attempt `n` (0: the first): `first × 2^n`, at most `max`.
    pub(crate) fn full(&self, n: u32) -> Duration {
        let factor = 1u32 << n.min(20);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The wait before attempt `n` (0: the first): [`Backoff::full`], with jitter if asked.
    pub(crate) fn delay(&self, n: u32) -> Duration {
        let full = self.full(n);
        if !self.jitter {
            return full;
        }
        let random = RandomState::new().build_hasher().finish();
        let fraction = 0.5 + (random % 1001) as f64 / 2000.0;
        full.mul_f64(fraction)
    }
}

/// A [`Backoff`] and how far along it is: each [`Waits::next`] is longer than the last (up to
/// the maximum), until [`Waits::reset`].
#[derive(Clone, Debug)]
pub(crate) struct Waits {
    backoff: Backoff,
    attempt: u32,
}

impl Waits {
    /// At the first wait of `backoff`.
    pub(crate) const fn new(backoff: Backoff) -> Waits {
        Waits {
            backoff,
            attempt: 0,
        }
    }

    /// The next wait; the one after it is longer.
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// Back to the first wait.
    #[cfg_attr(
        not(feature = "backfill"),
        allow(dead_code, reason = "the workers' idle polls")
    )]
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Whether the waits reached their maximum (the next one is no longer than the last).
    #[cfg_attr(
        not(feature = "backfill"),
        allow(dead_code, reason = "the workers' idle polls")
    )]
    pub(crate) fn at_max(&self) -> bool {
        self.attempt > 0 && self.backoff.full(self.attempt - 1) >= self.backoff.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_maximum() {
        let b = Backoff::new(100 * MS, 5_000 * MS);
        let waits: Vec<u128> = (0..9).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX), 5_000 * MS);
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_wait() {
        let b = Backoff::new(250 * MS, 10_000 * MS).jittered();
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..40 {
            let full = b.full(n);
            let wait = b.delay(n);
            assert!(
                wait >= full / 2 && wait <= full,
                "{n}: {wait:?} of {full:?}"
            );
            seen.insert(wait);
        }
        // Random: not the same wait every time a length repeats.
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn waits_grow_and_reset() {
        let mut waits = Waits::new(Backoff::new(20 * MS, 500 * MS));
        let taken: Vec<u128> = (0..7).map(|_| waits.next().as_millis()).collect();
        assert_eq!(taken, [20, 40, 80, 160, 320, 500, 500]);
        assert!(waits.at_max());
        waits.reset();
        assert!(!waits.at_max());
        assert_eq!(waits.next(), 20 * MS);
    }
}
