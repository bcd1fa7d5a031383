//! Argon2id version 0x13 (RFC 9106) around a [`Kernel`]'s block compression: the initial hash
//! H0, the variable-length hash H', the memory fill (data-independent addressing for the first
//! half of pass 0, data-dependent after), lanes and slices, and the final XOR and H'.
//!
//! Lanes are filled one after another (a hash of several lanes gives the same bytes as a
//! parallel fill); concurrency comes from hashing several passwords at once, one per thread.
//! The working memory is reused per thread. The argon2 crate is the oracle of the tests.

use std::cell::RefCell;

use blake2::digest::{Digest, Update, VariableOutput};
use blake2::{Blake2b512, Blake2bVar};
use zeroize::{Zeroize, Zeroizing};

use super::compress::{Block, FillBlock, Kernel, BLOCK_WORDS};
use crate::error::{Error, Result};

/// Slices per pass (synchronisation points).
const SYNC_POINTS: usize = 4;
/// Argon2id's type code in H0 and in the address generator.
const ARGON2ID: u32 = 2;
/// Version 0x13 (19).
const VERSION: u32 = 0x13;

/// Argon2id's inputs; `secret` and `associated_data` are empty for password hashes.
pub(crate) struct Inputs<'a> {
    /// The password.
    pub(crate) password: &'a [u8],
    /// The salt (at least 8 bytes).
    pub(crate) salt: &'a [u8],
    /// The secret key K (optional, empty if none).
    pub(crate) secret: &'a [u8],
    /// The associated data X (optional, empty if none).
    pub(crate) associated_data: &'a [u8],
}

/// Argon2id's costs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Costs {
    /// Memory in KiB (at least 8 per lane).
    pub(crate) memory_kib: u32,
    /// Passes (at least 1).
    pub(crate) iterations: u32,
    /// Lanes (1 to 2^24 - 1).
    pub(crate) lanes: u32,
}

impl Costs {
    fn lane_length(&self) -> usize {
        let lanes = self.lanes as usize;
        let blocks = (self.memory_kib as usize).max(2 * SYNC_POINTS * lanes);
        blocks / (lanes * SYNC_POINTS) * SYNC_POINTS
    }

    fn block_count(&self) -> usize {
        self.lane_length() * self.lanes as usize
    }
}

thread_local! {
    /// This thread's working memory, reused across hashes.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn failed(reason: String) -> Error {
    Error::Hashing { reason }
}

/// Argon2id of `inputs` into `out`, with this thread's reused memory (`reuse`) or a fresh
/// allocation, computing block compressions with `kernel`.
pub(crate) fn hash(
    kernel: Kernel,
    costs: Costs,
    inputs: &Inputs<'_>,
    out: &mut [u8],
    reuse: bool,
) -> Result<()> {
    let fill = kernel.fill_block().ok_or_else(|| {
        failed(format!(
            "the {kernel} Argon2 kernel needs a CPU feature this CPU lacks"
        ))
    })?;
    check(costs, inputs, out)?;
    let needed = costs.block_count();
    if !reuse {
        let mut memory = vec![Block::ZERO; needed];
        return hash_into(fill, costs, inputs, out, &mut memory);
    }
    MEMORY.with(|memory| {
        let mut memory = memory
            .try_borrow_mut()
            .map_err(|_| failed("Argon2 memory already in use on this thread".into()))?;
        if memory.len() < needed {
            memory.resize(needed, Block::ZERO);
        }
        hash_into(fill, costs, inputs, out, &mut memory[..needed])
    })
}

