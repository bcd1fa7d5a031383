//! The expansion of `#[migrator::test]`: one `#[test]` per backend, each holding the user's
//! function and calling it with a fresh database.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Type};

use crate::test_args::{Migrations, TestArgs};

const SIGNATURE: &str = "a #[migrator::test] function takes `Database`, and optionally one of \
                         `&mut PooledConnection` (or `PooledConnection`, `&mut AnyConnection`) and \
                         `&mut Context<'_>`";

/// How one parameter of the test function is supplied.
enum Param {
    Database,
    DatabaseRef,
    Pooled,
    PooledMut,
    AnyConnectionMut,
    Context,
}

/// Expands `#[migrator::test(attr)] item`. On error the function is still emitted (so the rest
/// of the crate keeps compiling), followed by the errors.
pub(crate) fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = TestArgs::parse(attr);
    let function = syn::parse2::<ItemFn>(item.clone()).and_then(|f| {
        let params = check(&f)?;
        Ok((f, params))
    });
    match (args, function) {
        (Ok(args), Ok((function, params))) => expand(&args, &function, &params),
        (args, function) => {
            let mut errors: Option<syn::Error> = None;
            for e in [args.err(), function.err()].into_iter().flatten() {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
            let errors = errors.map(|e| e.to_compile_error());
            quote! { #[allow(dead_code)] #item #errors }
        }
    }
}

/// The last path segment's name of `ty`, if it is a plain path.
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Group(g) => type_name(&g.elem),
        Type::Paren(p) => type_name(&p.elem),
        _ => None,
    }
}

fn classify(ty: &Type) -> Option<Param> {
    match ty {
        Type::Reference(r) => {
            let name = type_name(&r.elem)?;
            match (r.mutability.is_some(), name.as_str()) {
                (false, "Database") => Some(Param::DatabaseRef),
                (true, "PooledConnection") => Some(Param::PooledMut),
                (true, "AnyConnection") => Some(Param::AnyConnectionMut),
                (true, "Context") => Some(Param::Context),
                _ => None,
            }
        }
        _ => match type_name(ty)?.as_str() {
            "Database" => Some(Param::Database),
            "PooledConnection" => Some(Param::Pooled),
            _ => None,
        },
    }
}

fn check(function: &ItemFn) -> syn::Result<Vec<Param>> {
    let sig = &function.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(t) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            t,
            "a #[migrator::test] cannot be `async`: the database is blocking (Diesel); remove \
             `async`",
        ));
    }
    if let Some(t) = &sig.constness {
        errors.push(syn::Error::new_spanned(t, "a test cannot be a `const fn`"));
    }
    if let Some(t) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(t, "a test cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a test cannot be generic",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "a test cannot be variadic"));
    }
    for attr in &function.attrs {
        if attr.path().is_ident("test") {
            errors.push(syn::Error::new_spanned(
                attr,
                "remove `#[test]`: #[migrator::test] adds it (once per backend)",
            ));
        }
    }
    let mut params = Vec::new();
    let mut contexts = 0;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "a test cannot be a method: use a free function",
            )),
            FnArg::Typed(t) => match classify(&t.ty) {
                Some(Param::Context) if contexts > 0 => errors.push(syn::Error::new_spanned(
                    &t.ty,
                    "a test takes at most one `&mut Context<'_>`",
                )),
                Some(param) => {
                    if matches!(param, Param::Context) {
                        contexts += 1;
                    }
                    params.push(param);
                }
                None => errors.push(syn::Error::new_spanned(&t.ty, SIGNATURE)),
            },
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(params),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

