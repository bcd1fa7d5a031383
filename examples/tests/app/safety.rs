//! Production safety through `migrate_kroger_passwords`: backups (restorable, 0600, never
//! skipped silently, none when nothing is pending), confirmation at a real pseudo-terminal and
//! by a pinned plan, the whole production matrix with its exit codes, `mark` in production,
//! and read-only commands that change nothing. No output contains the database password.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::matrix::Cell;
use common::users::{self, assert_no_plaintext};
use common::{count, kroger_cli, pending, pg_password, texts, TestDb};
use migrator::{connection::Backend, report::StartupOutcome, Migrator};

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");
const ID: &str = "001_hash_kroger_passwords";

/// The variables a test sets; everything else about the policy is removed from the child.
fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = kroger_cli::command(url, args);
    cmd.envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

/// [`kroger_cli::run`], and the cluster's password is in neither output.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let (code, stdout, stderr) = kroger_cli::run(cmd);
    assert!(!stdout.contains(pg_password()) && !stderr.contains(pg_password()));
    (code, stdout, stderr)
}

/// A small user table, not migrated yet.
fn seeded(backend: Backend) -> TestDb {
    let t = TestDb::new(backend);
    users::seed(&t.connect(), backend, 60);
    t
}

/// The user data and schema, without migrator's own table (which a run creates, under the
/// lock, before it backs up).
fn user_data(t: &TestDb) -> Vec<String> {
    snapshot(t)
        .into_iter()
        .filter(|line| !line.contains("applied_migrations"))
        .collect()
}

/// Compares without printing megabytes of rows.
fn assert_same(a: &[String], b: &[String], what: &str) {
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    let around = |v: &[String]| -> Vec<String> {
        let i = first.unwrap_or(a.len().min(b.len()));
        v.iter()
            .skip(i)
            .take(3)
            .map(|l| l.chars().take(80).collect())
            .collect()
    };
    assert!(
        a == b,
        "{what}: {} vs {} lines, first difference at {first:?}: {:?} vs {:?}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    );
}

/// Everything a test compares: user rows and the tracking table.
fn snapshot(t: &TestDb) -> Vec<String> {
    let db = t.connect();
    let mut rows = texts(
        &db,
        "SELECT CAST(id AS TEXT) || '|' || COALESCE(email, '') || '|' || \
         COALESCE(kroger_password, 'NULL') AS v FROM user_profiles ORDER BY id",
    );
    let tracking = common::try_count(&db, "SELECT COUNT(*) AS n FROM applied_migrations");
    rows.push(format!("applied_migrations rows: {tracking:?}"));
    if tracking.is_some() {
        rows.extend(texts(
            &db,
            "SELECT migration_name || '|' || status || '|' || CAST(attempts AS TEXT) AS v \
             FROM applied_migrations",
        ));
    }
    let tables = match t.backend {
        Backend::Postgres => texts(
            &db,
            "SELECT table_name || '.' || column_name AS v FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY 1",
        ),
        _ => texts(
            &db,
            "SELECT type || ':' || name AS v FROM sqlite_master ORDER BY 1",
        ),
    };
    rows.extend(tables);
    rows
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    all.sort();
    all
}

const PROD: [(&str, &str); 2] = [
    ("ENVIRONMENT", "production"),
    ("ENABLE_PROD_MIGRATIONS", "true"),
];

#[test]
fn a_postgres_backup_restores_to_identical_tables_and_the_password_stays_out_of_argv() {
    let t = seeded(Backend::Postgres);
    let before = user_data(&t);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_string_lossy().into_owned();
    // A pg_dump wrapper records what it was given, then runs the real one.
    let spy = backups.path().join("spy");
    std::fs::create_dir(&spy).unwrap();
    let wrapper = spy.join("pg_dump");
    let record = spy.join("record");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\nprintf 'PGPASSWORD=%s\\n' \"$PGPASSWORD\" >> '{record}'\nexec pg_dump \"$@\"\n",
            record = record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = PROD.to_vec();
    let wrapper_path = wrapper.to_string_lossy().into_owned();
    env.extend([
        ("MIGRATION_CONFIRM", ID),
        ("MIGRATION_BACKUP_DIR", dir.as_str()),
        ("MIGRATION_PG_DUMP", wrapper_path.as_str()),
    ]);
    let (code, out, err) = run(&mut cli(&t.url, &["up"], &env));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Backup written: "), "{err}");
    let dumps: Vec<PathBuf> = files(backups.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dump"))
        .collect();
    assert_eq!(dumps.len(), 1, "{out}");
    let dump = &dumps[0];
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("-before-{ID}.dump")), "{name}");
    assert!(
        name.starts_with(t.url.rsplit('/').next().unwrap()),
        "{name}"
    );
    assert!(
        out.contains(&format!("backup written: {}", dump.display())),
        "{out}"
    );
    let mode = std::fs::metadata(dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!files(backups.path())
        .iter()
        .any(|p| p.to_string_lossy().ends_with(".partial")));

    let recorded = std::fs::read_to_string(&record).unwrap();
    let (args, env_line) = recorded.rsplit_once("PGPASSWORD=").unwrap();
    assert!(
        !args.contains(pg_password()),
        "the password is in pg_dump's arguments: {args}"
    );
    assert!(args.contains("--format=custom"), "{args}");
    assert_eq!(
        env_line.trim(),
        pg_password(),
        "the password reaches pg_dump by PGPASSWORD"
    );

    // Restore into a fresh database: the tables and rows from before the migration.
    let restored = TestDb::new(Backend::Postgres);
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "-d", &restored.url])
        .arg(dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(&user_data(&restored), &before, "restored");
    assert_eq!(
        count(
            &restored.connect(),
            "SELECT COUNT(*) AS n FROM applied_migrations"
        ),
        0
    );
    assert!(
        user_data(&t) != before,
        "the live database was migrated after the backup"
    );
}

