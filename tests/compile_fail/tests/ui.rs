//! Compile-fail tests of `#[migration]` and `#[migrator::test]`: each
//! misuse is an error with a span on the user's code. What must compile is
//! `migrator/tests/macro_options.rs`, an ordinary test.
//! Compiler messages change between channels, so they run on stable only.
//! `TRYBUILD=overwrite cargo test -p migrator-compile-fail-tests --test ui` regenerates the `.stderr` files.
//!
//! One `TestCases` (one trybuild project, checked with `cargo check`): trybuild checks this
//! package's dependencies again under its own flags, in its own target directory: `migrator`
//! without its optional features (no CLI, hasher or thread pool to check again), since what
//! the attributes expand to needs none of them. Why a package of their own: its Cargo.toml.

#[rustversion::stable]
#[test]
fn ui() {
    // trybuild runs `cargo check` twice: once for the dependencies, then for the test cases
    // with one more flag (`--diagnostic-width=140`). Rustflags are part of every unit's
    // fingerprint, so the second run checks every dependency again (Diesel, SQLite's C, ...).
    // `CARGO_ENCODED_RUSTFLAGS`, which trybuild leaves as it is, outranks the flags trybuild
    // sets in cargo's configuration: both runs get this version's flags, the last one
    // included, and check the dependencies once (half the CPU of this test). The flags are
    // trybuild 1.0.122's (`src/rustflags.rs`), hence the exact version in Cargo.toml.
    std::env::set_var(
        "CARGO_ENCODED_RUSTFLAGS",
        [
            "--cfg",
            "trybuild",
            "--verbose",
            "-A",
            "dead_code",
            "--diagnostic-width=140",
        ]
        .join("\x1f"),
    );
    // trybuild's project has no profile of its own: its dependencies would build with full
    // debug info, which only the proc macros and build scripts it compiles (syn, Diesel's and
    // serde's derives, SQLite's C) would carry, and nothing reads. Without it this test takes
    // about a fifth less CPU; the diagnostics it compares are the same.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    // trybuild only checks (`cargo check`: nothing is linked), so SQLite's C source, which
    // the `bundled` feature compiles in libsqlite3-sys's build script, is compiled for
    // nothing. Told to use the system's library (pkg-config, else a bare `-l sqlite3` that
    // no check links), the build script compiles nothing and gives the same Rust bindings
    // (the bundled version's, with the `bundled` feature on).
    std::env::set_var("LIBSQLITE3_SYS_USE_PKG_CONFIG", "1");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // `#[migrator::test]`'s misuse (its option values and signatures). Errors inside the
    // generated `#[test]` functions (a missing fixture file, a `setup` that is not a `fn()`) do
    // not show in a non-test build, so trybuild cannot see them: rustc reports them on the
    // user's code.
    t.compile_fail("tests/ui-test/*.rs");
}
