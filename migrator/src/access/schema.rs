//! Reading the database schema, for migrations and applications: which columns a table has, as
//! the queries of this connection would see it.
//!
//! On PostgreSQL a table name is resolved as an unqualified name in a query is: along
//! `search_path` (`to_regclass`), so `"users"` means the table that
//! `SELECT ... FROM users` reads, and `"app.users"` names the schema explicitly.
//! On SQLite it is a table of the main database.
//!
//! ```no_run
//! # fn demo(ctx: &mut migrator::Context<'_>) -> migrator::Result<()> {
//! if !migrator::connection::has_column(ctx.conn(), "users", "email_normalized")? {
//!     ctx.batch_execute("ALTER TABLE users ADD COLUMN email_normalized TEXT")?;
//! }
//! # Ok(()) }
//! ```

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend;
use crate::access::connection::AnyConnection;
use crate::foundation::error::{Error, Result};

/// The row of a `SELECT COUNT(*) AS n ...` query run with `diesel::sql_query`.
///
/// ```no_run
/// # fn demo(conn: &mut migrator::AnyConnection) -> diesel::QueryResult<()> {
/// use diesel::RunQueryDsl;
/// let users: migrator::connection::Count =
///     diesel::sql_query("SELECT COUNT(*) AS n FROM users").get_result(conn)?;
/// println!("{} users", users.n);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, QueryableByName)]
#[non_exhaustive]
pub struct Count {
    /// The count.
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// One column of a table: its name and its type as the database spells it.
#[derive(QueryableByName)]
pub(crate) struct Column {
    /// The column's name.
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
    /// Its type (`format_type` on PostgreSQL, the declared type on SQLite).
    #[diesel(sql_type = Text)]
    pub(crate) ty: String,
}

/// The columns of `table` (resolved as the module documentation says); none if it does not
/// exist. `table` comes from code, and is bound, never spliced into the SQL.
pub(crate) fn columns(conn: &mut AnyConnection, table: &str) -> Result<Vec<Column>> {
    let sql = backend::of(conn.backend()).columns_sql();
    diesel::sql_query(sql)
        .bind::<Text, _>(table)
        .load(conn)
        .map_err(Error::db(format!("cannot read the columns of {table}")))
}

/// Whether `table` has `column` (false if the table does not exist). On PostgreSQL the table is
/// the one `search_path` finds, as for an unqualified name in a query, unless `table` names its
/// schema (`"app.users"`).
///
/// ```no_run
/// # fn demo(ctx: &mut migrator::Context<'_>) -> migrator::Result<()> {
/// if !migrator::connection::has_column(ctx.conn(), "users", "email_normalized")? {
///     ctx.batch_execute("ALTER TABLE users ADD COLUMN email_normalized TEXT")?;
/// }
/// # Ok(()) }
/// ```
pub fn has_column(conn: &mut AnyConnection, table: &str, column: &str) -> Result<bool> {
    Ok(columns(conn, table)?.iter().any(|c| c.name == column))
}

/// Whether `table` exists in the current schema (read-only callers must not create it).
pub(crate) fn table_exists(conn: &mut AnyConnection, table: &str) -> Result<bool> {
    let query = backend::of(conn.backend()).table_exists_sql();
    let count: Count = diesel::sql_query(query)
        .bind::<Text, _>(table)
        .get_result(conn)
        .map_err(Error::db(format!("cannot look for the {table} table")))?;
    Ok(count.n > 0)
}