#[test]
fn a_sqlite_backup_opens_and_matches() {
    let t = seeded(Backend::Sqlite);
    let before = user_data(&t);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_string_lossy().into_owned();
    let mut env = PROD.to_vec();
    env.extend([
        ("MIGRATION_CONFIRM", ID),
        ("MIGRATION_BACKUP_DIR", dir.as_str()),
    ]);
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &env));
    assert_eq!(code, 0, "{err}");
    let copies = files(backups.path());
    assert_eq!(copies.len(), 1);
    assert!(copies[0]
        .to_string_lossy()
        .ends_with(&format!("-before-{ID}.sqlite3")));
    assert_eq!(
        std::fs::metadata(&copies[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let copy = TestDb::at(format!("sqlite://{}", copies[0].display()), Backend::Sqlite);
    assert_same(&user_data(&copy), &before, "the SQLite backup");
}

#[test]
fn a_failed_backup_migrates_nothing_and_says_why() {
    for backend in common::BACKENDS {
        let t = seeded(backend);
        let before = snapshot(&t);
        let scratch = tempfile::tempdir().unwrap();
        let not_a_dir = scratch.path().join("a-file");
        std::fs::write(&not_a_dir, "x").unwrap();
        let unwritable = not_a_dir.join("backups").to_string_lossy().into_owned();
        let mut env = PROD.to_vec();
        env.extend([
            ("MIGRATION_CONFIRM", ID),
            ("MIGRATION_BACKUP_DIR", unwritable.as_str()),
        ]);
        let (code, _, err) = run(&mut cli(&t.url, &["up"], &env));
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("backup failed, nothing was migrated: cannot create the backup directory"),
            "{err}"
        );
        assert_eq!(
            snapshot(&t)[..60],
            before[..60],
            "{backend}: nothing migrated"
        );
        assert_eq!(
            count(
                &t.connect(),
                "SELECT COUNT(*) AS n FROM applied_migrations WHERE status = 'success'"
            ),
            0
        );
    }
    // pg_dump missing.
    let t = seeded(Backend::Postgres);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_string_lossy().into_owned();
    let mut env = PROD.to_vec();
    env.extend([
        ("MIGRATION_CONFIRM", ID),
        ("MIGRATION_BACKUP_DIR", dir.as_str()),
        ("MIGRATION_PG_DUMP", "/nonexistent/bin/pg_dump"),
    ]);
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &env));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot run /nonexistent/bin/pg_dump"), "{err}");
    assert!(err.contains("MIGRATION_PG_DUMP"), "{err}");
    assert!(files(scratch.path()).is_empty(), "no partial file is left");
    let status = Migrator::from_registry()
        .unwrap()
        .status(&t.connect())
        .unwrap();
    assert!(status.migrations.iter().all(|m| m.row.is_none()));
}

#[test]
fn nothing_pending_means_no_backup() {
    let t = seeded(Backend::Sqlite);
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_string_lossy().into_owned();
    let mut env = PROD.to_vec();
    env.extend([
        ("MIGRATION_CONFIRM", ID),
        ("MIGRATION_BACKUP_DIR", dir.as_str()),
    ]);
    assert_eq!(run(&mut cli(&t.url, &["up"], &env)).0, 0);
    assert_eq!(files(backups.path()).len(), 1);
    let (code, out, _) = run(&mut cli(&t.url, &["up"], &env));
    assert_eq!(
        (code, out.trim()),
        (0, "Nothing to do: no pending migrations.")
    );
    assert_eq!(files(backups.path()).len(), 1, "no second backup");
}

