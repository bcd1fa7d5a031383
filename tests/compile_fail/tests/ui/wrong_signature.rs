use migrator::{migration, Context, Result};

#[migration("001_takes_nothing")]
fn takes_nothing() -> Result<()> {
    Ok(())
}

#[migration("002_returns_unit")]
fn returns_unit(_ctx: &mut Context<'_>) {}

#[migration("003_wrong_argument")]
fn wrong_argument(_name: &str) -> Result<()> {
    Ok(())
}

fn main() {}
