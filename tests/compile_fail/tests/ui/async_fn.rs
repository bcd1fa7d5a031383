use migrator::{migration, Context, Result};

#[migration("001_async")]
async fn asynchronous(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
