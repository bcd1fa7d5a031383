//! The state a test database is in (migrations, fixtures, backfill mode), its template's key,
//! and how a fresh database is brought into it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use diesel::connection::SimpleConnection;

use super::{Backfills, Fixture, Migrations, Server, Spec};
use crate::access::connection::Database;
use crate::access::url::Backend;
use crate::foundation::config::{BackfillMode, Config, Environment};
use crate::foundation::error::{Error, Result};
use crate::running::migrations::Migrator;
use crate::running::registry::Migration;

/// The version of the key's input format: a change to it gives every template a new name.
const KEY_FORMAT: &str = "migrator-test-template-v1";

/// A [`Spec`] resolved against the registry: the migrations it means, and its template's key.
pub(crate) struct State {
    migrations: Vec<&'static Migration>,
    sql: Option<&'static diesel_migrations::EmbeddedMigrations>,
    fixtures: Vec<Fixture>,
    backfills: Backfills,
    labels: Vec<String>,
    key: String,
}

impl State {
    /// Resolves `spec`: `up_to` must name a registered migration.
    pub(crate) fn resolve(spec: &Spec) -> Result<State> {
        let all = Migrator::from_registry()?.migrations().to_vec();
        let migrations = match &spec.migrations {
            Migrations::All => all,
            Migrations::None => Vec::new(),
            Migrations::UpTo(id) => match all.iter().position(|m| m.id() == id) {
                Some(last) => all[..=last].to_vec(),
                None => {
                    let ids: Vec<&str> = all.iter().map(|m| m.id()).collect();
                    return Err(Error::Testing {
                        reason: format!(
                        "migrations = \"up_to = {id}\": this test binary registers no migration \
                         {id} (it registers: {}); link the crate that defines it \
                         (`use my_migrations as _;`) or fix the ID",
                        if ids.is_empty() {
                            "none".to_owned()
                        } else {
                            ids.join(", ")
                        }
                        ),
                    });
                }
            },
        };
        let mut state = State {
            migrations,
            sql: spec.sql,
            fixtures: spec.fixtures.clone(),
            backfills: spec.backfills,
            labels: spec.labels.clone(),
            key: String::new(),
        };
        state.key = state.compute_key();
        Ok(state)
    }

    /// The template's key: 16 hex digits of FNV-1a over the migrations' IDs and checksums, the
    /// SQL migrations' names (and then the binary's identity), the labels, the fixtures and the
    /// backfill mode.
    fn compute_key(&self) -> String {
        let mut text = format!("{KEY_FORMAT}\nbackfills {}\n", self.backfills.as_str());
        for m in &self.migrations {
            text.push_str(&format!("migration {} {}\n", m.id(), m.checksum()));
        }
        if let Some(sql) = self.sql {
            for name in sql_names(sql) {
                text.push_str(&format!("sql {name}\n"));
            }
            // Diesel does not expose a SQL migration's text: the binary that embeds it stands
            // for it.
            text.push_str(&format!("binary {}\n", binary_identity()));
        }
        for label in &self.labels {
            text.push_str(&format!("label {label}\n"));
        }
        for fixture in &self.fixtures {
            text.push_str(&format!(
                "fixture {} {}\n{}\n",
                fixture.name,
                fixture.sql.len(),
                fixture.sql
            ));
        }
        fnv1a_hex(&text)
    }

    /// The template's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Brings the empty database `db` into this state: the migrations (as a development run with
    /// the chosen backfill mode), then the fixtures in order.
    pub(crate) fn build(&self, db: &Database) -> Result<()> {
        let mut config = Config::new(Environment::Development);
        match self.backfills {
            Backfills::Auto => {}
            Backfills::Inline => {
                config.set_backfill_mode(BackfillMode::Inline);
            }
            Backfills::Background => {
                config.set_backfill_mode(BackfillMode::Background);
            }
        }
        if !self.migrations.is_empty() || self.sql.is_some() {
            let mut migrator = Migrator::from_migrations(self.migrations.iter().copied())?;
            if let Some(sql) = self.sql {
                migrator.sql_migrations(sql);
            }
            migrator.run(db, &config)?;
        }
        if !self.fixtures.is_empty() {
            let mut conn = db.get()?;
            for fixture in &self.fixtures {
                conn.batch_execute(&fixture.sql).map_err(Error::db(format!(
                    "test fixture {} failed (it runs after the migrations)",
                    fixture.name
                )))?;
            }
        }
        Ok(())
    }
}

