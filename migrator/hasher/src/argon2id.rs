//! Argon2id version 0x13 (RFC 9106) around a [`Kernel`]'s block compression: the initial hash
//! H0, the variable-length hash H', the memory fill (data-independent addressing for the first
//! half of pass 0, data-dependent after), lanes and slices, and the final XOR and H'.
//!
//! The segments of one slice are filled on up to `p` threads (`lanes.rs`: the caller and
//! helpers lent from a small pool, on spare cores only); the working memory is the caller's,
//! reused per thread, on huge pages where the kernel offers them (`memory.rs`). After each hash
//! every block of it is wiped, and so are the blocks and buffers derived from the password on
//! the way (H0, the final block, the temporaries of the fill) and the stacks that computed
//! them. The argon2 crate is the oracle of the tests.

use std::cell::RefCell;
use std::fmt;

use blake2::digest::{Digest, Update, VariableOutput};
use blake2::{Blake2b512, Blake2bVar};
use zeroize::Zeroizing;

use crate::compress::{Block, FillBlock, Kernel};
use crate::error::{Error, Result};

mod geometry;
mod lanes;
#[allow(
    unsafe_code,
    reason = "the hasher's memory: a 2 MiB-aligned mapping advised for huge pages, and a wipe the compiler cannot drop"
)]
mod memory;
mod segment;

pub use geometry::Costs;
use geometry::{Geometry, ARGON2ID, SYNC_POINTS};
pub use lanes::LaneThreads;
use lanes::{Crew, STACK_WIPE};
use memory::{wipe, Memory};
use segment::{fill_segment, split};

/// Version 0x13 (19).
const VERSION: u32 = 0x13;

/// Argon2id's inputs; `secret` and `associated_data` are empty for password hashes. `Debug`
/// shows their lengths only.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The password.
    pub password: &'a [u8],
    /// The salt (at least 8 bytes).
    pub salt: &'a [u8],
    /// The secret key K (optional, empty if none).
    pub secret: &'a [u8],
    /// The associated data X (optional, empty if none).
    pub associated_data: &'a [u8],
}

impl fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("password_len", &self.password.len())
            .field("salt_len", &self.salt.len())
            .field("secret_len", &self.secret.len())
            .field("associated_data_len", &self.associated_data.len())
            .finish()
    }
}

/// How a hash runs (the result is the same). The default: this thread's reused memory on huge
/// pages, lanes on spare cores, everything wiped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// This thread's reused memory, else a fresh allocation (wiped too before it is freed).
    pub reuse: bool,
    /// The threads that may fill the lanes.
    pub threads: LaneThreads,
    /// Wipe what the hash leaves behind (false only to measure what the wipe costs).
    pub wipe: bool,
    /// The reused memory advised for huge pages (false only to measure what they gain).
    pub huge_pages: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            reuse: true,
            threads: LaneThreads::Auto,
            wipe: true,
            huge_pages: true,
        }
    }
}

thread_local! {
    /// This thread's working memory, reused across hashes (all zero between them).
    static MEMORY: RefCell<Memory> = const { RefCell::new(Memory::EMPTY) };
}

/// Argon2id (version 0x13) of `inputs` into `out` (its length is the tag length), computing
/// block compressions with `kernel`.
///
/// Errors: a kernel this CPU cannot run ([`Error::UnsupportedKernel`]), costs or lengths
/// outside RFC 9106 ([`Error::InvalidInputs`], [`Error::TooLong`]), a hash started inside
/// another on the same thread with `reuse` ([`Error::MemoryInUse`]).
pub fn hash(
    kernel: Kernel,
    costs: Costs,
    inputs: &Inputs<'_>,
    out: &mut [u8],
    options: Options,
) -> Result<()> {
    let fill = kernel
        .fill_block()
        .ok_or(Error::UnsupportedKernel(kernel))?;
    check(costs, inputs, out)?;
    let result = hash_with_memory(fill, costs, inputs, out, options);
    if options.wipe {
        // The frames of the fill, the kernels and BLAKE2b were below this one.
        zeroize::zeroize_stack::<STACK_WIPE>();
    }
    result
}

