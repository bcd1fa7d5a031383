use migrator::{migration, Context, Result};

#[migration]
fn no_id(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration(transaction = false)]
fn options_only(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
