use migrator::migration;

#[migration("001_struct")]
struct NotAFunction {
    field: u32,
}

fn main() {}
