//! `#[migration]`'s options that must compile, in a binary of their own: its registry holds
//! exactly these four migrations (no other test file of this package registers any).

use migrator::{migration, Context, Result};

#[migration("001_default")]
fn default_options(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("002_no_transaction", transaction = false)]
fn no_transaction(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

mod reexported {
    pub(crate) use migrator as renamed;
}

#[migration("003_crate_path", crate = reexported::renamed, transaction = true)]
fn crate_path(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration(
    "004_statement_timeout",
    statement_timeout = "10m",
    transaction = false
)]
fn statement_timeout(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[test]
fn every_option_registers_its_migration() {
    let ids: Vec<&str> = migrator::Migrator::from_registry()
        .expect("the four registered migrations are a valid set")
        .migrations()
        .iter()
        .map(|m| m.id())
        .collect();
    assert_eq!(
        ids,
        [
            "001_default",
            "002_no_transaction",
            "003_crate_path",
            "004_statement_timeout"
        ]
    );
    let timeouts: Vec<Option<std::time::Duration>> = migrator::Migration::registered()
        .filter(|m| m.id() == "004_statement_timeout" || m.id() == "001_default")
        .map(|m| (m.id(), m.statement_timeout()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    assert_eq!(timeouts, [None, Some(std::time::Duration::from_secs(600))]);
}
