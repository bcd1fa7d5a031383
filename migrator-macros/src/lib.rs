//! The `#[migration("NNN_name")]` and `#[migrator::test]` attributes of [`migrator`](https://docs.rs/migrator).
//!
//! This crate is an implementation detail: depend on `migrator` and use `migrator::migration`,
//! which re-exports the attribute together with its documentation.

use proc_macro::TokenStream;

mod args;
mod checksum;
mod expand;
mod test_args;
mod test_expand;

/// Registers a function as a code migration. Documented in `migrator`, which re-exports it.
#[proc_macro_attribute]
pub fn migration(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::migration(attr.into(), item.into()).into()
}

/// A test on a fresh, migrated database. Documented in `migrator` (feature `testing`), which
/// re-exports it.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    test_expand::test(attr.into(), item.into()).into()
}
