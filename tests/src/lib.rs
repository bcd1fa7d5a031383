//! Migrations shared by the integration tests and the `migrator-test-runner` binary, so that
//! threads of a test and separate OS processes run the very same set.
//!
//! Each migration appends one row to `run_effects` per execution: a migration applied twice
//! shows up twice, whoever applied it.

pub mod fixtures {
    use diesel::sql_types::Text;
    use diesel::RunQueryDsl;
    use migrator::{migration, Context, Result};

    /// The IDs, in order.
    pub const IDS: [&str; 4] = [
        "001_create_effects",
        "002_slow_insert",
        "003_nontx_insert",
        "004_slow_nontx",
    ];

    /// With this variable set, `004_slow_nontx` records that it started and then hangs, so that
    /// a test can kill its process mid-migration.
    pub const HANG_VAR: &str = "MIGRATOR_TEST_HANG_IN_004";

    fn effect(ctx: &mut Context<'_>, id: &str) -> Result<()> {
        diesel::sql_query("INSERT INTO run_effects (migration, pid) VALUES ($1, $2)")
            .bind::<Text, _>(id)
            .bind::<Text, _>(std::process::id().to_string())
            .execute(ctx.conn())?;
        Ok(())
    }

    #[migration("001_create_effects")]
    fn create_effects(ctx: &mut Context<'_>) -> Result<()> {
        ctx.batch_execute(
            "CREATE TABLE run_effects (migration TEXT NOT NULL, pid TEXT NOT NULL);
             CREATE TABLE hang_marker (started INTEGER);",
        )?;
        effect(ctx, "001_create_effects")
    }

    #[migration("002_slow_insert")]
    fn slow_insert(ctx: &mut Context<'_>) -> Result<()> {
        // Long enough that every other runner arrives while this one holds the lock.
        std::thread::sleep(std::time::Duration::from_millis(300));
        effect(ctx, "002_slow_insert")
    }

    #[migration("003_nontx_insert", transaction = false)]
    fn nontx_insert(ctx: &mut Context<'_>) -> Result<()> {
        effect(ctx, "003_nontx_insert")
    }

    #[migration("004_slow_nontx", transaction = false)]
    fn slow_nontx(ctx: &mut Context<'_>) -> Result<()> {
        if std::env::var_os(HANG_VAR).is_some() {
            ctx.batch_execute("INSERT INTO hang_marker (started) VALUES (1)")?;
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        effect(ctx, "004_slow_nontx")
    }
}

/// This package lists its test targets by hand (`autotests = false`, because the test files sit
/// at the package root rather than in a `tests/` folder): a file not listed, or a module file
/// of a binary directory (`integration/`, `shared_fixtures/`) that its main.rs does not declare, would
/// silently never be compiled. This check fails instead.
#[cfg(test)]
mod manifest {
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn every_test_file_is_a_test_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let listed: BTreeSet<String> = manifest
            .split("[[test]]")
            .skip(1)
            .filter_map(|section| {
                let section = section.split("\n[").next().unwrap_or_default();
                let line = section
                    .lines()
                    .find(|line| line.trim_start().starts_with("path"))?;
                let path = line.split('=').nth(1)?.trim().trim_matches('"');
                Some(path.to_owned())
            })
            .collect();
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        // Test files at the root, and `DIR/main.rs` of a binary made of modules, each of whose
        // files its main.rs must declare (`mod NAME;`), or it is never compiled either.
        let mut files: BTreeSet<String> = BTreeSet::new();
        for name in names(root) {
            let dir = root.join(&name);
            if name.ends_with(".rs") {
                files.insert(name);
            } else if dir.join("main.rs").is_file() {
                let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
                for module in names(&dir) {
                    let Some(stem) = module.strip_suffix(".rs") else {
                        continue;
                    };
                    assert!(
                        module == "main.rs" || main.contains(&format!("mod {stem};")),
                        "tests/{name}/{module} is not a module of tests/{name}/main.rs (never \
                         compiled): add `mod {stem};` there"
                    );
                }
                files.insert(format!("{name}/main.rs"));
            }
        }
        assert!(
            !files.is_empty(),
            "no test files found in {}",
            root.display()
        );
        let missing: Vec<_> = files.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "test files not listed as [[test]] in tests/Cargo.toml (never compiled): {missing:?}"
        );
        let dangling: Vec<_> = listed.difference(&files).collect();
        assert!(
            dangling.is_empty(),
            "[[test]] paths with no file: {dangling:?}"
        );
    }

    /// The modules of `integration/` share one binary, so its registry holds every module's
    /// migrations (IDs repeat between them): a module that took the whole registry would fail
    /// on duplicate IDs, or, worse, run the other modules' migrations and pass. Each takes its
    /// own file's (`file_migrator!`, `file_migrations!`).
    #[test]
    fn integration_modules_run_only_their_own_migrations() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration");
        let whole_registry = [
            "from_registry(",
            "Migration::registered(",
            "#[migrator::test",
            "Spec::new(",
            "common::pending(",
        ];
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for pattern in whole_registry {
                    if code.contains(pattern) {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "these take every migration of the shared integration binary; use \
             file_migrator!() or file_migrations!() (the calling file's own):\n{}",
            found.join("\n")
        );
    }
}
