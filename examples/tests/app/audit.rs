//! Operator commands are audited (PostgreSQL and SQLite): `mark` and `backfill
//! pause|resume|cancel` from the CLI write a `migrator_audit` row naming the OS user and host,
//! the action, its target and its outcome (refusals too), and an `Operator action:` log line.

use crate::common;

use common::kroger_cli::{cli, run, scheduled};
use migrator::connection::Backend;

fn audited(backend: Backend) {
    let (t, db) = scheduled(backend, 30);
    let os = [("USER", "alice")];
    for (args, expect) in [
        (
            vec!["backfill", "pause", "hash_kroger_passwords"],
            "is paused",
        ),
        (
            vec!["backfill", "pause", "no_such_backfill"],
            "no such backfill",
        ),
        (
            vec!["backfill", "resume", "hash_kroger_passwords"],
            "is active",
        ),
        (
            vec!["mark", "001_hash_kroger_passwords", "skipped"],
            "marked skipped",
        ),
    ] {
        let (code, out, err) = run(&mut cli(&t.url, &args, &os));
        assert!(
            out.contains(expect) || err.contains(expect),
            "{args:?} ({code}):\n{out}\n{err}"
        );
        assert!(
            err.contains("Operator action: os:alice@"),
            "{args:?}: no log line:\n{err}"
        );
    }
    let entries = migrator::audit::list(&db, 10).unwrap();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .rev()
        .map(|e| (e.action.clone(), e.target.clone(), e.outcome.clone()))
        .collect();
    assert_eq!(seen.len(), 4, "{entries:#?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str(), seen[0].2.as_str()),
        ("backfill pause", "hash_kroger_passwords", "paused")
    );
    assert!(
        seen[1].2.starts_with("refused: ") && seen[1].1 == "no_such_backfill",
        "{seen:?}"
    );
    assert_eq!(seen[2].2, "resumed");
    assert_eq!(
        (seen[3].0.as_str(), seen[3].2.as_str()),
        ("mark", "marked skipped")
    );
    let host = gethostname();
    for e in &entries {
        assert_eq!(e.actor, format!("os:alice@{host}"), "{e:?}");
        assert!(!e.at.is_empty() && e.process.is_some(), "{e:?}");
    }
    // Operators query it with plain SQL.
    assert_eq!(
        common::count(
            &db,
            "SELECT COUNT(*) AS n FROM migrator_audit WHERE actor LIKE 'os:alice@%'"
        ),
        4
    );
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

both!(audited);