#[test]
fn a_pinned_plan_must_match_exactly() {
    let t = seeded(Backend::Sqlite);
    let env = [
        ("ENVIRONMENT", "production"),
        ("ENABLE_PROD_MIGRATIONS", "true"),
        ("MIGRATION_BACKUP_BEFORE", "false"),
    ];
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &env));
    assert_eq!(code, 3, "missing: {err}");
    assert!(
        err.contains(&format!("set MIGRATION_CONFIRM={ID}")),
        "{err}"
    );
    assert!(
        err.contains("Plan: 1 migration(s) for production database test"),
        "{err}"
    );
    assert!(
        err.contains(&format!("  {ID} (non-transactional)")),
        "{err}"
    );
    let mut differing = env.to_vec();
    differing.push((
        "MIGRATION_CONFIRM",
        "001_hash_kroger_passwords,002_not_reviewed",
    ));
    let (code, _, err) = run(&mut cli(&t.url, &["up"], &differing));
    assert_eq!(code, 3, "differing: {err}");
    assert!(
        err.contains("does not list exactly the pending migrations"),
        "{err}"
    );
    assert!(
        err.contains(&format!("set MIGRATION_CONFIRM={ID}")),
        "{err}"
    );
    assert_eq!(pending(&t), 1);
    let mut matching = env.to_vec();
    matching.push(("MIGRATION_CONFIRM", ID));
    let (code, out, err) = run(&mut cli(&t.url, &["up"], &matching));
    assert_eq!(code, 0, "matching: {err}");
    assert!(out.contains(&format!("applied {ID}")));
    assert!(err.contains("Plan confirmed by MIGRATION_CONFIRM"), "{err}");
}

fn prompt(answer: &str) -> (TestDb, i32) {
    let t = seeded(Backend::Sqlite);
    let mut cmd = common::isolated(CLI);
    cmd.arg("up")
        .env("DATABASE_URL", &t.url)
        .env("ENVIRONMENT", "production")
        .env("ENABLE_PROD_MIGRATIONS", "true")
        .env("MIGRATION_BACKUP_BEFORE", "false")
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn");
    let mut session = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
    session
        .exp_string(&format!("  {ID} (non-transactional)"))
        .unwrap();
    session
        .exp_string("Apply 1 migration(s) to production database test? [y/N]")
        .unwrap();
    session.send_line(answer).unwrap();
    session.exp_eof().unwrap();
    let status = session.process().wait().unwrap();
    let code = match status {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    };
    (t, code)
}

#[test]
fn an_operator_confirms_at_a_real_terminal() {
    let (t, code) = prompt("y");
    assert_eq!(code, 0);
    assert_eq!(pending(&t), 0);
    let (t, code) = prompt("n");
    assert_eq!(code, 3);
    assert_eq!(pending(&t), 1);
}

#[test]
fn up_yes_confirms_for_the_operator() {
    let t = seeded(Backend::Sqlite);
    let env = [
        ("ENVIRONMENT", "production"),
        ("ENABLE_PROD_MIGRATIONS", "true"),
        ("MIGRATION_BACKUP_BEFORE", "false"),
    ];
    let (code, _, err) = run(&mut cli(&t.url, &["up", "--yes"], &env));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Plan confirmed up front (--yes)"), "{err}");
}

/// The production matrix of `up`, with the exit code of each cell.
#[test]
fn the_production_matrix_of_up() {
    for cell in Cell::all() {
        let t = seeded(Backend::Sqlite);
        let backups = tempfile::tempdir().unwrap();
        let dir = backups.path().to_string_lossy().into_owned();
        let (code, _, err) = run(&mut cli(&t.url, &["up"], &cell.vars(&dir)));
        // AUTO_MIGRATE_ON_STARTUP never matters to an explicit `up`.
        let expected = match (cell.enable, cell.confirm) {
            (Some("true"), Some("false")) => 0,
            (Some("true"), None) => 3, // confirmation required, no terminal, no pinned plan
            _ => 3,                    // production not enabled
        };
        assert_eq!(code, expected, "{cell:?}: {err}");
        let backed_up = !files(backups.path()).is_empty();
        assert_eq!(backed_up, code == 0 && cell.backup.is_none(), "{cell:?}");
        assert_eq!(pending(&t), usize::from(code != 0), "{cell:?}");
        if cell.enable != Some("true") {
            assert!(err.contains("ENABLE_PROD_MIGRATIONS"), "{cell:?}: {err}");
        }
    }
}

