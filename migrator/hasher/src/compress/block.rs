//! The 1 KiB Argon2 block that every kernel compresses, and the kernels' common signature.

use zeroize::Zeroize;

/// Words (u64) in an Argon2 block.
pub(crate) const BLOCK_WORDS: usize = 128;

/// One 1 KiB Argon2 memory block, aligned to a cache line (and to an AVX-512 register).
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Block(pub(crate) [u64; BLOCK_WORDS]);

impl Block {
    /// The all-zero block.
    pub(crate) const ZERO: Block = Block([0; BLOCK_WORDS]);
}

impl Zeroize for Block {
    fn zeroize(&mut self) {
        // The slice, not the array: one bulk fill, not 128 single volatile writes.
        self.0[..].zeroize();
    }
}

/// `next = G(state, reference)` (XORed over the old `next` when `with_xor`), and `state` becomes
/// the new `next`: the reference C's `fill_block`, which keeps the previous block in `state`.
pub(crate) type FillBlock =
    fn(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool);
