//! A stable checksum of a migration function's tokens.
//!
//! Tokens, not text: whitespace and ordinary comments do not change it, code does (doc comments
//! are attributes, and so count). FNV-1a 64 is enough here: the checksum detects edits, it does
//! not defend against an adversary.

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
    use super::fnv1a_hex;

    #[test]
    fn known_vectors() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a_hex(""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex("a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex("foobar"), "85944171f73967e8");
    }

    #[test]
    fn tokens_not_whitespace() {
        let a: proc_macro2::TokenStream = "fn f ( ) { 1 }".parse().unwrap();
        let b: proc_macro2::TokenStream = "fn f() {\n    // a comment\n    1\n}".parse().unwrap();
        let c: proc_macro2::TokenStream = "fn f() { 2 }".parse().unwrap();
        assert_eq!(fnv1a_hex(&a.to_string()), fnv1a_hex(&b.to_string()));
        assert_ne!(fnv1a_hex(&a.to_string()), fnv1a_hex(&c.to_string()));
    }
}
