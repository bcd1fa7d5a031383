//! Where `applied_migrations` lives, and which columns it has.
//!
//! On PostgreSQL the table is found one way, once per [`Database`]: an existing
//! `applied_migrations` visible on `search_path` (`to_regclass`), else the schema it is created
//! in, `current_schema()`. From then on every query names that schema explicitly, so that a
//! schema appearing later ahead on `search_path` (a role's own `"$user"` schema) never splits
//! the table in two. The schema name comes from the catalog and is quoted as an identifier.
//! SQLite has no schemas to choose from: the table is `applied_migrations` of the main database.

use diesel::sql_types::{Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::access::backend::{self, quote_ident};
use crate::access::connection::{AnyConnection, Database};
use crate::access::schema;
use crate::foundation::error::{Error, Result};

pub(crate) use crate::foundation::config::TABLE;

/// The tracking table of one database: its schema (PostgreSQL) or the main database (SQLite).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    schema: Option<String>,
}

impl Table {
    /// `applied_migrations` in `schema` (PostgreSQL).
    pub(crate) fn in_schema(schema: impl Into<String>) -> Table {
        Table {
            schema: Some(schema.into()),
        }
    }

    /// `applied_migrations` of a SQLite database.
    pub(crate) fn sqlite() -> Table {
        Table { schema: None }
    }

    /// The schema, on PostgreSQL.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The name to put in SQL: `"schema"."applied_migrations"`, or `applied_migrations`.
    pub(crate) fn sql_name(&self) -> String {
        backend::qualified(self.schema(), TABLE)
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

/// The tracking table as this database sees it, if it exists: the one resolved before, else
/// the one visible on `search_path` (which is then remembered). Creates nothing.
pub(crate) fn find(db: &Database, conn: &mut AnyConnection) -> Result<Option<Table>> {
    let Some(schema_of) = backend::of(conn.backend()).table_schema_sql() else {
        let exists = schema::table_exists(conn, TABLE)?;
        return Ok(exists.then(Table::sqlite));
    };
    if let Some(schema) = db.tracking_schema().get() {
        return Ok(Some(Table::in_schema(schema.clone())));
    }
    let found: Vec<Name> = diesel::sql_query(schema_of)
        .bind::<Text, _>(TABLE)
        .load(conn)
        .map_err(Error::db("cannot look for the applied_migrations table"))?;
    Ok(found
        .into_iter()
        .find_map(|n| n.name)
        .map(|schema| remember(db, &Table::in_schema(schema))))
}

/// The tracking table this database uses, existing or not: [`find`], else where it is to be
/// created (`current_schema()`). Not remembered until the table exists (see [`remember`]).
pub(crate) fn locate(db: &Database, conn: &mut AnyConnection) -> Result<Table> {
    if let Some(table) = find(db, conn)? {
        return Ok(table);
    }
    let current: Name = diesel::sql_query(backend::CURRENT_SCHEMA)
        .get_result(conn)
        .map_err(Error::db("cannot read current_schema()"))?;
    current
        .name
        .map(Table::in_schema)
        .ok_or(Error::NoTrackingSchema)
}

/// Remembers `table` as this database's tracking table (once it exists); returns the one
/// remembered (the first, should two threads race).
pub(crate) fn remember(db: &Database, table: &Table) -> Table {
    match table.schema() {
        Some(schema) => Table::in_schema(
            db.tracking_schema()
                .get_or_init(|| schema.to_owned())
                .clone(),
        ),
        None => table.clone(),
    }
}

/// Whether `table` exists (read-only callers must not create it).
pub(crate) fn exists(conn: &mut AnyConnection, table: &Table) -> Result<bool> {
    exists_beside(conn, table, TABLE)
}

/// Whether the table `name` exists beside `table` (in its schema, or the current one):
/// `applied_migrations` itself, or one of the tables migrator keeps next to it.
pub(crate) fn exists_beside(conn: &mut AnyConnection, table: &Table, name: &str) -> Result<bool> {
    let Some(schema) = table.schema() else {
        return schema::table_exists(conn, name);
    };
    let found: Name = diesel::sql_query(backend::REGCLASS)
        .bind::<Text, _>(format!("{}.{name}", quote_ident(schema)))
        .get_result(conn)
        .map_err(Error::db(format!("cannot look for the {name} table")))?;
    Ok(found.name.is_some())
}

/// The columns of an existing tracking table (an older tool's table lacks some).
#[derive(Debug)]
pub(crate) struct Columns(Vec<(String, String)>);

impl Columns {
    /// Reads the columns of `table`.
    pub(crate) fn of(conn: &mut AnyConnection, table: &Table) -> Result<Columns> {
        let columns = schema::columns(conn, &table.sql_name()).map_err(|e| match e {
            Error::Database { source, .. } => {
                Error::db("cannot inspect the applied_migrations table")(source)
            }
            other => other,
        })?;
        Ok(Columns(
            columns.into_iter().map(|c| (c.name, c.ty)).collect(),
        ))
    }

    /// Whether the table has `column`.
    pub(crate) fn has(&self, column: &str) -> bool {
        self.0.iter().any(|(name, _)| name == column)
    }

    /// Whether `applied_at` is a PostgreSQL `TIMESTAMP` without time zone (what older tools
    /// create): such a column holds UTC wall-clock time, written and read as such whatever the
    /// session's `TimeZone`.
    pub(crate) fn applied_at_without_time_zone(&self) -> bool {
        self.0.iter().any(|(name, ty)| {
            name == "applied_at" && ty.starts_with("timestamp") && ty.ends_with("without time zone")
        })
    }
}
