//! The integration tests of the migrations in `migrator_tests::fixtures` (also run by the
//! `migrator-test-runner` binary in other processes): exactly that set is registered here.

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod linking;
mod search_path;

/// The runner binary: migrates `DATABASE_URL` with exactly `migrator_tests::fixtures`,
/// printing `applied ID` for each migration it applied.
const RUNNER: &str = env!("CARGO_BIN_EXE_migrator-test-runner");

/// Starts one runner per URL, all at once (isolated from the test's environment), checks that
/// each succeeded without showing the cluster's password, and returns the IDs they applied,
/// sorted.
fn runners_at_once<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    use std::process::Stdio;
    let children: Vec<_> = urls
        .into_iter()
        .map(|url| {
            common::isolated(RUNNER)
                .env("DATABASE_URL", url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start migrator-test-runner")
        })
        .collect();
    let mut applied = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "runner failed: {stderr}");
        assert!(!stderr.contains(common::pg_password()), "{stderr}");
        applied.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("applied ").map(str::to_owned)),
        );
    }
    applied.sort();
    applied
}
