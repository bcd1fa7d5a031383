//! Argon2id's costs and the shape of the memory they give: lanes, slices, segments.

/// Slices per pass (synchronisation points).
pub(super) const SYNC_POINTS: usize = 4;
/// Argon2id's type code in H0 and in the address generator.
pub(super) const ARGON2ID: u32 = 2;

/// Argon2id's costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    /// Memory in KiB (at least 8 per lane).
    pub memory_kib: u32,
    /// Passes (at least 1).
    pub iterations: u32,
    /// Lanes (1 to 2^24 - 1).
    pub lanes: u32,
}

impl Costs {
    pub(super) fn lane_length(&self) -> usize {
        let lanes = self.lanes as usize;
        let blocks = (self.memory_kib as usize).max(2 * SYNC_POINTS * lanes);
        blocks / (lanes * SYNC_POINTS) * SYNC_POINTS
    }

    pub(super) fn block_count(&self) -> usize {
        self.lane_length() * self.lanes as usize
    }
}

/// The shape of the memory for some [`Costs`], in blocks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) lanes: usize,
    pub(super) lane_length: usize,
    pub(super) segment_length: usize,
    pub(super) blocks: usize,
    pub(super) iterations: usize,
}

impl Geometry {
    pub(super) fn of(costs: Costs) -> Geometry {
        let lane_length = costs.lane_length();
        Geometry {
            lanes: costs.lanes as usize,
            lane_length,
            segment_length: lane_length / SYNC_POINTS,
            blocks: costs.block_count(),
            iterations: costs.iterations as usize,
        }
    }
}
