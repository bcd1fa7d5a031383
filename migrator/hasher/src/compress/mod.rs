//! Argon2's block compression (the BlaMka rounds over a 1 KiB block), in three kernels: AVX-512F
//! and AVX2 (`std::arch`, x86-64 only) and portable Rust. The kernel is picked once per process
//! by CPU feature detection ([`Kernel::detected`]); every kernel computes the same bytes.
//!
//! The kernels' `unsafe` lives in `avx2.rs` and `avx512.rs` beside this file (the memory's is in
//! `argon2id/memory.rs`): the SIMD functions are reachable only through a function pointer that
//! those files hand out after checking the CPU feature at run time.

use std::fmt;
use std::sync::OnceLock;

// The `unsafe` of the hasher's kernels (its memory is in `argon2id/memory.rs`): `std::arch` intrinsics, behind run-time feature checks.
#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX2 intrinsics, called after a run-time CPU feature check"
)]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics, called after a run-time CPU feature check"
)]
mod avx512;
mod block;
mod portable;

pub(crate) use block::{Block, FillBlock, BLOCK_WORDS};

/// An implementation of Argon2's block compression, the heart of a hash.
///
/// All kernels give the same hashes; they differ in speed. [`Kernel::detected`] is the fastest
/// one this CPU supports, and what `migrator::password::Hasher::new` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// 512-bit vectors (x86-64 CPUs with AVX-512F).
    Avx512,
    /// 256-bit vectors (x86-64 CPUs with AVX2).
    Avx2,
    /// Plain Rust, on any CPU.
    Portable,
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];

    /// The fastest kernel this CPU supports, detected on first use and cached for the process.
    pub fn detected() -> Kernel {
        static DETECTED: OnceLock<Kernel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            Kernel::ALL
                .into_iter()
                .find(|kernel| kernel.is_supported())
                .unwrap_or(Kernel::Portable)
        })
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        self.fill_block().is_some()
    }

    /// The kernels this CPU supports, fastest first.
    pub fn supported() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|kernel| kernel.is_supported())
            .collect()
    }

    /// A short lowercase name: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }

    /// The kernel's block function, or `None` if this CPU lacks the features it needs.
    pub(crate) fn fill_block(self) -> Option<FillBlock> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::fill_block(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::fill_block(),
            Kernel::Portable => Some(portable::fill_block),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of pseudo-random words (splitmix64), so that every lane of every vector matters.
    fn block(seed: u64) -> Block {
        let mut x = seed;
        let mut b = Block::ZERO;
        for w in b.0.iter_mut() {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *w = z ^ (z >> 31);
        }
        b
    }

    #[test]
    fn every_supported_kernel_matches_the_portable_one_block_by_block() {
        let supported = Kernel::supported();
        assert!(supported.contains(&Kernel::Portable));
        assert_eq!(supported[0], Kernel::detected());
        let portable = portable::fill_block as FillBlock;
        for kernel in supported {
            let fill = kernel.fill_block().expect("a supported kernel");
            for seed in 0..200u64 {
                for with_xor in [false, true] {
                    let (state, reference, next) = (block(seed), block(!seed), block(seed << 7));
                    let (mut s1, mut n1) = (state.clone(), next.clone());
                    let (mut s2, mut n2) = (state.clone(), next.clone());
                    portable(&mut s1, &reference, &mut n1, with_xor);
                    fill(&mut s2, &reference, &mut n2, with_xor);
                    assert!(n1 == n2 && s1 == s2, "{kernel} differs (seed {seed})");
                    assert!(n1 == s1 && n1 != next);
                }
            }
        }
    }
}
