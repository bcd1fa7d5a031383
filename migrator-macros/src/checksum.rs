//! The checksum of a migration function: a format we own, not the compiler's.
//!
//! The checksum is stored in `applied_migrations`, so its input must not depend on how a
//! compiler or `proc-macro2` happens to print tokens. It is computed over a **normal form**
//! defined here, version 2 (recorded values start with `v2:`):
//!
//! - the function's tokens, in order, with every doc comment removed (`///`, `//!`, `/** */`
//!   and their `#[doc = ...]`/`#![doc = ...]` attribute forms, at any depth): documentation is
//!   not code;
//! - each token written as one record, records separated by `\n`:
//!   - an identifier as `i ` and its text (raw identifiers keep their `r#`);
//!   - a punctuation character as `p ` and the character (spacing is not recorded: `x--y` and
//!     `x - -y` are the same program);
//!   - a literal as `l ` and its source text (`"a\n"` and `r"a"` differ: they are written
//!     differently, and the form records what was written, not what it means);
//!   - a delimited group as `(`, `[` or `{` on its own record, its contents, then the closing
//!     character; an invisible group (from a `macro_rules!` expansion) contributes its contents
//!     only;
//! - hashed with 64-bit FNV-1a and written as 16 lowercase hex digits after `v2:`.
//!
//! Whitespace, ordinary comments and doc comments therefore never change it; any change to an
//! identifier, literal, operator or bracket does. FNV-1a is enough here: the checksum detects
//! edits, it does not defend against an adversary.
//!
//! Version 1 (no prefix) hashed `TokenStream::to_string()`; the macro still emits it so that
//! the runtime accepts rows recorded by earlier versions (see `legacy_checksum_v1`).

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// The prefix of the current form's checksums.
pub(crate) const PREFIX: &str = "v2:";

/// The checksum of `tokens` in the current normal form: `v2:` and 16 hex digits.
pub(crate) fn checksum(tokens: &TokenStream) -> String {
    format!("{PREFIX}{}", fnv1a_hex(&normal_form(tokens)))
}

/// The checksum earlier versions recorded (form 1: the compiler's printing of the tokens).
pub(crate) fn legacy_checksum_v1(tokens: &TokenStream) -> String {
    fnv1a_hex(&tokens.to_string())
}

/// The normal form of `tokens` (see the module documentation).
pub(crate) fn normal_form(tokens: &TokenStream) -> String {
    let mut out = String::new();
    write_tokens(tokens.clone(), &mut out);
    out
}

fn write_tokens(tokens: TokenStream, out: &mut String) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        if let Some(len) = doc_attribute_len(&trees[i..]) {
            i += len;
            continue;
        }
        match &trees[i] {
            TokenTree::Ident(ident) => record(out, 'i', &ident.to_string()),
            TokenTree::Punct(punct) => record(out, 'p', &punct.as_char().to_string()),
            TokenTree::Literal(literal) => record(out, 'l', &literal.to_string()),
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                if !open.is_empty() {
                    out.push_str(open);
                    out.push('\n');
                }
                write_tokens(group.stream(), out);
                if !close.is_empty() {
                    out.push_str(close);
                    out.push('\n');
                }
            }
        }
        i += 1;
    }
}

fn record(out: &mut String, kind: char, text: &str) {
    out.push(kind);
    out.push(' ');
    out.push_str(text);
    out.push('\n');
}

/// If `trees` starts with a doc attribute (`# [doc ...]` or `# ! [doc ...]`), its length in
/// token trees.
fn doc_attribute_len(trees: &[TokenTree]) -> Option<usize> {
    let TokenTree::Punct(hash) = trees.first()? else {
        return None;
    };
    if hash.as_char() != '#' {
        return None;
    }
    let (bang, next) = match trees.get(1)? {
        TokenTree::Punct(p) if p.as_char() == '!' => (1, trees.get(2)?),
        other => (0, other),
    };
    let TokenTree::Group(group) = next else {
        return None;
    };
    if group.delimiter() != Delimiter::Bracket {
        return None;
    }
    match group.stream().into_iter().next() {
        Some(TokenTree::Ident(ident)) if ident == "doc" => Some(2 + bang),
        _ => None,
    }
}

/// 64-bit FNV-1a of `text`, as 16 lowercase hex digits.
pub(crate) fn fnv1a_hex(text: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::{checksum, fnv1a_hex, normal_form};
    use proc_macro2::TokenStream;

    fn tokens(source: &str) -> TokenStream {
        source.parse().unwrap()
    }

    #[test]
    fn known_vectors() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a_hex(""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex("a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex("foobar"), "85944171f73967e8");
    }

    /// The form is pinned: if this fails, the normal form changed, and every recorded checksum
    /// would drift. Change it only on purpose, with a new version prefix and acceptance of the
    /// old one.
    #[test]
    fn pinned_form_and_checksum() {
        let f = tokens(
            "/// Hashes them.\nfn hash(ctx: &mut Context<'_>) -> Result<()> {\n    \
             ctx.batch_execute(r\"UPDATE t SET a = 1\")?;\n    Ok(())\n}",
        );
        let expected_form = "i fn\ni hash\n(\ni ctx\np :\np &\ni mut\ni Context\np <\np '\n\
                             i _\np >\n)\np -\np >\ni Result\np <\n(\n)\np >\n{\ni ctx\np .\n\
                             i batch_execute\n(\nl r\"UPDATE t SET a = 1\"\n)\np ?\np ;\ni Ok\n\
                             (\n(\n)\n)\n}\n";
        assert_eq!(normal_form(&f), expected_form);
        assert_eq!(checksum(&f), "v2:c5f7439f51c3884d");
    }

    #[test]
    fn spacing_comments_and_docs_do_not_count() {
        let a = tokens("fn f ( ) -> u8 { x - - 1 }");
        let b = tokens(
            "/// Documented.\n#[doc = \"more\"]\nfn f() -> u8 {\n    //! inner doc\n    \
             // a comment\n    /* block */ x--1\n}",
        );
        assert_eq!(checksum(&a), checksum(&b));
    }

    #[test]
    fn code_counts() {
        let base = checksum(&tokens("#[allow(unused)] fn f() { g(1, \"a\") }"));
        for changed in [
            "#[allow(dead_code)] fn f() { g(1, \"a\") }",
            "#[allow(unused)] fn f() { g(2, \"a\") }",
            "#[allow(unused)] fn f() { g(1, \"b\") }",
            "#[allow(unused)] fn f() { h(1, \"a\") }",
            "#[allow(unused)] fn f() { g[1, \"a\"] }",
            "#[allow(unused)] fn f() { g(1; \"a\") }",
        ] {
            assert_ne!(base, checksum(&tokens(changed)), "{changed}");
        }
    }
}
