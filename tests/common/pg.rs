//! A throwaway PostgreSQL cluster for one test process.

#![allow(
    unsafe_code,
    reason = "libc calls on our own child processes and descriptors; each block says why it is sound"
)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The superuser's password: tests check that it never shows in any output.
pub const PASSWORD: &str = "pg-test-Secr3t-9f2a";

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    pub port: u16,
    pub base: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// A database owned by a role of its own (see [`Cluster::role_database`]).
pub struct RoleDatabase {
    /// The role's name (also the name of the schema a test may create for it).
    pub role: String,
    /// The database's URL, connecting as the role.
    pub url: String,
    /// The database's URL, connecting as the superuser.
    pub admin_url: String,
}

/// The role only: both URLs carry passwords.
impl std::fmt::Debug for RoleDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleDatabase")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

const HOW_TO_FIX: &str = "PostgreSQL 15 is needed for these tests: install it with \
    `apt-get install -y postgresql-15` (scripts/test does this on a fresh machine), or set \
    PG_BIN to the directory that holds initdb and pg_ctl";

/// The cluster of this process, started on first use. Panics with a fix if it cannot start.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(why) => panic!("cannot start a throwaway PostgreSQL cluster: {why}\n{HOW_TO_FIX}"),
    }
}

fn find_bin() -> Result<PathBuf, String> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return if has(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PG_BIN={} holds no initdb and pg_ctl",
                dir.display()
            ))
        };
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    // Highest version first (15 before 9.6 by number).
    candidates.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.split('.').next())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|dir| has(dir)).ok_or_else(|| {
        "initdb and pg_ctl were not found in /usr/lib/postgresql/*/bin or PATH".into()
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    /// A command running `tool` of this cluster's PostgreSQL installation (as the `postgres`
    /// user when the tests run as root).
    pub fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// The path of `tool` in this cluster's PostgreSQL installation.
    pub fn tool(&self, tool: &str) -> PathBuf {
        self.bin.join(tool)
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The URL of database `name`, with the superuser's password.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// Creates a new empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::establish(&self.url("postgres"))
            .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        self.url(&name)
    }

    /// A new login role (password [`PASSWORD`], so that output checks cover it too) and a new
    /// empty database it owns, as an application's role owns its database in production. The
    /// role has no schema of its own yet: its `search_path` (`"$user", public`) resolves to
    /// `public` until `CREATE SCHEMA role AUTHORIZATION role`.
    pub fn role_database(&self) -> RoleDatabase {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let role = format!("app_{}_{n}", std::process::id());
        let name = format!("t{}_{n}", std::process::id());
        let mut admin = PgConnection::establish(&self.url("postgres"))
            .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        // Two statements: CREATE DATABASE cannot share an (implicit) transaction.
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"),
            format!("CREATE DATABASE {name} OWNER {role}"),
        ] {
            admin
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("create role and database {role}/{name}: {e}"));
        }
        RoleDatabase {
            url: format!(
                "postgres://{role}:{PASSWORD}@127.0.0.1:{}/{name}",
                self.port
            ),
            admin_url: self.url(&name),
            role,
        }
    }

    /// Makes every new session of database `url` log each statement with its bind parameters
    /// (`log_statement = 'all'`, parameters in full), as an audited production server does.
    /// Sessions already open keep their settings.
    pub fn log_all_statements(&self, url: &str) {
        let name = url.rsplit('/').next().unwrap_or_default();
        let mut admin = PgConnection::establish(&self.url("postgres"))
            .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} SET log_statement = 'all';
                 ALTER DATABASE {name} SET log_parameter_max_length = -1;"
            ))
            .unwrap_or_else(|e| panic!("log the statements of {name}: {e}"));
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("server.log")).unwrap_or_default()
    }
}

/// Runs `cmd`; an error with its output unless it succeeds.
pub fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start() -> Result<Cluster, String> {
    let bin = find_bin()?;
    let as_postgres = is_root();
    let base = std::env::temp_dir().join(format!("migrator-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", base.display()))?;
    if as_postgres {
        let uid = postgres_uid()?;
        std::os::unix::fs::chown(&base, Some(uid.0), Some(uid.1))
            .map_err(|e| format!("chown {} to postgres: {e}", base.display()))?;
    }
    let pwfile = base.join("pwfile");
    std::fs::write(&pwfile, PASSWORD).map_err(|e| format!("write pwfile: {e}"))?;
    if as_postgres {
        let uid = postgres_uid()?;
        std::os::unix::fs::chown(&pwfile, Some(uid.0), Some(uid.1))
            .map_err(|e| format!("chown pwfile: {e}"))?;
    }
    let port = free_port()?;
    let cluster = Cluster {
        port,
        base: base.clone(),
        bin,
        as_postgres,
    };
    run(
        cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
    )?;
    let options = server_options(port, &base);
    STOP.get_or_init(|| {
        (
            cluster.bin.clone(),
            cluster.data(),
            base.clone(),
            as_postgres,
        )
    });
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    run(
        cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(cluster.data())
            .arg("-l")
            .arg(base.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]),
        "pg_ctl start",
    )
    .map_err(|e| format!("{e}\nserver log:\n{}", cluster.log()))?;
    Ok(cluster)
}

/// The `postgres` options of a test server on `port` with its socket in `socket_dir` (a
/// standby takes the primary's: a hot standby needs `max_connections` at least the primary's).
pub fn server_options(port: u16, socket_dir: &Path) -> String {
    format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB",
        socket_dir.display()
    )
}

/// A free TCP port on 127.0.0.1 (free when asked; a server started at once gets it).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn postgres_uid() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| "running as root, but there is no postgres user to run the server as".into())
}

static STOP: OnceLock<(PathBuf, PathBuf, PathBuf, bool)> = OnceLock::new();

extern "C" fn stop_at_exit() {
    if let Some((bin, data, base, as_postgres)) = STOP.get() {
        let pg_ctl = bin.join("pg_ctl");
        let mut cmd = if *as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
            cmd
        } else {
            Command::new(pg_ctl)
        };
        let _ = cmd
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(base);
    }
}
