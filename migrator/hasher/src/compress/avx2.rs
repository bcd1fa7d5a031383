//! The AVX2 kernel: a port of the reference C's `blamka-round-opt.h` AVX2 path (phc-winner-argon2,
//! CC0/Apache-2.0). A block is 32 vectors of four words; two rows (or two column pairs) go
//! through the BlaMka round at once.

use std::arch::x86_64::*;

use super::{Block, FillBlock};

/// The AVX2 block function if this CPU has AVX2 (the only way to reach it).
pub(super) fn fill_block() -> Option<FillBlock> {
    if std::is_x86_feature_detected!("avx2") {
        Some(fill_block_checked)
    } else {
        None
    }
}

/// Private: only handed out by [`fill_block`] after it found AVX2.
fn fill_block_checked(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool) {
    // SAFETY: this function is private and only reachable through the pointer that
    // `fill_block` returns after `is_x86_feature_detected!("avx2")` said the CPU has AVX2.
    unsafe { fill_block_avx2(state, reference, next, with_xor) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn muladd(x: __m256i, y: __m256i) -> __m256i {
    let z = _mm256_mul_epu32(x, y);
    _mm256_add_epi64(_mm256_add_epi64(x, y), _mm256_add_epi64(z, z))
}

#[target_feature(enable = "avx2")]
#[inline]
fn rotr32(x: __m256i) -> __m256i {
    _mm256_shuffle_epi32::<0b10_11_00_01>(x)
}

#[target_feature(enable = "avx2")]
#[inline]
fn rotr24(x: __m256i) -> __m256i {
    let control = _mm256_setr_epi8(
        3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13,
        14, 15, 8, 9, 10,
    );
    _mm256_shuffle_epi8(x, control)
}

#[target_feature(enable = "avx2")]
#[inline]
fn rotr16(x: __m256i) -> __m256i {
    let control = _mm256_setr_epi8(
        2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12,
        13, 14, 15, 8, 9,
    );
    _mm256_shuffle_epi8(x, control)
}

#[target_feature(enable = "avx2")]
#[inline]
fn rotr63(x: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_srli_epi64::<63>(x), _mm256_add_epi64(x, x))
}

/// The two half-rounds of G on lanes (a, b, c, d), for two independent groups at once.
#[target_feature(enable = "avx2")]
#[inline]
fn g(v: &mut [__m256i; 8]) {
    let [a0, a1, b0, b1, c0, c1, d0, d1] = v;
    for (a, b, c, d) in [(a0, b0, c0, d0), (a1, b1, c1, d1)] {
        *a = muladd(*a, *b);
        *d = rotr32(_mm256_xor_si256(*d, *a));
        *c = muladd(*c, *d);
        *b = rotr24(_mm256_xor_si256(*b, *c));
        *a = muladd(*a, *b);
        *d = rotr16(_mm256_xor_si256(*d, *a));
        *c = muladd(*c, *d);
        *b = rotr63(_mm256_xor_si256(*b, *c));
    }
}

/// The BlaMka round on two rows; `v` is (A0, A1, B0, B1, C0, C1, D0, D1).
#[target_feature(enable = "avx2")]
#[inline]
fn round_rows(v: &mut [__m256i; 8]) {
    const LEFT_1: i32 = 0b00_11_10_01;
    const LEFT_2: i32 = 0b01_00_11_10;
    const LEFT_3: i32 = 0b10_01_00_11;
    g(v);
    v[2] = _mm256_permute4x64_epi64::<LEFT_1>(v[2]);
    v[3] = _mm256_permute4x64_epi64::<LEFT_1>(v[3]);
    v[4] = _mm256_permute4x64_epi64::<LEFT_2>(v[4]);
    v[5] = _mm256_permute4x64_epi64::<LEFT_2>(v[5]);
    v[6] = _mm256_permute4x64_epi64::<LEFT_3>(v[6]);
    v[7] = _mm256_permute4x64_epi64::<LEFT_3>(v[7]);
    g(v);
    v[2] = _mm256_permute4x64_epi64::<LEFT_3>(v[2]);
    v[3] = _mm256_permute4x64_epi64::<LEFT_3>(v[3]);
    v[4] = _mm256_permute4x64_epi64::<LEFT_2>(v[4]);
    v[5] = _mm256_permute4x64_epi64::<LEFT_2>(v[5]);
    v[6] = _mm256_permute4x64_epi64::<LEFT_1>(v[6]);
    v[7] = _mm256_permute4x64_epi64::<LEFT_1>(v[7]);
}

/// The BlaMka round on two column pairs; `v` is (A0, A1, B0, B1, C0, C1, D0, D1).
#[target_feature(enable = "avx2")]
#[inline]
fn round_columns(v: &mut [__m256i; 8]) {
    const SWAP: i32 = 0b10_11_00_01;
    g(v);
    let (t1, t2) = (
        _mm256_blend_epi32::<0xCC>(v[2], v[3]),
        _mm256_blend_epi32::<0x33>(v[2], v[3]),
    );
    v[3] = _mm256_permute4x64_epi64::<SWAP>(t1);
    v[2] = _mm256_permute4x64_epi64::<SWAP>(t2);
    v.swap(4, 5);
    let (t1, t2) = (
        _mm256_blend_epi32::<0xCC>(v[6], v[7]),
        _mm256_blend_epi32::<0x33>(v[6], v[7]),
    );
    v[6] = _mm256_permute4x64_epi64::<SWAP>(t1);
    v[7] = _mm256_permute4x64_epi64::<SWAP>(t2);
    g(v);
    let (t1, t2) = (
        _mm256_blend_epi32::<0xCC>(v[2], v[3]),
        _mm256_blend_epi32::<0x33>(v[2], v[3]),
    );
    v[2] = _mm256_permute4x64_epi64::<SWAP>(t1);
    v[3] = _mm256_permute4x64_epi64::<SWAP>(t2);
    v.swap(4, 5);
    let (t1, t2) = (
        _mm256_blend_epi32::<0x33>(v[6], v[7]),
        _mm256_blend_epi32::<0xCC>(v[6], v[7]),
    );
    v[6] = _mm256_permute4x64_epi64::<SWAP>(t1);
    v[7] = _mm256_permute4x64_epi64::<SWAP>(t2);
}

/// Runs the row round (`ROWS`) or the column round on the eight vectors of `s` at `index`, in
/// the order the round expects.
#[target_feature(enable = "avx2")]
#[inline]
fn on<const ROWS: bool>(s: &mut [__m256i; 32], index: [usize; 8]) {
    let mut v = index.map(|i| s[i]);
    if ROWS {
        round_rows(&mut v);
    } else {
        round_columns(&mut v);
    }
    for (i, x) in index.into_iter().zip(v) {
        s[i] = x;
    }
}

#[target_feature(enable = "avx2")]
fn fill_block_avx2(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool) {
    let load = |b: &Block, i: usize| {
        // SAFETY: `b` is a live 1024-byte block and i < 32, so the 32 bytes at word 4i are in
        // bounds; `loadu` has no alignment requirement. AVX2 is enabled on this function.
        unsafe { _mm256_loadu_si256(b.0.as_ptr().add(4 * i).cast::<__m256i>()) }
    };
    let mut s = [_mm256_setzero_si256(); 32];
    let mut xy = [_mm256_setzero_si256(); 32];
    for i in 0..32 {
        s[i] = _mm256_xor_si256(load(state, i), load(reference, i));
        xy[i] = if with_xor {
            _mm256_xor_si256(s[i], load(next, i))
        } else {
            s[i]
        };
    }
    for i in 0..4 {
        let b = 8 * i;
        let rows = [b, b + 4, b + 1, b + 5, b + 2, b + 6, b + 3, b + 7];
        on::<true>(&mut s, rows);
    }
    for i in 0..4 {
        let columns = [i, 4 + i, 8 + i, 12 + i, 16 + i, 20 + i, 24 + i, 28 + i];
        on::<false>(&mut s, columns);
    }
    for i in 0..32 {
        let z = _mm256_xor_si256(s[i], xy[i]);
        // SAFETY: as for the loads: word 4i of a 128-word block, 32 bytes, in bounds of a
        // block we hold exclusively (`&mut`); `storeu` has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(next.0.as_mut_ptr().add(4 * i).cast::<__m256i>(), z);
            _mm256_storeu_si256(state.0.as_mut_ptr().add(4 * i).cast::<__m256i>(), z);
        }
    }
}
