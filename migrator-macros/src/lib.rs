//! The `#[migration("NNN_name")]` attribute of [`migrator`](https://docs.rs/migrator).
//!
//! This crate is an implementation detail: depend on `migrator` and use `migrator::migration`,
//! which re-exports the attribute together with its documentation.

use proc_macro::TokenStream;

mod args;
mod checksum;
mod expand;

/// Registers a function as a code migration. Documented in `migrator`, which re-exports it.
#[proc_macro_attribute]
pub fn migration(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::migration(attr.into(), item.into()).into()
}
