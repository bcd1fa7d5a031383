//! Compile-fail tests of `#[migration]`: each misuse is an error with a span on the user's code.
//! Compiler messages change between channels, so they run on stable only.
//! `TRYBUILD=overwrite cargo test -p migrator --test ui` regenerates the `.stderr` files.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