/// [`hash`] after its checks, in this thread's reused memory or a fresh allocation. Not
/// inlined, so that the caller's wipe of the stack reaches every frame of the hash.
#[inline(never)]
fn hash_with_memory(
    fill: FillBlock,
    costs: Costs,
    inputs: &Inputs<'_>,
    out: &mut [u8],
    options: Options,
) -> Result<()> {
    let geometry = Geometry::of(costs);
    let crew = Crew::hire(geometry.lanes, options.threads);
    if !options.reuse {
        let mut memory = vec![Block::ZERO; geometry.blocks];
        return hash_into(
            fill,
            costs,
            &geometry,
            inputs,
            out,
            &mut memory,
            &crew,
            options.wipe,
        );
    }
    MEMORY.with(|memory| {
        let mut memory = memory.try_borrow_mut().map_err(|_| Error::MemoryInUse)?;
        if memory.blocks().len() < geometry.blocks || memory.huge_pages() != options.huge_pages {
            // The memory it replaces is all zero, as after every hash (bar a benchmark's
            // unwiped ones).
            *memory = Memory::new(geometry.blocks, options.huge_pages);
        }
        let memory = &mut memory.blocks_mut()[..geometry.blocks];
        hash_into(
            fill,
            costs,
            &geometry,
            inputs,
            out,
            memory,
            &crew,
            options.wipe,
        )
    })
}

/// The bounds of RFC 9106 section 3.1 that the arithmetic below relies on.
fn check(costs: Costs, inputs: &Inputs<'_>, out: &[u8]) -> Result<()> {
    let too_long = |what: &'static str, len: usize| {
        (u32::try_from(len).is_err()).then_some(Error::TooLong { what, len })
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
        return Err(Error::InvalidInputs {
            costs,
            salt_len: inputs.salt.len(),
            output_len: out.len(),
        });
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
    fn broken(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Blake2b(Box::new(e))
    }
    let len = le32(out.len());
    if out.len() <= 64 {
        let mut h = Blake2bVar::new(out.len()).map_err(broken)?;
        h.update(&len);
        for input in inputs {
            h.update(input);
        }
        return h.finalize_variable(out).map_err(broken);
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
    let mut h = Blake2bVar::new(out.len() - 32 * r).map_err(broken)?;
    h.update(&v[..]);
    h.finalize_variable(&mut out[32 * r..]).map_err(broken)
}

/// Wipes the memory of a hash when dropped, whatever happened (an error, a panic), unless
/// [`Wipe::now`] already did.
struct Wipe<'a> {
    memory: &'a mut [Block],
    armed: bool,
}

impl Wipe<'_> {
    /// Wipes the memory now, each lane by whichever thread of `crew` takes it.
    fn now(mut self, geometry: &Geometry, crew: &Crew) {
        if self.armed {
            self.armed = false;
            let lanes: Vec<&mut [Block]> = self.memory.chunks_mut(geometry.lane_length).collect();
            crew.each(lanes, wipe);
        }
    }
}

impl Drop for Wipe<'_> {
    fn drop(&mut self) {
        if self.armed {
            wipe(self.memory);
        }
    }
}

/// The whole hash in `memory` (exactly the block count), wiped afterwards if `wipe`.
#[allow(clippy::too_many_arguments)]
fn hash_into(
    fill: FillBlock,
    costs: Costs,
    geometry: &Geometry,
    inputs: &Inputs<'_>,
    out: &mut [u8],
    memory: &mut [Block],
    crew: &Crew,
    wipe: bool,
) -> Result<()> {
    let memory = Wipe {
        memory,
        armed: wipe,
    };
    let lane_length = geometry.lane_length;
    let mut bytes = Zeroizing::new([0u8; 1024]);
    let h0 = initial_hash(costs, inputs, out.len());
    for (lane, blocks) in memory.memory.chunks_exact_mut(lane_length).enumerate() {
        for (i, block) in blocks[..2].iter_mut().enumerate() {
            variable_hash(&[&h0[..], &le32(i), &le32(lane)], &mut bytes[..])?;
            for (word, chunk) in block.0.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(chunk);
                *word = u64::from_le_bytes(le);
            }
        }
    }
    drop(h0);
    for pass in 0..geometry.iterations {
        for slice in 0..SYNC_POINTS {
            let (segments, rest) = split(&mut *memory.memory, geometry, slice);
            crew.each(segments, |segment| {
                fill_segment(fill, geometry, pass, slice, segment, &rest)
            });
        }
    }
    let mut last = Zeroizing::new(memory.memory[lane_length - 1].clone());
    for lane in 1..geometry.lanes {
        for (w, x) in last
            .0
            .iter_mut()
            .zip(&memory.memory[lane * lane_length + lane_length - 1].0)
        {
            *w ^= x;
        }
    }
    memory.now(geometry, crew);
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(&last.0) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    variable_hash(&[&bytes[..]], out)
}

/// This thread's reused memory: its length in blocks, and whether every block is zero (as it
/// is after every hash that wipes). For tests of the callers' wipe; reads the whole memory.
pub fn reused_memory() -> (usize, bool) {
    MEMORY.with(|memory| {
        let memory = memory.borrow();
        let blocks = memory.blocks();
        let zero = blocks.iter().all(|block| *block == Block::ZERO);
        (blocks.len(), zero)
    })
}

#[cfg(test)]
mod lane_tests;
#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod tests;
