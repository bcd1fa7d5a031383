//! The working memory of a hash, and its wipe.
//!
//! Argon2 reads one block at a random place of the whole memory for every block it computes.
//! With 4 KiB pages nearly every such read misses the TLB (19 MiB are 4,864 pages, 64 MiB
//! 16,384), and the page walk costs time on each. So on Linux the memory is mapped 2 MiB-aligned
//! and advised for transparent huge pages (`madvise(MADV_HUGEPAGE)`, which the kernel honours
//! with `transparent_hugepage/enabled` set to `always` or `madvise`): 2 MiB pages, about ten for
//! the default parameters, which the TLB holds. Only whole 2 MiB pages are advised, so that a
//! memory of 3 MiB is not backed by 4. Elsewhere, under 2 MiB, or if the mapping fails, the
//! memory is an ordinary allocation; the hashes are the same.
//!
//! [`wipe`] zeroes blocks with one bulk fill (`memset`: `rep stosb` or vector stores, not the
//! eight-byte volatile writes of `zeroize`, which took two to three times as long here), and an
//! empty `asm!` block that the compiler must assume reads them, so that the fill is never
//! dropped as a store nothing reads.
//!
//! The `unsafe` of the hasher's memory is here: the mapping (`mmap`, `munmap`, `madvise`), the
//! slice over it, and the bulk fill.

use super::Block;

/// The working memory of a hash, all zero between hashes.
pub(super) struct Memory {
    backing: Backing,
    /// Whether huge pages were asked for (whether the kernel gave them is its business).
    huge_pages: bool,
}

enum Backing {
    Heap(Vec<Block>),
    #[cfg(target_os = "linux")]
    Mapped(mapped::Mapping),
}

impl Memory {
    /// No memory yet.
    pub(super) const EMPTY: Memory = Memory {
        backing: Backing::Heap(Vec::new()),
        huge_pages: false,
    };

    /// `blocks` zero blocks, in memory advised for huge pages if `huge_pages` (Linux).
    pub(super) fn new(blocks: usize, huge_pages: bool) -> Memory {
        #[cfg(target_os = "linux")]
        if huge_pages {
            if let Some(mapping) = mapped::Mapping::new(blocks) {
                return Memory {
                    backing: Backing::Mapped(mapping),
                    huge_pages,
                };
            }
        }
        Memory {
            backing: Backing::Heap(vec![Block::ZERO; blocks]),
            huge_pages,
        }
    }

    /// Whether this memory was made for huge pages.
    pub(super) fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// The blocks.
    pub(super) fn blocks(&self) -> &[Block] {
        match &self.backing {
            Backing::Heap(blocks) => blocks,
            #[cfg(target_os = "linux")]
            Backing::Mapped(mapping) => mapping.blocks(),
        }
    }

    /// The blocks, to fill.
    pub(super) fn blocks_mut(&mut self) -> &mut [Block] {
        match &mut self.backing {
            Backing::Heap(blocks) => blocks,
            #[cfg(target_os = "linux")]
            Backing::Mapped(mapping) => mapping.blocks_mut(),
        }
    }
}

/// Zeroes `blocks` with one bulk fill that the compiler cannot drop (see the module docs).
pub(super) fn wipe(blocks: &mut [Block]) {
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    {
        let start = blocks.as_mut_ptr();
        // SAFETY: `start` is valid for writes of `blocks.len()` blocks (it comes from the
        // exclusive borrow `blocks`), and all-zero bytes are a valid `Block` (128 u64).
        unsafe { core::ptr::write_bytes(start, 0, blocks.len()) };
        // SAFETY: an empty asm block: it reads and writes nothing, but as it is given the
        // pointer and not told `nomem`, the compiler must assume it may read the blocks, so
        // the fill above stays. `readonly`: it writes no memory, `nostack`, `preserves_flags`.
        unsafe {
            core::arch::asm!(
                "/* {0} */",
                in(reg) start,
                options(readonly, nostack, preserves_flags)
            );
        }
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )))]
    for block in blocks {
        zeroize::Zeroize::zeroize(block);
    }
}

#[cfg(target_os = "linux")]
mod mapped {
    use std::ptr::NonNull;

    use super::Block;

    /// The size and alignment of a transparent huge page on x86-64 (a multiple of the page
    /// size wherever Linux runs, so that it also aligns the mapping's ends for `munmap`).
    const HUGE_PAGE: usize = 2 << 20;

    /// Anonymous memory mapped 2 MiB-aligned, its whole 2 MiB pages advised for huge pages.
    pub(super) struct Mapping {
        start: NonNull<Block>,
        /// Blocks usable.
        blocks: usize,
        /// Bytes mapped from `start` (`blocks` KiB rounded up to 2 MiB).
        bytes: usize,
    }

    impl Mapping {
        /// `blocks` zero blocks, or `None` if they fill no huge page (an ordinary allocation
        /// does as well) or the kernel refuses the mapping.
        pub(super) fn new(blocks: usize) -> Option<Mapping> {
            let used = blocks.checked_mul(size_of::<Block>())?;
            if used < HUGE_PAGE {
                return None;
            }
            let bytes = used.checked_next_multiple_of(HUGE_PAGE)?;
            let reserved = bytes.checked_add(HUGE_PAGE)?;
            // SAFETY: a new anonymous private mapping, at an address the kernel chooses: it
            // touches no memory that exists.
            let base = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    reserved,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                log::debug!("Argon2 memory in an ordinary allocation: mmap failed");
                return None;
            }
            let base = base.cast::<u8>();
            let head = base.align_offset(HUGE_PAGE);
            // SAFETY: `head` < HUGE_PAGE, so `start` and the tail are inside the mapping;
            // the head and the tail, page-aligned at both ends (the base is page-aligned and
            // the other ends are multiples of HUGE_PAGE from `start`), are unmapped and no
            // pointer to them is kept. Failure would only leave them mapped.
            let start = unsafe {
                let start = base.add(head);
                if head > 0 {
                    libc::munmap(base.cast(), head);
                }
                libc::munmap(start.add(bytes).cast(), HUGE_PAGE - head);
                start
            };
            let whole = used / HUGE_PAGE * HUGE_PAGE;
            // SAFETY: advice over whole pages inside the mapping; it changes no contents.
            if unsafe { libc::madvise(start.cast(), whole, libc::MADV_HUGEPAGE) } != 0 {
                log::debug!("Argon2 memory on small pages: madvise(MADV_HUGEPAGE) refused");
            }
            Some(Mapping {
                start: NonNull::new(start.cast())?,
                blocks,
                bytes,
            })
        }

        pub(super) fn blocks(&self) -> &[Block] {
            // SAFETY: `start` is 2 MiB-aligned (so aligned for `Block`) and valid for reads
            // of `blocks` blocks, which the kernel zeroed and which are only written through
            // `&mut self`; all-zero bytes are a valid `Block`.
            unsafe { core::slice::from_raw_parts(self.start.as_ptr(), self.blocks) }
        }

        pub(super) fn blocks_mut(&mut self) -> &mut [Block] {
            // SAFETY: as in `blocks`, and `&mut self` makes the borrow exclusive.
            unsafe { core::slice::from_raw_parts_mut(self.start.as_ptr(), self.blocks) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: exactly the mapping that `new` kept; no borrow of it outlives `self`.
            if unsafe { libc::munmap(self.start.as_ptr().cast(), self.bytes) } != 0 {
                log::debug!("Argon2 memory not unmapped");
            }
        }
    }
}