/// The bounds of RFC 9106 section 3.1 that the arithmetic below relies on.
fn check(costs: Costs, inputs: &Inputs<'_>, out: &[u8]) -> Result<()> {
    let too_long = |what: &str, len: usize| {
        (u32::try_from(len).is_err())
            .then(|| failed(format!("the {what} is too long ({len} bytes)")))
    };
    if let Some(e) = too_long("password", inputs.password.len())
        .or_else(|| too_long("secret", inputs.secret.len()))
        .or_else(|| too_long("associated data", inputs.associated_data.len()))
        .or_else(|| too_long("salt", inputs.salt.len()))
        .or_else(|| too_long("output", out.len()))
    {
        return Err(e);
    }
    let Costs {
        memory_kib: m,
        iterations: t,
        lanes: p,
    } = costs;
    if inputs.salt.len() < 8
        || out.len() < 4
        || t == 0
        || p == 0
        || p >= 1 << 24
        || u64::from(m) < 8 * u64::from(p)
    {
        return Err(failed(format!(
            "invalid Argon2id inputs: m={m} t={t} p={p}, salt of {} bytes, output of {} bytes \
             (need t >= 1, 1 <= p < 2^24, m >= 8p, a salt of 8 bytes or more, an output of 4 \
             bytes or more)",
            inputs.salt.len(),
            out.len()
        )));
    }
    Ok(())
}

fn le32(n: usize) -> [u8; 4] {
    // `check` bounded every length to u32.
    (n as u32).to_le_bytes()
}

/// H0 of RFC 9106 section 3.2.
fn initial_hash(costs: Costs, inputs: &Inputs<'_>, out_len: usize) -> Zeroizing<[u8; 64]> {
    let mut h = Blake2b512::new();
    for word in [
        costs.lanes,
        out_len as u32,
        costs.memory_kib,
        costs.iterations,
        VERSION,
        ARGON2ID,
    ] {
        Digest::update(&mut h, word.to_le_bytes());
    }
    for field in [
        inputs.password,
        inputs.salt,
        inputs.secret,
        inputs.associated_data,
    ] {
        Digest::update(&mut h, le32(field.len()));
        Digest::update(&mut h, field);
    }
    let mut h0 = Zeroizing::new([0u8; 64]);
    h0.copy_from_slice(&h.finalize());
    h0
}

/// H' of RFC 9106 section 3.3: `out.len()` bytes from the concatenation of `inputs`.
fn variable_hash(inputs: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let broken = |e: &dyn std::fmt::Display| failed(format!("BLAKE2b failed: {e}"));
    let len = le32(out.len());
    if out.len() <= 64 {
        let mut h = Blake2bVar::new(out.len()).map_err(|e| broken(&e))?;
        h.update(&len);
        for input in inputs {
            h.update(input);
        }
        return h.finalize_variable(out).map_err(|e| broken(&e));
    }
    let mut h = Blake2b512::new();
    Digest::update(&mut h, len);
    for input in inputs {
        Digest::update(&mut h, input);
    }
    let mut v = Zeroizing::new([0u8; 64]);
    v.copy_from_slice(&h.finalize());
    // r = ceil(len / 32) - 2 full 64-byte hashes contribute their first 32 bytes each...
    let r = out.len().div_ceil(32) - 2;
    out[..32].copy_from_slice(&v[..32]);
    for i in 1..r {
        let next = Blake2b512::digest(&v[..]);
        v.copy_from_slice(&next);
        out[i * 32..i * 32 + 32].copy_from_slice(&v[..32]);
    }
    // ... and the last one, of the remaining length, all of its bytes.
    let mut h = Blake2bVar::new(out.len() - 32 * r).map_err(|e| broken(&e))?;
    h.update(&v[..]);
    h.finalize_variable(&mut out[32 * r..])
        .map_err(|e| broken(&e))
}

/// The whole hash in `memory` (exactly the block count).
fn hash_into(
    fill: FillBlock,
    costs: Costs,
    inputs: &Inputs<'_>,
    out: &mut [u8],
    memory: &mut [Block],
) -> Result<()> {
    let h0 = initial_hash(costs, inputs, out.len());
    let lane_length = costs.lane_length();
    let mut bytes = Zeroizing::new([0u8; 1024]);
    for (lane, blocks) in memory.chunks_exact_mut(lane_length).enumerate() {
        for (i, block) in blocks[..2].iter_mut().enumerate() {
            variable_hash(&[&h0[..], &le32(i), &le32(lane)], &mut bytes[..])?;
            for (word, chunk) in block.0.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(chunk);
                *word = u64::from_le_bytes(le);
            }
        }
    }
    for pass in 0..costs.iterations as usize {
        for slice in 0..SYNC_POINTS {
            for lane in 0..costs.lanes as usize {
                fill_segment(fill, costs, memory, pass, slice, lane);
            }
        }
    }
    let mut last = memory[lane_length - 1].clone();
    for lane in 1..costs.lanes as usize {
        for (w, x) in last
            .0
            .iter_mut()
            .zip(memory[lane * lane_length + lane_length - 1].0)
        {
            *w ^= x;
        }
    }
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(last.0) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    last.0.zeroize();
    variable_hash(&[&bytes[..]], out)
}

