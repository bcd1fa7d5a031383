//! inventory only sees migrations of library crates that the binary links: naming the crate
//! once (`use migrator_tests as _;`) is enough.

use migrator_tests as _;

#[test]
fn migrations_of_a_named_library_are_registered() {
    let mut ids: Vec<&str> = migrator::Migration::registered().map(|m| m.id()).collect();
    ids.sort();
    assert_eq!(ids, migrator_tests::fixtures::IDS);
    let migrator = migrator::Migrator::from_registry().unwrap();
    let order: Vec<&str> = migrator.migrations().iter().map(|m| m.id()).collect();
    assert_eq!(order, migrator_tests::fixtures::IDS);
    let m = migrator.migrations()[2];
    assert!(!m.is_transactional());
    assert!(m.location().contains("src/lib.rs:"), "{}", m.location());
    assert!(m.module_path().ends_with("fixtures"));
}
