//! The AVX-512F kernel: a port of the reference C's `blamka-round-opt.h` AVX-512F path
//! (phc-winner-argon2, CC0/Apache-2.0). A block is 16 vectors of eight words; four rows (or four
//! column pairs) go through the BlaMka round at once, and rotations are single instructions.

use std::arch::x86_64::*;

use super::{Block, FillBlock};

/// The AVX-512F block function if this CPU has AVX-512F (the only way to reach it).
pub(super) fn fill_block() -> Option<FillBlock> {
    if std::is_x86_feature_detected!("avx512f") {
        Some(fill_block_checked)
    } else {
        None
    }
}

/// Private: only handed out by [`fill_block`] after it found AVX-512F.
fn fill_block_checked(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool) {
    // SAFETY: this function is private and only reachable through the pointer that
    // `fill_block` returns after `is_x86_feature_detected!("avx512f")` said the CPU has it.
    unsafe { fill_block_avx512(state, reference, next, with_xor) }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn muladd(x: __m512i, y: __m512i) -> __m512i {
    let z = _mm512_mul_epu32(x, y);
    _mm512_add_epi64(_mm512_add_epi64(x, y), _mm512_add_epi64(z, z))
}

/// G on lanes (a, b, c, d) for two independent groups; `v` is (A0, B0, C0, D0, A1, B1, C1, D1).
#[target_feature(enable = "avx512f")]
#[inline]
fn g(v: &mut [__m512i; 8]) {
    let [a0, b0, c0, d0, a1, b1, c1, d1] = v;
    for (a, b, c, d) in [(a0, b0, c0, d0), (a1, b1, c1, d1)] {
        *a = muladd(*a, *b);
        *d = _mm512_ror_epi64::<32>(_mm512_xor_si512(*d, *a));
        *c = muladd(*c, *d);
        *b = _mm512_ror_epi64::<24>(_mm512_xor_si512(*b, *c));
        *a = muladd(*a, *b);
        *d = _mm512_ror_epi64::<16>(_mm512_xor_si512(*d, *a));
        *c = muladd(*c, *d);
        *b = _mm512_ror_epi64::<63>(_mm512_xor_si512(*b, *c));
    }
}

/// The BlaMka round (column step, diagonal step) within each 256-bit half of the vectors.
#[target_feature(enable = "avx512f")]
#[inline]
fn round(v: &mut [__m512i; 8]) {
    const LEFT_1: i32 = 0b00_11_10_01;
    const LEFT_2: i32 = 0b01_00_11_10;
    const LEFT_3: i32 = 0b10_01_00_11;
    g(v);
    for group in [0, 4] {
        v[group + 1] = _mm512_permutex_epi64::<LEFT_1>(v[group + 1]);
        v[group + 2] = _mm512_permutex_epi64::<LEFT_2>(v[group + 2]);
        v[group + 3] = _mm512_permutex_epi64::<LEFT_3>(v[group + 3]);
    }
    g(v);
    for group in [0, 4] {
        v[group + 1] = _mm512_permutex_epi64::<LEFT_3>(v[group + 1]);
        v[group + 2] = _mm512_permutex_epi64::<LEFT_2>(v[group + 2]);
        v[group + 3] = _mm512_permutex_epi64::<LEFT_1>(v[group + 3]);
    }
}

/// Low halves of `x` and `y` into `x`, high halves into `y`.
#[target_feature(enable = "avx512f")]
#[inline]
fn swap_halves(x: &mut __m512i, y: &mut __m512i) {
    let low = _mm512_shuffle_i64x2::<0b01_00_01_00>(*x, *y);
    let high = _mm512_shuffle_i64x2::<0b11_10_11_10>(*x, *y);
    *x = low;
    *y = high;
}

/// The word order that gathers quarters after [`swap_halves`].
#[target_feature(enable = "avx512f")]
#[inline]
fn quarters() -> __m512i {
    _mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7)
}

