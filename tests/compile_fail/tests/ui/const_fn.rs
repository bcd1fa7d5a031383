use migrator::{migration, Context, Result};

#[migration("001_const")]
const fn constant(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
