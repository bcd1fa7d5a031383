use migrator::Database;

#[migrator::test(sqlite)]
#[test]
fn twice(_db: Database) {}

fn main() {}
