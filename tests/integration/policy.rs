//! The environment policy: every row of DESIGN.md's table, strict parsing with errors naming
//! the variable, and the start-up entry point on a real database in each environment.

use crate::common;

use std::collections::HashMap;

use common::{exec, logs, TestDb};
use migrator::{
    config::Environment, config::Setting, config::Source, connection::Backend, migration,
    report::StartupOutcome, Config, Context, Error, Result,
};

#[migration("001_ok")]
fn ok(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE ok_done (x INTEGER)")
}

#[migration("002_fails_if_switch")]
fn fails_if_switch(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("INSERT INTO ok_done (x) VALUES (2)")?;
    if common::table_exists(ctx, "fail_switch")? {
        return Err(Error::msg("the fail switch is on"));
    }
    Ok(())
}

fn config(vars: &[(&str, &str)]) -> Result<Config> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut config = Config::from_lookup(|name| map.get(name).cloned())?;
    // Never ask at a developer's terminal while testing.
    config.set_interactive(false);
    Ok(config)
}

#[test]
fn defaults_per_environment_follow_the_table() {
    // (environment, auto-migrate, confirmation, backup, a failure stops start-up)
    let table = [
        ("development", true, false, false, false),
        ("staging", true, false, false, false),
        ("production", false, true, true, true),
    ];
    for (env, auto, confirm, backup, stops) in table {
        let c = config(&[("ENVIRONMENT", env)]).unwrap();
        assert_eq!(c.environment().as_str(), env);
        assert_eq!(
            c.auto_migrate_on_startup(),
            Setting {
                value: auto,
                source: Source::Default
            },
            "{env}"
        );
        assert_eq!(
            c.require_confirmation(),
            Setting {
                value: confirm,
                source: Source::Default
            },
            "{env}"
        );
        assert_eq!(
            c.backup_before(),
            Setting {
                value: backup,
                source: Source::Default
            },
            "{env}"
        );
        assert_eq!(c.failure_stops_startup(), stops, "{env}");
        assert!(!c.enable_prod_migrations().value);
        assert_eq!(c.lock_timeout(), migrator::config::DEFAULT_LOCK_TIMEOUT);
    }
}

#[test]
fn enable_prod_migrations_matters_only_in_production() {
    for env in ["development", "staging"] {
        for enable in ["true", "false"] {
            let c = config(&[("ENVIRONMENT", env), ("ENABLE_PROD_MIGRATIONS", enable)]).unwrap();
            assert_eq!(c.run_refusal(), None, "{env} {enable}");
            assert_eq!(c.startup_skip_reason(), None, "{env} {enable}");
        }
    }
    let off = config(&[
        ("ENVIRONMENT", "production"),
        ("AUTO_MIGRATE_ON_STARTUP", "true"),
    ])
    .unwrap();
    let reason = off.run_refusal().unwrap();
    assert!(
        reason.contains("ENABLE_PROD_MIGRATIONS is not set"),
        "{reason}"
    );
    let on = config(&[
        ("ENVIRONMENT", "production"),
        ("AUTO_MIGRATE_ON_STARTUP", "true"),
        ("ENABLE_PROD_MIGRATIONS", "yes"),
    ])
    .unwrap();
    assert_eq!(on.run_refusal(), None);
    assert_eq!(on.startup_skip_reason(), None);
}

#[test]
fn explicit_values_override_defaults() {
    let c = config(&[
        ("ENVIRONMENT", "Production"),
        ("AUTO_MIGRATE_ON_STARTUP", "ON"),
        ("MIGRATION_REQUIRE_CONFIRMATION", "0"),
        ("MIGRATION_BACKUP_BEFORE", " No "),
        ("MIGRATION_LOCK_TIMEOUT_SECS", "15"),
        ("MIGRATION_PROGRESS_INTERVAL_SECS", "2"),
    ])
    .unwrap();
    assert_eq!(c.environment(), Environment::Production);
    assert_eq!(
        c.auto_migrate_on_startup(),
        Setting {
            value: true,
            source: Source::Explicit
        }
    );
    assert_eq!(
        c.require_confirmation(),
        Setting {
            value: false,
            source: Source::Explicit
        }
    );
    assert_eq!(
        c.backup_before(),
        Setting {
            value: false,
            source: Source::Explicit
        }
    );
    assert_eq!(c.lock_timeout().as_secs(), 15);
    assert_eq!(c.progress_interval().as_secs(), 2);
    let dev = config(&[
        ("ENVIRONMENT", "development"),
        ("MIGRATION_BACKUP_BEFORE", "TRUE"),
    ])
    .unwrap();
    assert_eq!(
        dev.backup_before(),
        Setting {
            value: true,
            source: Source::Explicit
        }
    );
}

