//! What a database error may say outside the process: its kind and message, with every value
//! from a row or a statement replaced by `<redacted>`.
//!
//! PostgreSQL puts a row's values in an error's `DETAIL` (`Key (email)=(a@b.c) already
//! exists`) and quotes literals of the statement in some messages (`invalid input syntax for
//! type integer: "SECRET"`, `value "..." is out of range`); SQLite quotes the statement near a
//! syntax error (`near "SECRET": syntax error`). [`database_error`] keeps the message without
//! detail, hint or statement, and replaces every quoted part that does not follow a word naming
//! a database object (`relation "users"`, `constraint "users_pkey"`, `column "email"`) with
//! `"<redacted>"`: an operator still learns which object and what went wrong, never a value.
//! The driver's error stays the [`std::error::Error::source`] of migrator's, for code that
//! matches on it.

use std::fmt;

/// Words after which a quoted name is a database object, not a value.
const OBJECT_WORDS: [&str; 20] = [
    "relation",
    "table",
    "column",
    "constraint",
    "index",
    "schema",
    "type",
    "function",
    "database",
    "role",
    "sequence",
    "view",
    "trigger",
    "extension",
    "operator",
    "tablespace",
    "collation",
    "domain",
    "savepoint",
    "policy",
];

/// The text put in place of a value.
pub(crate) const REDACTED: &str = "<redacted>";

/// `message` with quoted values replaced (see the module's docs). Quotes are `"` and `'`; an
/// unterminated quote redacts the rest.
pub(crate) fn message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '\'']) {
        let (before, from_quote) = rest.split_at(start);
        out.push_str(before);
        let quote = from_quote.chars().next().unwrap_or('"');
        let inner = &from_quote[1..];
        let (quoted, after) = match inner.find(quote) {
            Some(end) => (&inner[..end], &inner[end + 1..]),
            None => (inner, ""),
        };
        let previous = out
            .trim_end()
            .rsplit(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        out.push(quote);
        if OBJECT_WORDS.contains(&previous.as_str()) && !quoted.contains(['\n', '\r']) {
            out.push_str(quoted);
        } else {
            out.push_str(REDACTED);
        }
        out.push(quote);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A Diesel error, displayed with its values redacted (see the module's docs).
pub(crate) struct DatabaseError<'a>(pub(crate) &'a diesel::result::Error);

impl fmt::Display for DatabaseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use diesel::result::Error as E;
        match self.0 {
            E::DatabaseError(_, info) => f.write_str(&message(info.message())),
            E::SerializationError(_) => f.write_str("a value could not be serialized"),
            E::DeserializationError(_) => f.write_str("a value could not be read back"),
            E::QueryBuilderError(_) => f.write_str("the query could not be built"),
            other => fmt::Display::fmt(other, f),
        }
    }
}

impl fmt::Debug for DatabaseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use diesel::result::Error as E;
        match self.0 {
            E::DatabaseError(kind, _) => {
                write!(f, "DatabaseError({kind:?}, \"{self}\")")
            }
            _ => write!(f, "DieselError(\"{self}\")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn values_are_redacted_and_object_names_kept() {
        assert_eq!(
            message(r#"invalid input syntax for type integer: "hunter2""#),
            r#"invalid input syntax for type integer: "<redacted>""#
        );
        assert_eq!(
            message(r#"duplicate key value violates unique constraint "users_pkey""#),
            r#"duplicate key value violates unique constraint "users_pkey""#
        );
        assert_eq!(
            message(r#"column "nick" of relation "users" does not exist"#),
            r#"column "nick" of relation "users" does not exist"#
        );
        assert_eq!(
            message(r#"near "SECRET": syntax error"#),
            r#"near "<redacted>": syntax error"#
        );
        assert_eq!(
            message("value 'it''s' is too long"),
            "value '<redacted>''<redacted>' is too long"
        );
        assert_eq!(message("unterminated 'SECRET"), "unterminated '<redacted>'");
        assert_eq!(message("no quotes at all"), "no quotes at all");
    }
}
