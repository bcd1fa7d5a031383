use migrator::{migration, Context, Result};

#[migration("001_unknown", retries = 3)]
fn unknown(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("002_bad_value", transaction = "no")]
fn bad_value(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("003_twice", transaction = false, transaction = true)]
fn twice(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("004_flag", transaction)]
fn flag(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