#[test]
fn every_boolean_spelling_is_accepted() {
    for (text, value) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        let c = config(&[
            ("ENVIRONMENT", "production"),
            ("AUTO_MIGRATE_ON_STARTUP", text),
        ])
        .unwrap();
        assert_eq!(c.auto_migrate_on_startup().value, value, "{text}");
    }
}

#[test]
fn bad_values_name_the_variable_and_what_it_accepts() {
    let err = config(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ENVIRONMENT is not set: expected one of development, staging, production"
    );
    let err = config(&[("ENVIRONMENT", "prod")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ENVIRONMENT value \"prod\": expected one of development, staging, production"
    );
    for var in [
        "AUTO_MIGRATE_ON_STARTUP",
        "ENABLE_PROD_MIGRATIONS",
        "MIGRATION_REQUIRE_CONFIRMATION",
        "MIGRATION_BACKUP_BEFORE",
    ] {
        for bad in ["maybe", "", "tru", "2"] {
            let err = config(&[("ENVIRONMENT", "development"), (var, bad)]).unwrap_err();
            assert!(err.is_configuration());
            assert_eq!(
                err.to_string(),
                format!("invalid {var} value {bad:?}: expected true/false, 1/0, yes/no or on/off")
            );
        }
    }
    for var in [
        "MIGRATION_LOCK_TIMEOUT_SECS",
        "MIGRATION_PROGRESS_INTERVAL_SECS",
    ] {
        let err = config(&[("ENVIRONMENT", "staging"), (var, "10s")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid {var} value \"10s\": expected a whole number of seconds")
        );
    }
}

fn startup(t: &TestDb, vars: &[(&str, &str)]) -> Result<StartupOutcome> {
    let db = t.connect();
    file_migrator!()?.run_on_startup(&db, &config(vars)?)
}

/// How many of this file's migrations are pending on `t`.
fn pending(t: &TestDb) -> usize {
    file_migrator!()
        .unwrap()
        .status(&t.connect())
        .unwrap()
        .pending()
        .count()
}

#[test]
fn development_and_staging_migrate_by_default() {
    for env in ["development", "staging"] {
        for backend in common::BACKENDS {
            let t = TestDb::new(backend);
            let outcome = startup(&t, &[("ENVIRONMENT", env)]).unwrap();
            let StartupOutcome::Completed(report) = outcome else {
                panic!("{env}: {outcome:?}");
            };
            assert_eq!(report.applied().count(), 2);
            assert_eq!(pending(&t), 0);
        }
    }
}

#[test]
fn auto_migrate_false_skips_with_the_log_line() {
    let t = TestDb::new(Backend::Postgres);
    logs::take();
    let outcome = startup(
        &t,
        &[
            ("ENVIRONMENT", "staging"),
            ("AUTO_MIGRATE_ON_STARTUP", "no"),
        ],
    );
    let Ok(StartupOutcome::Skipped { reason }) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(reason, "AUTO_MIGRATE_ON_STARTUP is false");
    assert!(logs::contains(
        "Migrations skipped based on environment configuration: AUTO_MIGRATE_ON_STARTUP is false"
    ));
    assert_eq!(pending(&t), 2);
}

#[test]
fn production_skips_unless_enabled() {
    let t = TestDb::new(Backend::Postgres);
    let Ok(StartupOutcome::Skipped { reason }) = startup(&t, &[("ENVIRONMENT", "production")])
    else {
        panic!("production with nothing set must skip");
    };
    assert_eq!(
        reason,
        "AUTO_MIGRATE_ON_STARTUP is not set and defaults to false in production; ENVIRONMENT \
         is production and ENABLE_PROD_MIGRATIONS is not set; set ENABLE_PROD_MIGRATIONS=true \
         to allow migrations in production"
    );
    for enable in [None, Some("false")] {
        let mut vars = vec![
            ("ENVIRONMENT", "production"),
            ("AUTO_MIGRATE_ON_STARTUP", "true"),
        ];
        vars.extend(enable.map(|e| ("ENABLE_PROD_MIGRATIONS", e)));
        let Ok(StartupOutcome::Skipped { reason }) = startup(&t, &vars) else {
            panic!("{vars:?} must skip");
        };
        assert!(reason.contains("ENABLE_PROD_MIGRATIONS is"), "{reason}");
    }
    assert_eq!(pending(&t), 2, "nothing ran");
}

const PROD_ENABLED: [(&str, &str); 3] = [
    ("ENVIRONMENT", "production"),
    ("AUTO_MIGRATE_ON_STARTUP", "true"),
    ("ENABLE_PROD_MIGRATIONS", "true"),
];

#[test]
fn production_needs_a_pinned_plan_and_takes_a_backup() {
    let t = TestDb::new(Backend::Postgres);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_string_lossy().into_owned();
    let mut vars = PROD_ENABLED.to_vec();
    vars.push(("MIGRATION_BACKUP_DIR", &dir));
    // Confirmation defaults to true in production; with no terminal it needs the pinned plan.
    let err = startup(&t, &vars).unwrap_err();
    assert!(err.is_refusal());
    assert_eq!(
        err.to_string(),
        "refused by policy: MIGRATION_REQUIRE_CONFIRMATION is true and there is no terminal \
         to ask: review the plan and set MIGRATION_CONFIRM=001_ok,002_fails_if_switch"
    );
    // Refused under the lock: the report says nothing was applied, both not run.
    let report = err.report().expect("the run's report");
    let not_run: Vec<&str> = report
        .migrations
        .iter()
        .filter(|m| m.outcome == migrator::report::Outcome::NotRun)
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(not_run, ["001_ok", "002_fails_if_switch"]);
    assert_eq!(pending(&t), 2, "nothing ran");
    assert_eq!(
        std::fs::read_dir(backups.path()).unwrap().count(),
        0,
        "no backup either"
    );
    vars.push(("MIGRATION_CONFIRM", "002_fails_if_switch, 001_ok"));
    let Ok(StartupOutcome::Completed(report)) = startup(&t, &vars) else {
        panic!("a matching pinned plan must migrate");
    };
    assert_eq!(report.applied().count(), 2);
    // The backup (default true in production) was taken first.
    let backup = report.backup.expect("a backup");
    assert!(backup.path.starts_with(backups.path()));
    assert!(backup.bytes > 0);
    // Nothing pending: nothing to confirm or back up; the now stale pin does not matter.
    let Ok(StartupOutcome::Completed(report)) = startup(&t, &vars) else {
        panic!("nothing pending must complete");
    };
    assert_eq!(report.applied().count(), 0);
    assert!(report.backup.is_none());
    assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 1);
}

