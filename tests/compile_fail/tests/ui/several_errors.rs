use migrator::{migration, Context, Result};

#[migration("bad", retries = 1)]
async fn everything_wrong<T>(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
