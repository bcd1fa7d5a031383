//! Database access, above the foundation and hashing: how the crate reaches a database. It may
//! import those two layers only; the backend seam lives here, so that no layer above matches on
//! the backend.
//!
//! - `url.rs`: `DATABASE_URL` parsing, the backend from the scheme, a redacted form;
//! - `pg_url.rs`: a PostgreSQL URL read the way libpq reads it;
//! - `connection.rs`: `Database`, its pools, `AnyConnection` over both backends (public
//!   `connection`);
//! - `backend/`: one file per backend holding all of its SQL (tracking, lock, backup, backfill
//!   claims and writes); `backend::of(backend)` is the one place that picks it;
//! - `schema.rs`: reading the catalog: tables and columns (public `schema`);
//! - `sql.rs`: Diesel SQL migrations (`embed_migrations!`) on either backend.

pub(crate) mod backend;
pub(crate) mod connection;
pub(crate) mod pg_url;
pub(crate) mod schema;
pub(crate) mod sql;
pub(crate) mod url;
