//! Parsing of `#[migrator::test(postgres, sqlite, migrations = "up_to = 003_x",
//! fixtures("users.sql"), backfills = "inline", sql_migrations = PATH, setup = PATH,
//! crate = path)]`.

use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

use crate::args::{valid_id, ID_RULE};

/// Which migrations the test's database has.
pub(crate) enum Migrations {
    All,
    None,
    UpTo(LitStr),
}

/// The attribute's arguments, validated.
pub(crate) struct TestArgs {
    /// The backends, in the order given (PostgreSQL alone when none is).
    pub backends: Vec<(String, proc_macro2::Span)>,
    pub migrations: Migrations,
    pub fixtures: Vec<LitStr>,
    /// `auto`, `inline` or `background`.
    pub backfills: Option<String>,
    pub sql_migrations: Option<Path>,
    /// A `fn()` called before the database is made.
    pub setup: Option<Path>,
    pub krate: Path,
}

const OPTIONS: &str = "expected `postgres`, `sqlite`, `migrations = \"all\" | \"none\" | \
                       \"up_to = ID\"`, `fixtures(\"file.sql\", ...)`, `backfills = \"inline\" | \
                       \"background\" | \"auto\"`, `sql_migrations = PATH`, `setup = PATH` or `crate = path`";

fn string(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        _ => None,
    }
}

impl TestArgs {
    /// Parses the attribute; every problem found is reported, not just the first.
    pub(crate) fn parse(attr: proc_macro2::TokenStream) -> syn::Result<TestArgs> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut args = TestArgs {
            backends: Vec::new(),
            migrations: Migrations::All,
            fixtures: Vec::new(),
            backfills: None,
            sql_migrations: None,
            setup: None,
            krate: syn::parse_quote!(::migrator),
        };
        let mut seen: Vec<String> = Vec::new();
        for meta in metas {
            let name = meta
                .path()
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            if seen.contains(&name) {
                errors.push(syn::Error::new_spanned(
                    meta.path(),
                    format!("`{name}` is given more than once"),
                ));
                continue;
            }
            seen.push(name.clone());
            match (&meta, name.as_str()) {
                (Meta::Path(path), "postgres" | "sqlite") => args
                    .backends
                    .push((name.clone(), syn::spanned::Spanned::span(path))),
                (Meta::NameValue(nv), "migrations") => match string(&nv.value) {
                    Some(s) => match parse_migrations(s) {
                        Ok(m) => args.migrations = m,
                        Err(e) => errors.push(e),
                    },
                    None => errors.push(syn::Error::new_spanned(
                        &nv.value,
                        "`migrations` takes \"all\", \"none\" or \"up_to = ID\"",
                    )),
                },
                (Meta::NameValue(nv), "backfills") => match string(&nv.value) {
                    Some(s) if matches!(s.value().as_str(), "inline" | "background" | "auto") => {
                        args.backfills = Some(s.value())
                    }
                    _ => errors.push(syn::Error::new_spanned(
                        &nv.value,
                        "`backfills` takes \"inline\" (finish every backfill before the test), \
                         \"background\" (only schedule them) or \"auto\" (the default policy)",
                    )),
                },
                (Meta::NameValue(nv), "sql_migrations") => {
                    let path = match &nv.value {
                        Expr::Path(p) => Some(p.path.clone()),
                        other => string(other).and_then(|s| s.parse::<Path>().ok()),
                    };
                    match path {
                        Some(p) => args.sql_migrations = Some(p),
                        None => errors.push(syn::Error::new_spanned(
                            &nv.value,
                            "`sql_migrations` takes the path of a constant made by \
                             `diesel_migrations::embed_migrations!`, e.g. \
                             `sql_migrations = crate::MIGRATIONS`",
                        )),
                    }
                }
                (Meta::NameValue(nv), "setup") => {
                    let path = match &nv.value {
                        Expr::Path(p) => Some(p.path.clone()),
                        other => string(other).and_then(|s| s.parse::<Path>().ok()),
                    };
                    match path {
                        Some(p) => args.setup = Some(p),
                        None => errors.push(syn::Error::new_spanned(
                            &nv.value,
                            "`setup` takes the path of a `fn()` run before the test's database \
                             is made, e.g. `setup = cheap_hashing`",
                        )),
                    }
                }
                (Meta::NameValue(nv), "crate") => {
                    let path = match &nv.value {
                        Expr::Path(p) => Some(p.path.clone()),
                        other => string(other).and_then(|s| s.parse::<Path>().ok()),
                    };
                    match path {
                        Some(p) => args.krate = p,
                        None => errors.push(syn::Error::new_spanned(
                            &nv.value,
                            "`crate` takes a path, e.g. `crate = ::my_app::migrator`",
                        )),
                    }
                }
                (Meta::List(list), "fixtures") => {
                    match list.parse_args_with(Punctuated::<LitStr, Token![,]>::parse_terminated) {
                        Ok(files) if !files.is_empty() => args.fixtures.extend(files),
                        Ok(_) => errors.push(syn::Error::new_spanned(
                            list,
                            "`fixtures` lists one or more SQL files, relative to the crate's \
                             directory: `fixtures(\"tests/fixtures/users.sql\")`",
                        )),
                        Err(e) => errors.push(syn::Error::new(
                            e.span(),
                            "`fixtures` lists SQL files as strings: \
                             `fixtures(\"tests/fixtures/users.sql\", \"more.sql\")`",
                        )),
                    }
                }
                _ => errors.push(syn::Error::new_spanned(
                    &meta,
                    format!("unknown or malformed argument: {OPTIONS}"),
                )),
            }
        }
        if args.backends.is_empty() {
            args.backends
                .push(("postgres".into(), proc_macro2::Span::call_site()));
        }
        let mut errors = errors.into_iter();
        match errors.next() {
            None => Ok(args),
            Some(mut first) => {
                errors.for_each(|e| first.combine(e));
                Err(first)
            }
        }
    }
}

fn parse_migrations(s: &LitStr) -> syn::Result<Migrations> {
    let value = s.value();
    let value = value.trim();
    match value {
        "all" => Ok(Migrations::All),
        "none" => Ok(Migrations::None),
        _ => {
            let id = value
                .strip_prefix("up_to")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim);
            match id {
                Some(id) if valid_id(id) => Ok(Migrations::UpTo(LitStr::new(id, s.span()))),
                Some(id) => Err(syn::Error::new_spanned(
                    s,
                    format!("invalid migration ID {id:?} in `up_to`: {ID_RULE}"),
                )),
                None => Err(syn::Error::new_spanned(
                    s,
                    "`migrations` takes \"all\" (the default), \"none\" or \"up_to = ID\", e.g. \
                     \"up_to = 003_add_index\"",
                )),
            }
        }
    }
}
