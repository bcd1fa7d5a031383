//! Compile-fail tests of `#[migration]` (and, with feature `testing`, `#[migrator::test]`): each
//! misuse is an error with a span on the user's code.
//! Compiler messages change between channels, so they run on stable only.
//! `TRYBUILD=overwrite cargo test -p migrator --test ui` regenerates the `.stderr` files.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}

/// `#[migrator::test]`'s misuse (its option values and signatures). Errors inside the generated
/// `#[test]` functions (a missing fixture file, a `setup` that is not a `fn()`) do not show in
/// a non-test build, so trybuild cannot see them: rustc reports them on the user's code.
#[cfg(feature = "testing")]
#[rustversion::stable]
#[test]
fn ui_test_attribute() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui-test/*.rs");
}
