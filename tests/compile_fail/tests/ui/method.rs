use migrator::{migration, Context, Result};

struct App;

impl App {
    #[migration("001_method")]
    fn method(&self, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }
}

fn main() {}
