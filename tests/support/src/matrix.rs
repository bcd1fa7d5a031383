//! The production matrix: every combination of the variables that decide a production run.

/// One cell of the production matrix: ENABLE_PROD_MIGRATIONS, AUTO_MIGRATE_ON_STARTUP,
/// MIGRATION_REQUIRE_CONFIRMATION, MIGRATION_BACKUP_BEFORE (None: unset, i.e. the default).
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub enable: Option<&'static str>,
    pub auto: Option<&'static str>,
    pub confirm: Option<&'static str>,
    pub backup: Option<&'static str>,
}

impl Cell {
    /// All 24 cells.
    pub fn all() -> Vec<Cell> {
        let mut cells = Vec::new();
        for enable in [None, Some("false"), Some("true")] {
            for auto in [None, Some("true")] {
                for confirm in [None, Some("false")] {
                    for backup in [None, Some("false")] {
                        cells.push(Cell {
                            enable,
                            auto,
                            confirm,
                            backup,
                        });
                    }
                }
            }
        }
        cells
    }

    /// The production environment of this cell, backing up into `dir`.
    pub fn vars<'a>(&self, dir: &'a str) -> Vec<(&'static str, &'a str)> {
        let mut vars = vec![("ENVIRONMENT", "production"), ("MIGRATION_BACKUP_DIR", dir)];
        vars.extend(self.enable.map(|v| ("ENABLE_PROD_MIGRATIONS", v)));
        vars.extend(self.auto.map(|v| ("AUTO_MIGRATE_ON_STARTUP", v)));
        vars.extend(self.confirm.map(|v| ("MIGRATION_REQUIRE_CONFIRMATION", v)));
        vars.extend(self.backup.map(|v| ("MIGRATION_BACKUP_BEFORE", v)));
        vars
    }

    /// The policy of this cell, backing up into `dir`, never asking at a terminal.
    pub fn config(&self, dir: &str) -> migrator::Config {
        let vars = self.vars(dir);
        let mut config = migrator::Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        config.set_interactive(false);
        config
    }
}
