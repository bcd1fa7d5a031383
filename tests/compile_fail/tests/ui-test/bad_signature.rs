use migrator::Database;

#[migrator::test]
async fn asynchronous(_db: Database) {}

#[migrator::test]
fn unknown_argument(_db: Database, name: &str) {
    let _ = name;
}

#[migrator::test]
fn generic<T>(_db: Database) {}

fn main() {}