#[test]
fn a_failure_lets_development_and_staging_start_but_stops_production() {
    for env in ["development", "staging"] {
        let t = TestDb::new(Backend::Sqlite);
        exec(&t.connect(), "CREATE TABLE fail_switch (x INTEGER)");
        let outcome = startup(&t, &[("ENVIRONMENT", env)]).unwrap();
        let StartupOutcome::Failed(err) = outcome else {
            panic!("{env}: {outcome:?}");
        };
        assert_eq!(err.migration_id(), Some("002_fails_if_switch"));
        assert!(logs::contains(&format!(
            "Start-up migrations failed in {env}; starting anyway"
        )));
    }
    let t = TestDb::new(Backend::Postgres);
    exec(&t.connect(), "CREATE TABLE fail_switch (x INTEGER)");
    let mut vars = PROD_ENABLED.to_vec();
    vars.extend([
        ("MIGRATION_REQUIRE_CONFIRMATION", "false"),
        ("MIGRATION_BACKUP_BEFORE", "false"),
    ]);
    let err = startup(&t, &vars).unwrap_err();
    assert_eq!(err.migration_id(), Some("002_fails_if_switch"));
    assert_eq!(
        err.to_string(),
        "migration 002_fails_if_switch failed: the fail switch is on"
    );
    assert!(logs::contains(
        "Start-up migrations failed in production; stopping"
    ));
}

#[test]
fn an_unconfirmed_plan_refuses_in_development_too_but_lets_it_start() {
    let t = TestDb::new(Backend::Sqlite);
    let outcome = startup(
        &t,
        &[
            ("ENVIRONMENT", "development"),
            ("MIGRATION_REQUIRE_CONFIRMATION", "true"),
        ],
    )
    .unwrap();
    let StartupOutcome::Failed(err) = outcome else {
        panic!("{outcome:?}");
    };
    assert!(err.is_refusal(), "{err}");
    assert_eq!(pending(&t), 2);
}

