//! Parsing of `#[migration("001_name", transaction = false, crate = path)]`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

/// The attribute's arguments, validated.
pub(crate) struct Args {
    pub id: LitStr,
    pub transaction: bool,
    pub krate: Path,
}

struct Raw(Punctuated<Meta, Token![,]>, Option<LitStr>);

impl Parse for Raw {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let id = if input.peek(LitStr) {
            let id: LitStr = input.parse()?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            Some(id)
        } else {
            None
        };
        if id.is_some() && input.peek(LitStr) {
            let extra: LitStr = input.parse()?;
            return Err(syn::Error::new(
                extra.span(),
                "a migration has exactly one ID; options follow it as `transaction = false` \
                 or `crate = path`",
            ));
        }
        let rest = Punctuated::parse_terminated(input)?;
        Ok(Raw(rest, id))
    }
}

const ID_RULE: &str = "a migration ID is three or more digits, an underscore, then lowercase \
                       letters, digits and underscores, e.g. \"001_create_users\"";

/// Whether `id` matches `^[0-9]{3,}_[a-z0-9_]+$`.
fn valid_id(id: &str) -> bool {
    let digits = id.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &id.as_bytes()[digits..];
    digits >= 3
        && rest.len() >= 2
        && rest[0] == b'_'
        && rest[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

impl Args {
    /// Parses the attribute; every problem found is reported, not just the first.
    pub(crate) fn parse(attr: proc_macro2::TokenStream) -> syn::Result<Args> {
        let Raw(metas, id) = syn::parse2::<Raw>(attr)?;
        let mut errors: Vec<syn::Error> = Vec::new();
        let mut transaction = None;
        let mut krate = None;
        for meta in metas {
            let Meta::NameValue(nv) = &meta else {
                errors.push(syn::Error::new_spanned(
                    &meta,
                    "expected `transaction = false` or `crate = path`",
                ));
                continue;
            };
            if nv.path.is_ident("transaction") {
                match &nv.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) if transaction.is_none() => transaction = Some(b.value),
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(_), ..
                    }) => errors.push(syn::Error::new_spanned(
                        &nv.path,
                        "`transaction` is given more than once",
                    )),
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "`transaction` takes `true` or `false`",
                    )),
                }
            } else if nv.path.is_ident("crate") {
                let path = match &nv.value {
                    Expr::Path(p) => Some(p.path.clone()),
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => s.parse::<Path>().ok(),
                    _ => None,
                };
                match path {
                    Some(p) if krate.is_none() => krate = Some(p),
                    Some(_) => errors.push(syn::Error::new_spanned(
                        &nv.path,
                        "`crate` is given more than once",
                    )),
                    None => errors.push(syn::Error::new_spanned(
                        &nv.value,
                        "`crate` takes a path, e.g. `crate = ::my_app::migrator`",
                    )),
                }
            } else {
                errors.push(syn::Error::new_spanned(
                    &nv.path,
                    "unknown argument: expected `transaction` or `crate`",
                ));
            }
        }
        let id = match id {
            Some(id) if valid_id(&id.value()) => Some(id),
            Some(id) => {
                errors.push(syn::Error::new(
                    id.span(),
                    format!("invalid migration ID {:?}: {ID_RULE}", id.value()),
                ));
                None
            }
            None => {
                errors.push(syn::Error::new(
                    Span::call_site(),
                    format!("expected a migration ID as the first argument: {ID_RULE}"),
                ));
                None
            }
        };
        let mut errors = errors.into_iter();
        match (errors.next(), id) {
            (Some(mut first), _) => {
                errors.for_each(|e| first.combine(e));
                Err(first)
            }
            (None, Some(id)) => Ok(Args {
                id,
                transaction: transaction.unwrap_or(true),
                krate: krate.unwrap_or_else(|| syn::parse_quote!(::migrator)),
            }),
            // An absent or invalid ID always records an error above.
            (None, None) => Err(syn::Error::new(Span::call_site(), ID_RULE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn id_shape() {
        for ok in ["001_a", "001_create_users", "1234_x9_", "000_0", "001__"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in [
            "01_a", "001", "001_", "001-a", "001_A", "a001_x", "001_é", "001 _a", "",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
