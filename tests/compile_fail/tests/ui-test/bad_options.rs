use migrator::Database;

#[migrator::test(mysql, migrations = "up_to = 1_x", backfills = "later", fixtures())]
fn several_bad_options(_db: Database) {}

#[migrator::test(sqlite, sqlite, migrations = "some")]
fn repeated_and_unknown(_db: Database) {}

fn main() {}