#[target_feature(enable = "avx512f")]
#[inline]
fn swap_quarters(x: &mut __m512i, y: &mut __m512i) {
    swap_halves(x, y);
    *x = _mm512_permutexvar_epi64(quarters(), *x);
    *y = _mm512_permutexvar_epi64(quarters(), *y);
}

#[target_feature(enable = "avx512f")]
#[inline]
fn unswap_quarters(x: &mut __m512i, y: &mut __m512i) {
    *x = _mm512_permutexvar_epi64(quarters(), *x);
    *y = _mm512_permutexvar_epi64(quarters(), *y);
    swap_halves(x, y);
}

/// Four rows at once: rows 4i..4i+4 are vectors 8i..8i+8 of `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn rows(s: &mut [__m512i; 16], i: usize) {
    let b = 8 * i;
    let index = [b, b + 2, b + 1, b + 3, b + 4, b + 6, b + 5, b + 7];
    let mut v = index.map(|i| s[i]);
    let [a0, b0, c0, d0, a1, b1, c1, d1] = &mut v;
    swap_halves(a0, b0);
    swap_halves(c0, d0);
    swap_halves(a1, b1);
    swap_halves(c1, d1);
    round(&mut v);
    let [a0, b0, c0, d0, a1, b1, c1, d1] = &mut v;
    swap_halves(a0, b0);
    swap_halves(c0, d0);
    swap_halves(a1, b1);
    swap_halves(c1, d1);
    for (i, x) in index.into_iter().zip(v) {
        s[i] = x;
    }
}

/// Four column pairs at once: vectors i, i+2, ..., i+14 of `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn columns(s: &mut [__m512i; 16], i: usize) {
    let index = [i, 4 + i, 8 + i, 12 + i, 2 + i, 6 + i, 10 + i, 14 + i];
    let mut v = index.map(|i| s[i]);
    let [a0, b0, c0, d0, a1, b1, c1, d1] = &mut v;
    swap_quarters(a0, a1);
    swap_quarters(b0, b1);
    swap_quarters(c0, c1);
    swap_quarters(d0, d1);
    round(&mut v);
    let [a0, b0, c0, d0, a1, b1, c1, d1] = &mut v;
    unswap_quarters(a0, a1);
    unswap_quarters(b0, b1);
    unswap_quarters(c0, c1);
    unswap_quarters(d0, d1);
    for (i, x) in index.into_iter().zip(v) {
        s[i] = x;
    }
}

#[target_feature(enable = "avx512f")]
fn fill_block_avx512(state: &mut Block, reference: &Block, next: &mut Block, with_xor: bool) {
    let load = |b: &Block, i: usize| {
        // SAFETY: `b` is a live 1024-byte block and i < 16, so the 64 bytes at word 8i are in
        // bounds; `loadu` has no alignment requirement. AVX-512F is enabled on this function.
        unsafe { _mm512_loadu_si512(b.0.as_ptr().add(8 * i).cast::<__m512i>()) }
    };
    let mut s = [_mm512_setzero_si512(); 16];
    let mut xy = [_mm512_setzero_si512(); 16];
    for i in 0..16 {
        s[i] = _mm512_xor_si512(load(state, i), load(reference, i));
        xy[i] = if with_xor {
            _mm512_xor_si512(s[i], load(next, i))
        } else {
            s[i]
        };
    }
    // One call site each, so that both are inlined.
    for i in 0..2 {
        rows(&mut s, i);
    }
    for i in 0..2 {
        columns(&mut s, i);
    }
    for i in 0..16 {
        let z = _mm512_xor_si512(s[i], xy[i]);
        // SAFETY: as for the loads: word 8i of a 128-word block, 64 bytes, in bounds of a
        // block we hold exclusively (`&mut`); `storeu` has no alignment requirement.
        unsafe {
            _mm512_storeu_si512(next.0.as_mut_ptr().add(8 * i).cast::<__m512i>(), z);
            _mm512_storeu_si512(state.0.as_mut_ptr().add(8 * i).cast::<__m512i>(), z);
        }
    }
}
