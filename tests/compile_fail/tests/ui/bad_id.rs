use migrator::{migration, Context, Result};

#[migration("1_too_short")]
fn too_short(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("001_Upper_Case")]
fn upper_case(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
