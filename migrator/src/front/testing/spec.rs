//! What a test database holds: which migrations, which fixtures, which backfill mode.

use std::path::Path;

use crate::foundation::error::{Error, Result};

/// Which of the registered migrations a test database has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migrations {
    /// Every migration registered in the binary (and the Diesel SQL migrations, if any).
    #[default]
    All,
    /// None: an empty database (fixtures still apply).
    None,
    /// The migrations up to and including this ID, in run order (and all SQL migrations).
    UpTo(String),
}

/// What happens to the backfills that migrations schedule, while the template is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backfills {
    /// As the library's default policy does at start-up (`MIGRATION_BACKFILL=auto`).
    #[default]
    Auto,
    /// Every backfill finishes inside its migration, before the test body
    /// (`MIGRATION_BACKFILL=inline`).
    Inline,
    /// Backfills are only scheduled (`MIGRATION_BACKFILL=background`): the test drives the
    /// workers itself.
    Background,
}

impl Backfills {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Backfills::Auto => "auto",
            Backfills::Inline => "inline",
            Backfills::Background => "background",
        }
    }
}

/// A SQL script applied after the migrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fixture {
    pub(crate) name: String,
    pub(crate) sql: String,
}

/// What a test database holds: which migrations, which fixtures, which backfill mode.
///
/// The setters take `&mut self` and return `&mut Spec`; [`Spec::create`] makes a database.
#[derive(Clone, Default)]
pub struct Spec {
    pub(super) migrations: Migrations,
    pub(super) sql: Option<&'static diesel_migrations::EmbeddedMigrations>,
    pub(super) fixtures: Vec<Fixture>,
    pub(super) backfills: Backfills,
    pub(super) labels: Vec<String>,
    pub(super) no_templates: bool,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("migrations", &self.migrations)
            .field("sql_migrations", &self.sql.is_some())
            .field("fixtures", &self.fixtures)
            .field("backfills", &self.backfills)
            .field("labels", &self.labels)
            .field("templates", &!self.no_templates)
            .finish()
    }
}

impl Spec {
    /// Every registered migration, no fixture, the default backfill mode, templates on.
    pub fn new() -> Spec {
        Spec::default()
    }

    /// Which migrations to apply (default: all).
    pub fn migrations(&mut self, migrations: Migrations) -> &mut Spec {
        self.migrations = migrations;
        self
    }

    /// Also applies these Diesel SQL migrations, first, as [`crate::Migrator::sql_migrations`].
    pub fn sql_migrations(
        &mut self,
        migrations: &'static diesel_migrations::EmbeddedMigrations,
    ) -> &mut Spec {
        self.sql = Some(migrations);
        self
    }

    /// Adds a SQL script, run after the migrations (and the fixtures added before it); `name`
    /// appears in errors.
    pub fn fixture(&mut self, name: impl Into<String>, sql: impl Into<String>) -> &mut Spec {
        self.fixtures.push(Fixture {
            name: name.into(),
            sql: sql.into(),
        });
        self
    }

    /// Adds the SQL script in file `path` (see [`Spec::fixture`]).
    pub fn fixture_file(&mut self, path: impl AsRef<Path>) -> Result<&mut Spec> {
        let path = path.as_ref();
        let sql = std::fs::read_to_string(path).map_err(Error::io(format!(
            "cannot read test fixture {}",
            path.display()
        )))?;
        Ok(self.fixture(path.display().to_string(), sql))
    }

    /// What to do with the backfills the migrations schedule (default: [`Backfills::Auto`]).
    pub fn backfills(&mut self, backfills: Backfills) -> &mut Spec {
        self.backfills = backfills;
        self
    }

    /// Distinguishes states that migrations and fixtures alone do not tell apart (say, the
    /// process-wide set-up a test made before its database was built: `#[migrator::test(setup
    /// = path)]` adds the function's path); part of the template's key.
    pub fn label(&mut self, label: impl Into<String>) -> &mut Spec {
        self.labels.push(label.into());
        self
    }

    /// Migrates every database itself instead of copying a template: the slow way, for
    /// comparison (the benchmark's baseline) or to debug the templates.
    pub fn dangerous_disable_templates(&mut self, disable: bool) -> &mut Spec {
        self.no_templates = disable;
        self
    }
}