/// The same matrix at start-up (`run_on_startup`), where AUTO_MIGRATE_ON_STARTUP does matter.
#[test]
fn the_production_matrix_at_start_up() {
    smart_meal_planner::kroger::set_hash_params(migrator::password::Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    });
    for cell in Cell::all() {
        let t = seeded(Backend::Sqlite);
        let backups = tempfile::tempdir().unwrap();
        let dir = backups.path().to_string_lossy().into_owned();
        let config = cell.config(&dir);
        let outcome = Migrator::from_registry()
            .unwrap()
            .run_on_startup(&t.connect(), &config);
        match (cell.enable, cell.auto, cell.confirm) {
            (Some("true"), Some("true"), Some("false")) => {
                let Ok(StartupOutcome::Completed(report)) = outcome else {
                    panic!("{cell:?}: {outcome:?}");
                };
                assert_eq!(report.applied().count(), 1, "{cell:?}");
                assert_eq!(report.backup.is_some(), cell.backup.is_none(), "{cell:?}");
            }
            (Some("true"), Some("true"), None) => {
                let err = outcome.unwrap_err();
                assert!(err.is_refusal(), "{cell:?}: {err}");
                assert_eq!(pending(&t), 1, "{cell:?}");
            }
            _ => {
                assert!(
                    matches!(outcome, Ok(StartupOutcome::Skipped { .. })),
                    "{cell:?}: {outcome:?}"
                );
                assert_eq!(pending(&t), 1, "{cell:?}");
            }
        }
    }
}

#[test]
fn mark_in_production_needs_confirmation() {
    let t = seeded(Backend::Sqlite);
    let env = [("ENVIRONMENT", "production")];
    let (code, _, err) = run(&mut cli(&t.url, &["mark", ID, "skipped"], &env));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("needs confirmation"), "{err}");
    assert_eq!(
        common::try_count(&t.connect(), "SELECT COUNT(*) AS n FROM applied_migrations"),
        None
    );
    let (code, out, err) = run(&mut cli(&t.url, &["mark", ID, "skipped", "--yes"], &env));
    assert_eq!(
        (code, out.trim()),
        (0, "001_hash_kroger_passwords marked skipped"),
        "{err}"
    );
    let (code, out, _) = run(&mut cli(&t.url, &["mark", ID, "pending", "--yes"], &env));
    assert_eq!(
        (code, out.trim()),
        (0, "001_hash_kroger_passwords marked pending")
    );
    assert_eq!(
        count(&t.connect(), "SELECT COUNT(*) AS n FROM applied_migrations"),
        0
    );
}

#[test]
fn plan_status_and_dry_run_change_nothing() {
    for backend in common::BACKENDS {
        let t = seeded(backend);
        let before = snapshot(&t);
        for env in [
            vec![("ENVIRONMENT", "development")],
            vec![("ENVIRONMENT", "production")],
            vec![
                ("ENVIRONMENT", "production"),
                ("ENABLE_PROD_MIGRATIONS", "true"),
            ],
        ] {
            let (code, out, err) = run(&mut cli(&t.url, &["plan"], &env));
            assert_eq!(code, 0, "{err}");
            assert!(
                out.contains(&format!("  {ID} (non-transactional)")),
                "{out}"
            );
            let (code, _, _) = run(&mut cli(&t.url, &["plan", "--json"], &env));
            assert_eq!(code, 0);
            let (code, _, _) = run(&mut cli(&t.url, &["status"], &env));
            assert_eq!(code, 0);
            let (code, out, err) = run(&mut cli(&t.url, &["up", "--dry-run"], &env));
            assert_eq!(code, 0, "{err}");
            assert!(out.contains(&format!("{ID}: not rehearsable")), "{out}");
        }
        assert_same(
            &snapshot(&t),
            &before,
            "plan, status and dry runs changed nothing",
        );
        let (_, out, _) = run(&mut cli(
            &t.url,
            &["plan"],
            &[("ENVIRONMENT", "production")],
        ));
        assert!(out.contains("BLOCKS  ENABLE_PROD_MIGRATIONS"), "{out}");
        assert!(out.contains("`up` would refuse."), "{out}");
        let (_, out, _) = run(&mut cli(
            &t.url,
            &["plan", "--json"],
            &[
                ("ENVIRONMENT", "production"),
                ("ENABLE_PROD_MIGRATIONS", "true"),
            ],
        ));
        let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(plan["up_allowed"], false);
        let blocking: Vec<&str> = plan["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["allows"] == false)
            .map(|d| d["variable"].as_str().unwrap())
            .collect();
        assert_eq!(blocking, ["MIGRATION_REQUIRE_CONFIRMATION"]);
        assert_no_plaintext(&out, 60);
    }
}
