//! The Kubernetes manifests in examples/k8s/ against the app they deploy: every probe path
//! answers on the demo server (`/livez` with 200 while start-up migrations wait on another
//! process's lock, when `/health` answers 503), every container runs a real binary of the app
//! with a subcommand that exists, and every variable they set is one the code reads.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::http;
use common::server::start;
use migrator::{connection::LockGuard, Database};
use yaml_rust2::{Yaml, YamlLoader};

const CLI: &str = env!("CARGO_BIN_EXE_migrate_kroger_passwords");

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

/// Every YAML document of examples/k8s/, with its file name.
fn documents() -> Vec<(String, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("examples/k8s/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in examples/k8s/");
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        assert!(!parsed.is_empty(), "{name} has no document");
        docs.extend(parsed.into_iter().map(|doc| (name.clone(), doc)));
    }
    docs
}

/// Every container (init containers too) of a Job's or Deployment's pod template.
fn containers(doc: &Yaml) -> Vec<&Yaml> {
    let spec = &doc["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|key| spec[*key].as_vec())
        .flatten()
        .collect()
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec().map_or_else(Vec::new, |items| {
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .unwrap_or_else(|| panic!("not a string: {item:?}"))
                    .to_owned()
            })
            .collect()
    })
}

/// What the manifests name, collected from every container.
#[derive(Default)]
struct Named {
    probe_paths: BTreeSet<String>,
    /// (where, command and args)
    commands: Vec<(String, Vec<String>)>,
    /// (where, variable)
    env: Vec<(String, String)>,
}

fn named() -> Named {
    let mut named = Named::default();
    for (file, doc) in documents() {
        let kind = doc["kind"].as_str().unwrap_or("?").to_owned();
        let found = containers(&doc);
        assert!(!found.is_empty(), "{file}: {kind} has no containers");
        for container in found {
            let at = format!(
                "{file}: {kind} container {}",
                container["name"].as_str().unwrap_or("?")
            );
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let get = &container[probe]["httpGet"];
                if get.is_badvalue() {
                    continue;
                }
                let path = get["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: {probe} without a path"));
                named.probe_paths.insert(path.to_owned());
            }
            let mut command = strings(&container["command"]);
            command.extend(strings(&container["args"]));
            assert!(!command.is_empty(), "{at}: no command");
            named.commands.push((at.clone(), command));
            if let Some(env) = container["env"].as_vec() {
                for var in env {
                    let name = var["name"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{at}: env entry without a name"));
                    named.env.push((at.clone(), name.to_owned()));
                }
            }
        }
    }
    named
}

#[test]
fn the_manifests_probe_liveness_on_livez_and_readiness_on_health() {
    for (file, doc) in documents() {
        for container in containers(&doc) {
            if container["readinessProbe"].is_badvalue() {
                continue;
            }
            let path = |probe: &str| container[probe]["httpGet"]["path"].as_str();
            assert_eq!(path("livenessProbe"), Some("/livez"), "{file}");
            assert_eq!(path("startupProbe"), Some("/livez"), "{file}");
            assert_eq!(path("readinessProbe"), Some("/health"), "{file}");
        }
    }
}

#[test]
fn every_probe_path_answers_and_livez_is_200_while_migrations_wait_on_the_lock() {
    let paths = named().probe_paths;
    assert!(paths.contains("/livez"), "{paths:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smart-meal-planner.db");
    // Another process's migration holds the lock: the server's start-up migrations wait.
    let db = Database::connect(&format!("sqlite://{}", file.display())).unwrap();
    let guard = LockGuard::acquire(&db, Duration::from_secs(5)).unwrap();
    let mut server = start(dir.path(), &[("MIGRATION_LOCK_TIMEOUT_SECS", "600")]);

    let livez = (0..2400)
        .find_map(|_| {
            if let Some(exit) = server.child.try_wait().unwrap() {
                panic!("the server exited ({exit}):\n{}", server.log());
            }
            let answer = http::get(server.port, "/livez");
            if answer.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            answer
        })
        .unwrap_or_else(|| panic!("/livez never answered:\n{}", server.log()));
    assert_eq!(livez.status, 200, "{}", livez.body);
    // Still waiting on the lock (it has not been released): not ready, but alive.
    std::thread::sleep(Duration::from_millis(500));
    for path in &paths {
        let r = http::get(server.port, path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_ne!(r.status, 404, "{path} does not exist: {}", r.body);
        if path == "/health" {
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(r.json()["status"], "migrating", "{}", r.body);
        } else {
            assert_eq!(r.status, 200, "{path} while migrating: {}", r.body);
        }
    }

    drop(guard);
    server.wait_for("ok");
    for path in &paths {
        let r = http::get(server.port, path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(r.status, 200, "{path} after start-up: {}", r.body);
    }
}

/// The app's binaries: examples/src/bin/*.rs.
fn app_binaries() -> BTreeSet<String> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    std::fs::read_dir(bin)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_container_runs_a_real_binary_and_subcommand() {
    let binaries = app_binaries();
    assert!(
        binaries.contains("migrate_kroger_passwords") && binaries.contains("smart-meal-planner"),
        "{binaries:?}"
    );
    let commands = named().commands;
    assert!(
        commands
            .iter()
            .any(|(_, c)| c[0] == "migrate_kroger_passwords"),
        "no manifest runs the migration command"
    );
    for (at, command) in commands {
        assert!(
            binaries.contains(&command[0]),
            "{at}: {command:?} names no binary of the app ({binaries:?})"
        );
        match command[0].as_str() {
            "migrate_kroger_passwords" => {
                let sub = command
                    .get(1)
                    .unwrap_or_else(|| panic!("{at}: no subcommand"));
                let out = common::isolated(CLI)
                    .args([sub.as_str(), "--help"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{at}: `migrate_kroger_passwords {sub} --help` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                // The flags are the ones that subcommand takes.
                let mut run = vec![sub.as_str()];
                run.extend(command[2..].iter().map(String::as_str));
                run.push("--help");
                let out = common::isolated(CLI)
                    .args(&run)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{at}: `migrate_kroger_passwords {}` is not accepted: {}",
                    run.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // The server takes no arguments.
            _ => assert_eq!(command.len(), 1, "{at}: {command:?}"),
        }
    }
}

#[test]
fn every_variable_set_is_one_the_code_reads() {
    let read: BTreeSet<&str> = migrator::config::vars::ALL
        .iter()
        .chain(migrator::password::vars::ALL.iter())
        .chain(smart_meal_planner::demo::VARS.iter())
        .copied()
        .collect();
    let env = named().env;
    assert!(
        env.iter().any(|(_, name)| name == "DATABASE_URL"),
        "no manifest sets DATABASE_URL"
    );
    for (at, name) in env {
        assert!(
            read.contains(name.as_str()),
            "{at}: {name} is not a variable the app reads ({read:?})"
        );
    }
}
