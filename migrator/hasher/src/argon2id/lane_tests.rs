//! Lanes in parallel give the argon2 crate's bytes for `p = 2..8` on every number of threads,
//! alone and with many hashes at once; the memory (reused or fresh) is zero after each hash.

use super::tests::{on, oracle, ours, Rng};
use super::*;

fn inputs<'a>(password: &'a [u8], salt: &'a [u8]) -> Inputs<'a> {
    Inputs {
        password,
        salt,
        secret: &[],
        associated_data: &[],
    }
}

#[test]
fn two_to_eight_lanes_on_every_number_of_threads_match_the_argon2_crate() {
    let mut rng = Rng(0x1a9e_5000);
    for lanes in 2..=8u32 {
        // A lane of 8 blocks (the least), an odd size, and 2 MiB.
        for memory_kib in [8 * lanes, 8 * lanes * 13 + 4 * lanes + 3, 2048] {
            let costs = Costs {
                memory_kib,
                iterations: rng.range(1, 3) as u32,
                lanes,
            };
            let (password, salt) = (rng.bytes(0, 40), rng.bytes(8, 24));
            let inputs = inputs(&password, &salt);
            let expected = oracle(costs, &inputs, 32);
            for kernel in Kernel::supported() {
                for threads in 1..=lanes as usize {
                    let reuse = threads % 2 == 0;
                    let got = ours(kernel, costs, &inputs, 32, on(threads, reuse));
                    assert!(
                        got == expected,
                        "{kernel}, {costs:?} on {threads} threads (reuse {reuse})"
                    );
                }
            }
        }
    }
}

#[test]
fn many_hashes_at_once_share_the_cores_and_give_the_same_bytes() {
    let costs = Costs {
        memory_kib: 1024,
        iterations: 2,
        lanes: 4,
    };
    std::thread::scope(|scope| {
        for t in 0..6u8 {
            scope.spawn(move || {
                for i in 0..8u8 {
                    let password = [t, i, 7];
                    let inputs = inputs(&password, b"eight bytes!");
                    let got = ours(Kernel::detected(), costs, &inputs, 32, Options::default());
                    assert!(got == oracle(costs, &inputs, 32), "thread {t}, hash {i}");
                }
            });
        }
    });
    // From a rayon worker, the lanes stay on the caller's thread; the bytes are the same.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let inputs = inputs(b"pw", b"saltsalt");
        let got = ours(Kernel::detected(), costs, &inputs, 32, Options::default());
        assert!(got == oracle(costs, &inputs, 32));
    });
}

#[test]
fn the_reused_memory_is_zero_after_every_hash() {
    for (lanes, threads) in [(1, 1), (4, 1), (4, 2), (4, 4), (3, 2)] {
        let costs = Costs {
            memory_kib: 512,
            iterations: 2,
            lanes,
        };
        for kernel in Kernel::supported() {
            let mut options = on(threads, true);
            let got = ours(kernel, costs, &inputs(b"pw", b"saltsalt"), 32, options);
            assert!(got == oracle(costs, &inputs(b"pw", b"saltsalt"), 32));
            let (blocks, zero) = reused_memory();
            assert!(blocks >= 512, "{blocks} blocks");
            assert!(
                zero,
                "{kernel}, p={lanes} on {threads} threads: memory left behind"
            );
            // The control: without the wipe, the same accessor sees the hash's blocks.
            options.wipe = false;
            ours(kernel, costs, &inputs(b"pw", b"saltsalt"), 32, options);
            assert!(!reused_memory().1, "the accessor sees the memory");
            ours(
                kernel,
                costs,
                &inputs(b"pw", b"saltsalt"),
                32,
                on(threads, true),
            );
            assert!(reused_memory().1);
        }
    }
}

#[test]
fn a_fresh_allocation_is_zero_before_it_is_freed() {
    for (lanes, threads) in [(1, 1), (4, 2), (8, 8)] {
        let costs = Costs {
            memory_kib: 64 * lanes,
            iterations: 1,
            lanes,
        };
        let geometry = Geometry::of(costs);
        let crew = Crew::hire(geometry.lanes, LaneThreads::Exactly(threads));
        let fill = Kernel::detected().fill_block().unwrap();
        let mut memory = vec![Block::ZERO; geometry.blocks];
        let mut out = [0u8; 32];
        let inputs = inputs(b"pw", b"saltsalt");
        hash_into(
            fill,
            costs,
            &geometry,
            &inputs,
            &mut out,
            &mut memory,
            &crew,
            true,
        )
        .unwrap();
        assert_eq!(out[..], oracle(costs, &inputs, 32)[..]);
        assert!(
            memory.iter().all(|block| *block == Block::ZERO),
            "p={lanes}"
        );
    }
}