/// The statements that configure `__spec` (a `migrator::testing::Spec`).
fn spec(args: &TestArgs) -> TokenStream {
    let krate = &args.krate;
    let mut out = TokenStream::new();
    match &args.migrations {
        Migrations::All => {}
        Migrations::None => out.extend(quote! {
            __spec.migrations(#krate::testing::Migrations::None);
        }),
        Migrations::UpTo(id) => out.extend(quote! {
            __spec.migrations(#krate::testing::Migrations::UpTo(
                ::std::string::String::from(#id),
            ));
        }),
    }
    for file in &args.fixtures {
        // The file is read at compile time (a missing one is an error on its name here), and a
        // change to it rebuilds the test.
        let contents = if file.value().starts_with('/') {
            quote_spanned! {file.span()=> ::core::include_str!(#file) }
        } else {
            quote_spanned! {file.span()=>
                ::core::include_str!(::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #file))
            }
        };
        out.extend(quote! { __spec.fixture(#file, #contents); });
    }
    if let Some(mode) = &args.backfills {
        let variant = match mode.as_str() {
            "inline" => quote!(Inline),
            "background" => quote!(Background),
            _ => quote!(Auto),
        };
        out.extend(quote! { __spec.backfills(#krate::testing::Backfills::#variant); });
    }
    if let Some(path) = &args.setup {
        // Before the database is made (its template may depend on it): a type error points at
        // the path.
        let setup = quote_spanned! {path.span()=> let __setup: fn() = #path; __setup(); };
        out.extend(quote! {
            #setup
            __spec.label(::core::concat!("setup ", ::core::stringify!(#path)));
        });
    }
    if let Some(path) = &args.sql_migrations {
        let sql = quote_spanned! {path.span()=>
            const __MIGRATOR_SQL: &#krate::__private::EmbeddedMigrations = &#path;
        };
        out.extend(quote! {
            #sql
            __spec.sql_migrations(__MIGRATOR_SQL);
        });
    }
    out
}

/// The call of the user's function `ident` with its arguments taken from `__h`.
fn call(ident: &Ident, params: &[Param]) -> TokenStream {
    let args = params.iter().map(|p| match p {
        Param::Database => quote!(__h.database()),
        Param::DatabaseRef => quote!(&__h.database()),
        Param::Pooled => quote!(__h.connection()),
        Param::PooledMut => quote!(&mut __h.connection()),
        Param::AnyConnectionMut => quote!(&mut *__h.connection()),
        Param::Context => quote!(__ctx),
    });
    let call = quote!(#ident(#(#args),*));
    if params.iter().any(|p| matches!(p, Param::Context)) {
        quote!(__h.context(|__ctx| #call))
    } else {
        call
    }
}

fn expand(args: &TestArgs, function: &ItemFn, params: &[Param]) -> TokenStream {
    let krate = &args.krate;
    let ident = &function.sig.ident;
    let attrs = &function.attrs;
    let vis = &function.vis;
    // The user's function, unchanged but for its attributes (they go on the tests) and its
    // visibility (it is local to each test).
    let mut inner = function.clone();
    inner.attrs.clear();
    inner.vis = syn::Visibility::Inherited;
    let inner = inner.to_token_stream();
    let spec = spec(args);
    let call = call(ident, params);
    let test = |name: &Ident, backend: &str, span: Span| {
        let backend = Ident::new(
            if backend == "sqlite" {
                "Sqlite"
            } else {
                "Postgres"
            },
            span,
        );
        quote! {
            #[::core::prelude::v1::test]
            #(#attrs)*
            fn #name() {
                #inner
                let mut __spec = #krate::testing::Spec::new();
                #spec
                #krate::__private::run_test(
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                    &__spec,
                    #krate::connection::Backend::#backend,
                    |__h: &#krate::__private::Harness| #call,
                )
            }
        }
    };
    if let [(backend, span)] = args.backends.as_slice() {
        let test = test(ident, backend, *span);
        return quote! { #test };
    }
    let tests = args
        .backends
        .iter()
        .map(|(backend, span)| test(&format_ident!("{}", backend, span = *span), backend, *span));
    quote! {
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;
            #(#tests)*
        }
    }
}
