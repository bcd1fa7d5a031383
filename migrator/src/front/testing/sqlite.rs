//! SQLite test databases: files in a temporary directory of the test binary; templates copied
//! file by file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::{cluster, Server};
use crate::access::connection::Database;
use crate::foundation::error::{Error, Result};

/// The directory of this process's SQLite test databases.
struct Sqlite {
    dir: PathBuf,
}

static SERVER: OnceLock<std::result::Result<Sqlite, String>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The SQLite "server" of this process: its directory, made on first use.
pub(super) fn server() -> Result<&'static dyn Server> {
    let server = SERVER.get_or_init(|| {
        cluster::temp_dir("migrator-test-sqlite", super::keep_test_db())
            .map(|dir| Sqlite { dir })
            .map_err(|why| {
                format!(
                    "cannot make a directory for the SQLite test databases: {why}; set TMPDIR \
                     to a writable directory"
                )
            })
    });
    match server {
        Ok(server) => Ok(server),
        Err(why) => Err(Error::Testing {
            reason: why.clone(),
        }),
    }
}

impl Sqlite {
    fn connect(path: &std::path::Path) -> Result<Database> {
        Database::connect(&format!("sqlite://{}", path.display()))
    }
}

impl Server for Sqlite {
    fn template(&self, key: &str, build: &dyn Fn(&Database) -> Result<()>) -> Result<String> {
        // Per process: SQLite templates are not shared between test binaries.
        let path = self.dir.join(format!("template_{key}.db"));
        let building = self.dir.join(format!("template_{key}.building.db"));
        let _ = std::fs::remove_file(&building);
        let db = Sqlite::connect(&building)?;
        let built = build(&db);
        // Every connection closes: the file is complete (no journal left) once the pool is gone.
        drop(db);
        built?;
        std::fs::rename(&building, &path).map_err(Error::io(format!(
            "cannot move the SQLite template into place at {}",
            path.display()
        )))?;
        Ok(path.display().to_string())
    }

    fn create(&self, template: Option<&str>) -> Result<(String, Database)> {
        let path = self.dir.join(format!(
            "test_{}.db",
            DATABASES.fetch_add(1, Ordering::Relaxed)
        ));
        if let Some(template) = template {
            std::fs::copy(template, &path).map_err(Error::io(format!(
                "cannot copy the SQLite template {template} to {}",
                path.display()
            )))?;
        }
        let db = Sqlite::connect(&path)?;
        Ok((path.display().to_string(), db))
    }

    fn remove(&self, name: &str) {
        for suffix in ["", "-journal", "-wal", "-shm", ".migrator-lock"] {
            let _ = std::fs::remove_file(format!("{name}{suffix}"));
        }
    }
}
