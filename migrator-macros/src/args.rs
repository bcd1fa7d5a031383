//! Parsing of `#[migration("001_name", transaction = false, statement_timeout = "10m",
//! lock_timeout = "30s", crate = path)]`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

/// The attribute's arguments, validated.
pub(crate) struct Args {
    pub id: LitStr,
    pub transaction: bool,
    /// `statement_timeout`, in milliseconds (0: not given).
    pub statement_timeout_ms: u64,
    /// `lock_timeout`, in milliseconds (0: not given).
    pub lock_timeout_ms: u64,
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
                "a migration has exactly one ID; options follow it as `transaction = false`, \
                 `statement_timeout = \"10m\"` or `crate = path`",
            ));
        }
        let rest = Punctuated::parse_terminated(input)?;
        Ok(Raw(rest, id))
    }
}

pub(crate) const ID_RULE: &str =
    "a migration ID is three or more digits, an underscore, then lowercase \
                       letters, digits and underscores, e.g. \"001_create_users\"";

const DURATION_RULE: &str = "`statement_timeout` takes a duration greater than zero: a whole \
                             number and a unit, ms, s, m or h, e.g. \"500ms\", \"30s\", \"10m\", \"1h\"";

const LOCK_DURATION_RULE: &str = "`lock_timeout` takes a duration greater than zero: a whole \
                                  number and a unit, ms, s, m or h, e.g. \"500ms\", \"30s\"";

/// `500ms`, `30s`, `10m`, `1h` in milliseconds; `None` for anything else, zero, or overflow.
fn parse_duration_ms(value: &str) -> Option<u64> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    let ms = number.parse::<u64>().ok()?.checked_mul(per_unit)?;
    // PostgreSQL takes a statement_timeout up to i32::MAX milliseconds.
    (ms > 0 && ms <= i32::MAX as u64).then_some(ms)
}

/// Parses `name = "10m"` into `slot` (milliseconds): an error if the value is not a duration
/// (`rule` says what is) or the argument is given twice.
fn duration_arg(
    nv: &syn::MetaNameValue,
    name: &str,
    rule: &str,
    slot: &mut Option<u64>,
) -> syn::Result<()> {
    let parsed = match &nv.value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_duration_ms(&s.value()),
        _ => None,
    };
    match parsed {
        Some(ms) if slot.is_none() => {
            *slot = Some(ms);
            Ok(())
        }
        Some(_) => Err(syn::Error::new_spanned(
            &nv.path,
            format!("`{name}` is given more than once"),
        )),
        None => Err(syn::Error::new_spanned(&nv.value, rule)),
    }
}

/// Whether `id` matches `^[0-9]{3,}_[a-z0-9_]+$`.
pub(crate) fn valid_id(id: &str) -> bool {
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
        let mut statement_timeout = None;
        let mut lock_timeout = None;
        for meta in metas {
            let Meta::NameValue(nv) = &meta else {
                errors.push(syn::Error::new_spanned(
                    &meta,
                    "expected `transaction = false`, `statement_timeout = \"10m\"` or \
                     `crate = path`",
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
            } else if nv.path.is_ident("statement_timeout") {
                duration_arg(
                    nv,
                    "statement_timeout",
                    DURATION_RULE,
                    &mut statement_timeout,
                )
                .unwrap_or_else(|e| errors.push(e));
            } else if nv.path.is_ident("lock_timeout") {
                duration_arg(nv, "lock_timeout", LOCK_DURATION_RULE, &mut lock_timeout)
                    .unwrap_or_else(|e| errors.push(e));
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
                    "unknown argument: expected `transaction`, `statement_timeout`, \
                     `lock_timeout` or `crate`",
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
                statement_timeout_ms: statement_timeout.unwrap_or(0),
                lock_timeout_ms: lock_timeout.unwrap_or(0),
                krate: krate.unwrap_or_else(|| syn::parse_quote!(::migrator)),
            }),
            // An absent or invalid ID always records an error above.
            (None, None) => Err(syn::Error::new(Span::call_site(), ID_RULE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration_ms, valid_id};

    #[test]
    fn durations() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("596h", 2_145_600_000),
        ] {
            assert_eq!(parse_duration_ms(text), Some(ms), "{text}");
        }
        for bad in [
            "", "10", "0s", "s", "1.5s", "-1s", "10 m", "10M", "1d", "10min", "597h", " 1s",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

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
