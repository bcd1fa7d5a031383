use migrator::{migration, Context, Result};

#[migration("001_no_unit", statement_timeout = "10")]
fn no_unit(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("002_zero", statement_timeout = "0s")]
fn zero(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("003_not_a_string", statement_timeout = 10)]
fn not_a_string(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

#[migration("004_twice", statement_timeout = "1s", statement_timeout = "2s")]
fn twice(_ctx: &mut Context<'_>) -> Result<()> {
    Ok(())
}

fn main() {}
