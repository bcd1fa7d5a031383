//! Compile-fail tests of `#[migration]` and `#[migrator::test]`: each
//! misuse is an error with a span on the user's code. What must compile is
//! `migrator/tests/macro_options.rs`, an ordinary test.
//! Compiler messages change between channels, so they run on stable only.
//! `TRYBUILD=overwrite cargo test -p migrator-macros --test ui` regenerates the `.stderr` files.
//!
//! One `TestCases` (one trybuild project, checked with `cargo check`): trybuild checks this
//! crate's dependencies again under its own flags, in its own target directory. They live here,
//! in migrator-macros, rather than in migrator, so that this copy is `migrator` without its
//! optional features (no CLI, hasher or thread pool to check again): what the attributes
//! expand to needs none of them.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // `#[migrator::test]`'s misuse (its option values and signatures). Errors inside the
    // generated `#[test]` functions (a missing fixture file, a `setup` that is not a `fn()`) do
    // not show in a non-test build, so trybuild cannot see them: rustc reports them on the
    // user's code.
    t.compile_fail("tests/ui-test/*.rs");
}
