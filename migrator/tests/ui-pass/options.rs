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
    pub use migrator as renamed;
}

#[migration("003_crate_path", crate = reexported::renamed, transaction = true)]
fn crate_path(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {
    let ids: Vec<&str> = migrator::Migrator::from_registry()
        .unwrap()
        .migrations()
        .iter()
        .map(|m| m.id())
        .collect();
    assert_eq!(ids, ["001_default", "002_no_transaction", "003_crate_path"]);
}
