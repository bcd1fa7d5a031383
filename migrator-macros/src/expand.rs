//! The expansion: the user's function, unchanged, plus its registration.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::{FnArg, Item, ItemFn};

use crate::args::Args;
use crate::checksum;

/// Expands `#[migration(attr)] item`. On error the item is still emitted, followed by the
/// errors, so that the rest of the crate (and rust-analyzer) keeps working.
pub(crate) fn migration(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = Args::parse(attr);
    let function = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => check_function(&function).map(|()| function),
        Ok(other) => Err(syn::Error::new_spanned(
            item_head(&other),
            "#[migration] applies to a function `fn name(ctx: &mut Context<'_>) -> Result<()>`",
        )),
        // Not an item at all (e.g. a method with `self`, which parses only in an impl):
        // let rustc report the syntax, and say what we expect.
        Err(e) => Err(e),
    };
    match (args, function) {
        (Ok(args), Ok(function)) => register(&args, &function),
        (args, function) => {
            let mut errors: Option<syn::Error> = None;
            for e in [args.err(), function.err()].into_iter().flatten() {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
            let errors = errors.map(|e| e.to_compile_error());
            quote! { #item #errors }
        }
    }
}

/// The tokens to point at for a non-function item: its first tokens, not its whole body.
fn item_head(item: &Item) -> TokenStream {
    let mut head = TokenStream::new();
    for (i, token) in item.to_token_stream().into_iter().enumerate() {
        if i >= 3 {
            break;
        }
        head.extend([token]);
    }
    head
}

fn check_function(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(t) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            t,
            "a migration cannot be `async`: it runs on a blocking database connection; \
             remove `async` (use `ctx.pool()` for parallel work)",
        ));
    }
    if let Some(t) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            t,
            "a migration cannot be a `const fn`",
        ));
    }
    if let Some(t) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(t, "a migration cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a migration cannot have an `extern` ABI",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a migration cannot be generic: it is registered as one concrete function",
        ));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        errors.push(syn::Error::new_spanned(
            receiver,
            "a migration cannot be a method: use a free function \
             `fn name(ctx: &mut Context<'_>) -> Result<()>`",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "a migration cannot be variadic"));
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

fn register(args: &Args, function: &ItemFn) -> TokenStream {
    let Args {
        id,
        transaction,
        statement_timeout_ms,
        lock_timeout_ms,
        krate,
    } = args;
    let ident = &function.sig.ident;
    let tokens = function.to_token_stream();
    let checksum = checksum::checksum(&tokens);
    let legacy_checksum = checksum::legacy_checksum_v1(&tokens);
    // rustc checks the signature by coercing the function to the registered pointer type; the
    // span makes its "mismatched types" error point at the user's function name.
    let typecheck = quote_spanned! {ident.span()=>
        const __MIGRATOR_FN: #krate::__private::MigrationFn = #ident;
    };
    quote! {
        #function

        const _: () = {
            #typecheck
            #krate::__private::inventory::submit! {
                #krate::__private::Migration::__new(
                    #id,
                    __MIGRATOR_FN,
                    #transaction,
                    #checksum,
                    #legacy_checksum,
                    ::core::file!(),
                    ::core::line!(),
                    ::core::module_path!(),
                )
                .__with_statement_timeout_ms(#statement_timeout_ms)
                .__with_lock_timeout_ms(#lock_timeout_ms)
            }
        };
    }
}
