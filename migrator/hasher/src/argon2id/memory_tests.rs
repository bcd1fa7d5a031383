//! The memory on huge pages gives the argon2 crate's bytes and is wiped like any other; the
//! wipe zeroes exactly the blocks it is given, also when a hash unwinds.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::tests::{on, oracle, ours};
use super::*;

fn inputs<'a>(password: &'a [u8], salt: &'a [u8]) -> Inputs<'a> {
    Inputs {
        password,
        salt,
        secret: &[],
        associated_data: &[],
    }
}

/// A block whose words are all `word`.
fn filled(word: u64) -> Block {
    Block([word; crate::compress::BLOCK_WORDS])
}

#[test]
fn huge_page_memory_gives_the_argon2_crates_bytes_and_is_wiped() {
    // Two whole huge pages and a tail on small pages; 8 MiB in 4 lanes; exactly 2 MiB.
    for (memory_kib, iterations, lanes) in [(4096 + 37, 2, 1), (8192, 1, 4), (2048, 3, 2)] {
        let costs = Costs {
            memory_kib,
            iterations,
            lanes,
        };
        let inputs = inputs(b"huge pages", b"saltsaltsalt");
        let expected = oracle(costs, &inputs, 32);
        for kernel in Kernel::supported() {
            for huge_pages in [true, false, true] {
                let options = Options {
                    huge_pages,
                    ..on(lanes as usize, true)
                };
                let got = ours(kernel, costs, &inputs, 32, options);
                assert!(
                    got == expected,
                    "{kernel}, {costs:?}, huge pages {huge_pages}: differs from the argon2 crate"
                );
                let (blocks, zero) = reused_memory();
                assert!(blocks >= Geometry::of(costs).blocks);
                assert!(
                    zero,
                    "{kernel}, {costs:?}, huge pages {huge_pages}: not wiped"
                );
                MEMORY.with(|memory| assert_eq!(memory.borrow().huge_pages(), huge_pages));
            }
        }
    }
}

/// On Linux the reused memory of a hash of 2 MiB or more starts on a 2 MiB boundary and its
/// mapping carries the kernel's `hg` flag (`MADV_HUGEPAGE` taken). Whether the kernel then
/// backs it with huge pages (`AnonHugePages`) depends on its settings and on free memory:
/// printed here, and measured by `bench-summary wipe`.
#[cfg(target_os = "linux")]
#[test]
fn the_reused_memory_is_aligned_and_advised_for_huge_pages() {
    let costs = Costs {
        memory_kib: 4096 + 37,
        iterations: 1,
        lanes: 1,
    };
    ours(
        Kernel::detected(),
        costs,
        &inputs(b"pw", b"saltsalt"),
        32,
        on(1, true),
    );
    let address = MEMORY.with(|memory| memory.borrow().blocks().as_ptr() as usize);
    assert_eq!(address % (2 << 20), 0, "{address:#x} is not 2 MiB-aligned");
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    // A header line ("start-end perms ...") opens each mapping; its fields follow.
    let header = |line: &str| {
        let (start, end) = line.split_whitespace().next()?.split_once('-')?;
        Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
    };
    let lines: Vec<&str> = smaps
        .lines()
        .skip_while(|line| header(line).is_none_or(|range| !range.contains(&address)))
        .enumerate()
        .take_while(|(i, line)| *i == 0 || header(line).is_none())
        .map(|(_, line)| line)
        .collect();
    assert!(
        !lines.is_empty(),
        "no mapping of {address:#x} in /proc/self/smaps"
    );
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {lines:#?}"))
            .trim()
            .to_owned()
    };
    let flags = field("VmFlags:");
    assert!(
        flags.split_whitespace().any(|flag| flag == "hg"),
        "not advised for huge pages: {flags}"
    );
    eprintln!(
        "the reused memory's mapping: {}, AnonHugePages {}",
        lines[0],
        field("AnonHugePages:")
    );
}

#[test]
fn the_wipe_zeroes_exactly_the_blocks_it_is_given() {
    for (blocks, huge_pages) in [(3, false), (4096 + 37, true), (4096 + 37, false)] {
        let mut memory = Memory::new(blocks, huge_pages);
        assert_eq!(memory.blocks().len(), blocks);
        assert!(memory.blocks().iter().all(|block| *block == Block::ZERO));
        memory.blocks_mut().fill(filled(0x5a5a_5a5a_5a5a_5a5a));
        wipe(&mut memory.blocks_mut()[1..blocks - 1]);
        let all = memory.blocks();
        assert!(all[0] == filled(0x5a5a_5a5a_5a5a_5a5a) && all[blocks - 1] == all[0]);
        assert!(all[1..blocks - 1].iter().all(|block| *block == Block::ZERO));
    }
}

#[test]
fn a_hash_that_unwinds_leaves_its_memory_zero() {
    let mut memory = vec![filled(u64::MAX); 64];
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _guard = Wipe {
            memory: &mut memory,
            armed: true,
        };
        panic!("a kernel failed");
    }));
    assert!(unwound.is_err());
    assert!(memory.iter().all(|block| *block == Block::ZERO));
}
