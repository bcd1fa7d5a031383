//! Two migrations with one ID: an error at start-up that names both source locations.

use migrator::{migration, Context, Error, Migrator, Result};

mod first {
    use super::*;

    #[migration("001_same_id")]
    pub(crate) fn one(_: &mut Context<'_>) -> Result<()> {
        Ok(())
    }
}

mod second {
    use super::*;

    #[migration("001_same_id")]
    pub(crate) fn other(_: &mut Context<'_>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn duplicate_ids_are_an_error_naming_both_places() {
    let err = Migrator::from_registry().unwrap_err();
    let Error::DuplicateMigration { id, first, second } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(id, "001_same_id");
    let mut places = [first.clone(), second.clone()];
    places.sort();
    // file!() is relative to the workspace root; the lines are those of the attributes.
    assert_eq!(places, ["tests/duplicates.rs:17", "tests/duplicates.rs:8"]);
    assert!(err.is_configuration());
    assert!(err
        .to_string()
        .starts_with("duplicate migration ID 001_same_id: registered at tests/duplicates.rs:"));
}
