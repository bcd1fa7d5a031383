//! The tracking table the Python runner left, as the deployment guide's SQL creates it: the
//! guide's columns only, with or without an `id SERIAL` key.

use migrator::{connection::Backend, Database};

use super::texts;

/// The Python runner's table, as the deployment guide's SQL uses it.
pub const GUIDE_TABLE: &str = "CREATE TABLE applied_migrations (
    migration_name VARCHAR(255) PRIMARY KEY,
    status VARCHAR(20) NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms INTEGER,
    error_message TEXT
)";

/// The same with a surrogate key.
pub const GUIDE_TABLE_WITH_ID: &str = "CREATE TABLE applied_migrations (
    id SERIAL PRIMARY KEY,
    migration_name VARCHAR(255) UNIQUE NOT NULL,
    status VARCHAR(20) NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    execution_time_ms INTEGER,
    error_message TEXT
)";

/// The columns of `applied_migrations`, in order.
pub fn columns(db: &Database, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) AS v FROM information_schema.columns \
             WHERE table_name = 'applied_migrations' ORDER BY ordinal_position"
        }
        _ => "SELECT name AS v FROM pragma_table_info('applied_migrations') ORDER BY cid",
    };
    texts(db, sql)
}

/// The guide's columns, in order.
pub const GUIDE_COLUMNS: [&str; 5] = [
    "migration_name",
    "status",
    "applied_at",
    "execution_time_ms",
    "error_message",
];
