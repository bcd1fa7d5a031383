//! The portable kernel: RFC 9106 section 3.5 in plain, safe Rust.

use super::{Block, BLOCK_WORDS};

/// BlaMka's multiply-add: `a + b + 2 * lo32(a) * lo32(b)` (mod 2^64).
#[inline(always)]
fn fblamka(a: u64, b: u64) -> u64 {
    let product = (a & 0xffff_ffff).wrapping_mul(b & 0xffff_ffff);
    a.wrapping_add(b).wrapping_add(product.wrapping_mul(2))
}

/// The quarter-round GB of RFC 9106 on words `a`, `b`, `c`, `d` of `v`.
#[inline(always)]
fn gb(v: &mut [u64; 16], a: usize, b: usize, c: usize, d: usize) {
    v[a] = fblamka(v[a], v[b]);
    v[d] = (v[d] ^ v[a]).rotate_right(32);
    v[c] = fblamka(v[c], v[d]);
    v[b] = (v[b] ^ v[c]).rotate_right(24);
    v[a] = fblamka(v[a], v[b]);
    v[d] = (v[d] ^ v[a]).rotate_right(16);
    v[c] = fblamka(v[c], v[d]);
    v[b] = (v[b] ^ v[c]).rotate_right(63);
}

/// The permutation P of RFC 9106 on sixteen words.
#[inline(always)]
fn permute(v: &mut [u64; 16]) {
    gb(v, 0, 4, 8, 12);
    gb(v, 1, 5, 9, 13);
    gb(v, 2, 6, 10, 14);
    gb(v, 3, 7, 11, 15);
    gb(v, 0, 5, 10, 15);
    gb(v, 1, 6, 11, 12);
    gb(v, 2, 7, 8, 13);
    gb(v, 3, 4, 9, 14);
}

/// See [`super::FillBlock`].
pub(super) fn fill_block(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool) {
    let mut r = [0u64; BLOCK_WORDS];
    for (r, (s, x)) in r.iter_mut().zip(state.0.iter().zip(reference.0.iter())) {
        *r = s ^ x;
    }
    let mut q = r;
    // Rows: eight runs of 16 consecutive words.
    for row in 0..8 {
        let mut v = [0u64; 16];
        v.copy_from_slice(&q[row * 16..row * 16 + 16]);
        permute(&mut v);
        q[row * 16..row * 16 + 16].copy_from_slice(&v);
    }
    // Columns: word pairs 2i, 2i+1 of every row.
    for column in 0..8 {
        let mut v = [0u64; 16];
        for row in 0..8 {
            v[2 * row] = q[row * 16 + 2 * column];
            v[2 * row + 1] = q[row * 16 + 2 * column + 1];
        }
        permute(&mut v);
        for row in 0..8 {
            q[row * 16 + 2 * column] = v[2 * row];
            q[row * 16 + 2 * column + 1] = v[2 * row + 1];
        }
    }
    for i in 0..BLOCK_WORDS {
        let mut z = q[i] ^ r[i];
        if with_xor {
            z ^= next.0[i];
        }
        next.0[i] = z;
        state.0[i] = z;
    }
}