#[test]
fn an_explicit_run_ignores_auto_migrate_but_not_production_enablement() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    let migrator = file_migrator!().unwrap();
    let not_enabled = config(&[
        ("ENVIRONMENT", "production"),
        ("AUTO_MIGRATE_ON_STARTUP", "true"),
    ])
    .unwrap();
    let err = migrator.run(&db, &not_enabled).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    let enabled_no_auto = config(&[
        ("ENVIRONMENT", "production"),
        ("AUTO_MIGRATE_ON_STARTUP", "false"),
        ("ENABLE_PROD_MIGRATIONS", "true"),
        ("MIGRATION_REQUIRE_CONFIRMATION", "false"),
        ("MIGRATION_BACKUP_BEFORE", "false"),
    ])
    .unwrap();
    assert_eq!(
        migrator
            .run(&db, &enabled_no_auto)
            .unwrap()
            .applied()
            .count(),
        2
    );
}

/// The real process environment, through `migrator::run_on_startup` in a child process.
fn child(vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = common::isolated(env!("CARGO_BIN_EXE_migrator-test-runner"));
    cmd.arg("startup");
    cmd.envs(vars.iter().copied());
    let out = cmd.output().expect("run migrator-test-runner");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn from_env_reads_the_process_environment() {
    let t = TestDb::new(Backend::Postgres);
    let (code, out, err) = child(&[("DATABASE_URL", &t.url), ("ENVIRONMENT", "production")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("skipped: AUTO_MIGRATE_ON_STARTUP is not set"),
        "{out}"
    );
    assert!(
        err.contains("Migrations skipped based on environment configuration"),
        "{err}"
    );
    assert!(err.contains("postgres://postgres:***@127.0.0.1"), "{err}");
    assert!(!err.contains(common::pg_password()), "{err}");

    let (code, out, err) = child(&[("DATABASE_URL", &t.url), ("ENVIRONMENT", "staging")]);
    assert_eq!((code, out.trim()), (0, "completed: 4 applied"), "{err}");

    let (code, _, err) = child(&[("DATABASE_URL", &t.url)]);
    assert_eq!(code, 2);
    assert!(err.contains("ENVIRONMENT is not set"), "{err}");

    let (code, _, err) = child(&[
        ("DATABASE_URL", &t.url),
        ("ENVIRONMENT", "development"),
        ("AUTO_MIGRATE_ON_STARTUP", "sometimes"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid AUTO_MIGRATE_ON_STARTUP value \"sometimes\""),
        "{err}"
    );

    let (code, _, err) = child(&[("ENVIRONMENT", "development")]);
    assert_eq!(code, 2);
    assert!(err.contains("DATABASE_URL is not set"), "{err}");
}

#[test]
fn the_ddl_lock_variables_are_parsed_strictly() {
    let defaults = config(&[("ENVIRONMENT", "production")]).unwrap();
    assert_eq!(
        defaults.ddl_lock_timeout(),
        migrator::config::DEFAULT_DDL_LOCK_TIMEOUT
    );
    assert_eq!(defaults.ddl_lock_timeout().as_millis(), 5000);
    assert_eq!(defaults.ddl_lock_retries(), 10);
    let set = config(&[
        ("ENVIRONMENT", "production"),
        ("MIGRATION_DDL_LOCK_TIMEOUT_MS", " 250 "),
        ("MIGRATION_DDL_LOCK_RETRIES", "0"),
    ])
    .unwrap();
    assert_eq!(set.ddl_lock_timeout().as_millis(), 250);
    assert_eq!(set.ddl_lock_retries(), 0);
    for (variable, bad, expected) in [
        (
            "MIGRATION_DDL_LOCK_TIMEOUT_MS",
            "0",
            "whole number of milliseconds greater than 0",
        ),
        (
            "MIGRATION_DDL_LOCK_TIMEOUT_MS",
            "5s",
            "whole number of milliseconds greater than 0",
        ),
        ("MIGRATION_DDL_LOCK_RETRIES", "-1", "0 or more"),
        ("MIGRATION_DDL_LOCK_RETRIES", "many", "0 or more"),
    ] {
        let err = config(&[("ENVIRONMENT", "production"), (variable, bad)]).unwrap_err();
        assert!(err.is_configuration(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(variable) && message.contains(expected),
            "{message}"
        );
    }
    for variable in [
        "MIGRATION_DDL_LOCK_TIMEOUT_MS",
        "MIGRATION_DDL_LOCK_RETRIES",
    ] {
        assert!(
            migrator::config::vars::ALL.contains(&variable),
            "{variable}"
        );
    }
}
