//! One segment of the memory fill (a quarter of a lane in one pass), RFC 9106 section 3.4, and
//! the split of the memory that lets the segments of one slice be filled at once.
//!
//! Within a slice, a segment writes only its own blocks and reads blocks of other lanes only
//! outside their segments of this slice (RFC 9106 section 3.4.1.2). So [`split`] lends each
//! lane's segment of the slice mutably, to whichever thread fills it, and the rest of every lane
//! shared: safe Rust, no lock per block.

use zeroize::Zeroize;

use super::{Geometry, ARGON2ID, SYNC_POINTS};
use crate::compress::{Block, FillBlock, BLOCK_WORDS};

/// The blocks of one lane outside the slice being filled: those before its segment, and after.
pub(super) type Rest<'a> = (&'a [Block], &'a [Block]);

/// The segment of one lane in one slice, to be filled by one thread.
pub(super) struct Segment<'a> {
    /// The lane.
    pub(super) lane: usize,
    /// Its blocks in this slice.
    pub(super) blocks: &'a mut [Block],
}

/// Splits `memory` for `slice`: each lane's segment (writable), and every lane's other blocks
/// (read-only), indexed by lane.
pub(super) fn split<'a>(
    memory: &'a mut [Block],
    geometry: &Geometry,
    slice: usize,
) -> (Vec<Segment<'a>>, Vec<Rest<'a>>) {
    let mut segments = Vec::with_capacity(geometry.lanes);
    let mut rest = Vec::with_capacity(geometry.lanes);
    for (lane, blocks) in memory.chunks_exact_mut(geometry.lane_length).enumerate() {
        let (before, blocks) = blocks.split_at_mut(slice * geometry.segment_length);
        let (blocks, after) = blocks.split_at_mut(geometry.segment_length);
        segments.push(Segment { lane, blocks });
        rest.push((&*before, &*after));
    }
    (segments, rest)
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

/// Fills `segment` (lane `segment.lane` in `slice` of `pass`), reading the other lanes from
/// `rest` (as [`split`] made it); the temporaries are wiped before it returns.
pub(super) fn fill_segment(
    fill: FillBlock,
    geometry: &Geometry,
    pass: usize,
    slice: usize,
    segment: Segment<'_>,
    rest: &[Rest<'_>],
) {
    let Segment { lane, blocks } = segment;
    let Geometry {
        lanes,
        lane_length,
        segment_length,
        ..
    } = *geometry;
    let data_independent = pass == 0 && slice < SYNC_POINTS / 2;
    let mut input = Block::ZERO;
    let mut address = Block::ZERO;
    if data_independent {
        input.0[..6].copy_from_slice(&[
            pass as u64,
            lane as u64,
            slice as u64,
            geometry.blocks as u64,
            geometry.iterations as u64,
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
    let (before, after) = rest[lane];
    // The block before the first one filled: the lane's last block for slice 0 of a later pass.
    let mut state = if first > 0 {
        blocks[first - 1].clone()
    } else if slice == 0 {
        after[after.len() - 1].clone()
    } else {
        before[before.len() - 1].clone()
    };
    // Lane positions of this segment: [start, end).
    let start = slice * segment_length;
    let end = start + segment_length;
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
        let area_start = if pass != 0 && slice != SYNC_POINTS - 1 {
            end
        } else {
            0
        };
        let position = (area_start + relative) % lane_length;
        let (done, todo) = blocks.split_at_mut(index);
        let (before, after) = rest[reference_lane];
        let reference = if position < start {
            &before[position]
        } else if position >= end {
            &after[position - end]
        } else {
            // Inside this slice's segments, only the own lane's finished blocks are referenced.
            debug_assert_eq!(reference_lane, lane);
            &done[position - start]
        };
        fill(&mut state, reference, &mut todo[0], pass != 0);
    }
    state.zeroize();
    input.zeroize();
    address.zeroize();
}