/// `memory[reference]` and `memory[next]` (which differ) at once.
fn pair(memory: &mut [Block], reference: usize, next: usize) -> (&Block, &mut Block) {
    if reference < next {
        let (low, high) = memory.split_at_mut(next);
        (&low[reference], &mut high[0])
    } else {
        let (low, high) = memory.split_at_mut(reference);
        (&high[0], &mut low[next])
    }
}

/// The next 128 pseudo-random references of a data-independent segment:
/// `address = G(0, G(0, input))` after incrementing the counter in `input`.
fn next_addresses(fill: FillBlock, input: &mut Block, address: &mut Block) {
    input.0[6] += 1;
    let mut state = Block::ZERO;
    let mut once = Block::ZERO;
    fill(&mut state, input, &mut once, false);
    let mut state = Block::ZERO;
    fill(&mut state, &once, address, false);
}

/// Fills one segment (a quarter of a lane in one pass), RFC 9106 section 3.4.
fn fill_segment(
    fill: FillBlock,
    costs: Costs,
    memory: &mut [Block],
    pass: usize,
    slice: usize,
    lane: usize,
) {
    let lanes = costs.lanes as usize;
    let lane_length = costs.lane_length();
    let segment_length = lane_length / SYNC_POINTS;
    let data_independent = pass == 0 && slice < SYNC_POINTS / 2;
    let mut input = Block::ZERO;
    let mut address = Block::ZERO;
    if data_independent {
        input.0[..6].copy_from_slice(&[
            pass as u64,
            lane as u64,
            slice as u64,
            memory.len() as u64,
            u64::from(costs.iterations),
            u64::from(ARGON2ID),
        ]);
    }
    let first = if pass == 0 && slice == 0 {
        if data_independent {
            next_addresses(fill, &mut input, &mut address);
        }
        2
    } else {
        0
    };
    let segment_start = lane * lane_length + slice * segment_length;
    let previous = if slice == 0 && first == 0 {
        segment_start + lane_length - 1
    } else {
        segment_start + first - 1
    };
    let mut state = memory[previous].clone();
    for index in first..segment_length {
        let random = if data_independent {
            if index % BLOCK_WORDS == 0 {
                next_addresses(fill, &mut input, &mut address);
            }
            address.0[index % BLOCK_WORDS]
        } else {
            state.0[0]
        };
        let reference_lane = if pass == 0 && slice == 0 {
            lane
        } else {
            (random >> 32) as usize % lanes
        };
        // The blocks this one may reference: finished segments (of its own lane also the
        // blocks before it in this segment), never the block just before it.
        let area = if pass == 0 {
            if slice == 0 {
                index - 1
            } else if reference_lane == lane {
                slice * segment_length + index - 1
            } else {
                slice * segment_length - usize::from(index == 0)
            }
        } else if reference_lane == lane {
            lane_length - segment_length + index - 1
        } else {
            lane_length - segment_length - usize::from(index == 0)
        };
        let low = random & 0xffff_ffff;
        let x = (low * low) >> 32;
        let relative = area - 1 - ((area as u64 * x) >> 32) as usize;
        let start = if pass != 0 && slice != SYNC_POINTS - 1 {
            (slice + 1) * segment_length
        } else {
            0
        };
        let reference = reference_lane * lane_length + (start + relative) % lane_length;
        let (reference, next) = pair(memory, reference, segment_start + index);
        fill(&mut state, reference, next, pass != 0);
    }
}

#[cfg(test)]
mod tests;
