//! The compile-fail tests of migrator's attributes live in `tests/ui.rs` (`cargo test -p
//! migrator-compile-fail-tests --test ui`); this library is empty.
