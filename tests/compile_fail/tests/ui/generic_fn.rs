use migrator::{migration, Context, Result};

#[migration("001_generic")]
fn generic<T: Default>(_ctx: &mut Context<'_>) -> Result<()> {
    let _ = T::default();
    Ok(())
}

fn main() {}
