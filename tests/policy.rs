mod common;
#[test]
fn placeholder_compiles() {}