fn sql_names(sql: &'static diesel_migrations::EmbeddedMigrations) -> Vec<String> {
    use diesel::migration::MigrationSource;
    let migrations = <diesel_migrations::EmbeddedMigrations as MigrationSource<
        diesel::sqlite::Sqlite,
    >>::migrations(sql);
    match migrations {
        Ok(list) => list.iter().map(|m| m.name().to_string()).collect(),
        Err(e) => vec![format!("<unreadable: {e}>")],
    }
}

/// The running test binary's path, size and modification time.
fn binary_identity() -> String {
    let exe = std::env::current_exe().ok();
    let meta = exe.as_ref().and_then(|p| std::fs::metadata(p).ok());
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{} {} {modified}",
        exe.map(|p| p.display().to_string()).unwrap_or_default(),
        meta.map(|m| m.len()).unwrap_or_default()
    )
}

/// 64-bit FNV-1a of `text`, as 16 lowercase hex digits.
pub(crate) fn fnv1a_hex(text: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

type Built = Arc<OnceLock<std::result::Result<String, String>>>;

/// The templates of this process, by backend and key: each is built (or found) once; tests
/// that need one while it is being built wait for it.
static TEMPLATES: Mutex<Option<HashMap<(Backend, String), Built>>> = Mutex::new(None);

/// The name of the template of `state` on `server`, built on first use.
pub(crate) fn template(backend: Backend, server: &dyn Server, state: &State) -> Result<String> {
    let slot = {
        let mut templates = TEMPLATES.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            templates
                .get_or_insert_with(HashMap::new)
                .entry((backend, state.key().to_owned()))
                .or_default(),
        )
    };
    let built = slot.get_or_init(|| {
        server
            .template(state.key(), &|db| state.build(db))
            .map_err(|e| e.to_string())
    });
    match built {
        Ok(name) => Ok(name.clone()),
        Err(why) => Err(Error::Testing {
            reason: format!(
                "building the {backend} template database (migrations, then fixtures) \
                 failed: {why}"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{fnv1a_hex, Backfills, Fixture, State};
    use crate::running::context::Context;
    use crate::running::registry::Migration;

    fn noop(_: &mut Context<'_>) -> crate::foundation::error::Result<()> {
        Ok(())
    }

    static A: Migration = Migration::__new("001_a", noop, true, "v2:1", "", "a.rs", 1, "m");
    static A_CHANGED: Migration = Migration::__new("001_a", noop, true, "v2:2", "", "a.rs", 1, "m");
    static B: Migration = Migration::__new("002_b", noop, true, "v2:3", "", "b.rs", 1, "m");

    fn key(migrations: Vec<&'static Migration>, fixtures: &[&str], backfills: Backfills) -> String {
        State {
            migrations,
            sql: None,
            fixtures: fixtures
                .iter()
                .map(|sql| Fixture {
                    name: "f.sql".into(),
                    sql: (*sql).into(),
                })
                .collect(),
            backfills,
            labels: Vec::new(),
            key: String::new(),
        }
        .compute_key()
    }

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a_hex(""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex("foobar"), "85944171f73967e8");
    }

    /// A template is rebuilt when anything it was built from changes, and only then.
    #[test]
    fn the_key_follows_checksums_fixtures_and_options() {
        let base = key(vec![&A, &B], &["INSERT 1"], Backfills::Auto);
        assert_eq!(base, key(vec![&A, &B], &["INSERT 1"], Backfills::Auto));
        assert_eq!(base.len(), 16);
        for other in [
            key(vec![&A_CHANGED, &B], &["INSERT 1"], Backfills::Auto),
            key(vec![&A], &["INSERT 1"], Backfills::Auto),
            key(vec![&A, &B], &["INSERT 2"], Backfills::Auto),
            key(vec![&A, &B], &[], Backfills::Auto),
            key(vec![&A, &B], &["INSERT 1"], Backfills::Inline),
        ] {
            assert_ne!(base, other);
        }
    }
}
