use migrator::{migration, Context, Result};

#[migration("001_one", "002_two")]
fn two_ids(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
