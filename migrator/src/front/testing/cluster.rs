//! The throwaway PostgreSQL cluster of a test binary: `initdb` and `pg_ctl` in a temporary
//! directory, listening on 127.0.0.1 on a free port, and a watchdog process that stops it and
//! removes the directory once the test binary has exited (normally, by a panic or killed).

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::foundation::error::Error;

/// What to do when the cluster cannot start.
pub(crate) const HOW_TO_FIX: &str = "#[migrator::test] needs PostgreSQL: install its server \
    (Debian: `apt-get install -y postgresql`), or set PG_BIN to the directory that holds initdb \
    and pg_ctl, or set MIGRATOR_TEST_DATABASE_URL to a server whose role may CREATE DATABASE \
    (postgres://USER:PASSWORD@HOST:PORT/postgres)";

/// The throwaway PostgreSQL cluster of this test binary (see [`postgres`](super::postgres)):
/// what a test needs beyond a database, such as its server log, its tools (`pg_basebackup`,
/// `psql`) or a second server beside it (a streaming standby, a connection pooler).
///
/// It listens on 127.0.0.1 and on a Unix socket in [`socket_dir`](Self::socket_dir); local
/// (socket) connections are trusted, TCP connections need the superuser's password
/// ([`PostgresServer::password`](super::PostgresServer::password)). Its `Debug` shows no
/// password.
pub struct PostgresCluster {
    /// Its superuser's URL (database `postgres`); holds the password: never print it.
    pub(crate) url: String,
    port: u16,
    base: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// Port and directory only: the URL holds the password.
impl std::fmt::Debug for PostgresCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCluster")
            .field("port", &self.port)
            .field("socket_dir", &self.base)
            .finish_non_exhaustive()
    }
}

impl PostgresCluster {
    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket (`-h` of the PostgreSQL tools), private to this test
    /// binary and removed with the cluster: a test may keep files of its own here (a
    /// standby's data directory, a pooler's configuration).
    pub fn socket_dir(&self) -> &Path {
        &self.base
    }

    /// The path of `tool` (`pg_basebackup`, `psql`, ...) in the cluster's PostgreSQL
    /// installation; it may not exist.
    pub fn tool(&self, tool: &str) -> PathBuf {
        self.bin.join(tool)
    }

    /// A command running `tool` of the cluster's PostgreSQL installation, as the `postgres`
    /// user when the tests run as root (PostgreSQL's server tools refuse root).
    pub fn command(&self, tool: &str) -> Command {
        let path = self.tool(tool);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// Runs `tool` of the cluster's installation (as [`command`](Self::command) makes it, its
    /// arguments added by `args`) to its end; if it fails, the error holds its output.
    pub fn run(
        &self,
        tool: &str,
        args: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Result<(), Error> {
        run(args(&mut self.command(tool)), tool).map_err(|reason| Error::Testing { reason })
    }

    /// The server's log so far (for failure messages, or to check what reached it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("server.log")).unwrap_or_default()
    }

    /// Starts the server of data directory `data` (made with this installation's tools, e.g.
    /// `pg_basebackup`) with the cluster's own options (a hot standby needs `max_connections`
    /// at least the primary's) and its socket in [`socket_dir`](Self::socket_dir), plus `extra`
    /// options (`-c name=value ...`), logging to `log`, on a free port of 127.0.0.1, and waits
    /// (up to 60 s) until it accepts connections; returns the port. A port taken by another
    /// process between choosing and binding it is replaced by another. Stop the server with
    /// `pg_ctl -D DATA stop` through [`command`](Self::command); it is not stopped for you.
    pub fn start_server(&self, data: &Path, log: &Path, extra: &str) -> Result<u16, Error> {
        start_server(|tool| self.command(tool), data, log, &self.base, extra).map_err(|why| {
            Error::Testing {
                reason: format!("cannot start a PostgreSQL server: {why}"),
            }
        })
    }
}

/// Starts a cluster. The error says what failed; add [`HOW_TO_FIX`] when showing it.
pub(crate) fn start(keep: bool, password: &str) -> Result<PostgresCluster, String> {
    let bin = find_bin()?;
    let as_postgres = is_root();
    let base = std::env::temp_dir().join(format!("migrator-test-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", base.display()))?;
    let pwfile = base.join("pwfile");
    std::fs::write(&pwfile, password).map_err(|e| format!("write the password file: {e}"))?;
    if as_postgres {
        let (uid, gid) = postgres_uid()?;
        for path in [&base, &pwfile] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to postgres: {e}", path.display()))?;
        }
    }
    let mut cluster = PostgresCluster {
        url: String::new(),
        port: 0,
        base: base.clone(),
        bin,
        as_postgres,
    };
    let data = base.join("data");
    run(
        cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
    )?;
    let _ = std::fs::remove_file(&pwfile);
    let log = base.join("server.log");
    if !keep {
        // Before the server starts: a binary killed meanwhile still leaves nothing behind.
        watchdog(
            &base,
            cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"]),
        )?;
    }
    let port = start_server(|tool| cluster.command(tool), &data, &log, &base, "")?;
    if keep {
        super::tell(&format!(
            "KEEP_TEST_DB: the throwaway PostgreSQL cluster in {} (port {port}) stays up; stop \
             it with `{}pg_ctl -D {} stop` and remove the directory",
            base.display(),
            if as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            data.display()
        ));
    }
    cluster.port = port;
    cluster.url = format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres");
    Ok(cluster)
}

/// The `postgres` options of a test server on `port` with its socket in `socket_dir`.
fn server_options(port: u16, socket_dir: &Path) -> String {
    format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB \
         -c autovacuum=off",
        socket_dir.display()
    )
}

/// `pg_ctl start` of `data` on a free port (another one when the chosen port was taken before
/// the server bound it: test binaries start their clusters side by side); returns the port.
fn start_server(
    tool: impl Fn(&str) -> Command,
    data: &Path,
    log: &Path,
    socket_dir: &Path,
    extra: &str,
) -> Result<u16, String> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let logged = std::fs::read_to_string(log).map_or(0, |l| l.len());
        let options = format!("{} {extra}", server_options(port, socket_dir));
        let started = run(
            tool("pg_ctl").arg("-D").arg(data).arg("-l").arg(log).args([
                "-o",
                options.trim_end(),
                "-w",
                "-t",
                "60",
                "start",
            ]),
            "pg_ctl start",
        );
        let Err(why) = started else {
            return Ok(port);
        };
        // pg_ctl appends: this attempt's lines only.
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let text = text.get(logged..).unwrap_or(&text);
        if attempt < ATTEMPTS && text.contains("could not bind") {
            continue;
        }
        return Err(format!("{why}\nserver log ({}):\n{text}", log.display()));
    }
}

/// Runs `cmd`; an error with its output unless it succeeds.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
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

/// Starts a shell, in a process group of its own (Ctrl-C of the tests does not stop it), that
/// waits for this process to end, then runs `stop` and removes `dir`.
fn watchdog(dir: &Path, stop: &mut Command) -> Result<(), String> {
    const SCRIPT: &str = "pid=$1; dir=$2; shift 2
        while kill -0 \"$pid\" 2>/dev/null; do sleep 1; done
        \"$@\" >/dev/null 2>&1
        rm -rf \"$dir\"";
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("migrator-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd.spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the clean-up watchdog (sh): {e}"))
}

/// A directory of the test binary that the watchdog removes once it exits (SQLite files).
pub(crate) fn temp_dir(prefix: &str, keep: bool) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if !keep {
        watchdog(&dir, Command::new("true").arg("--"))?;
    }
    Ok(dir)
}

/// A password for the cluster's superuser, unguessable enough for a server on 127.0.0.1 that
/// lives as long as the tests.
pub(crate) fn password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::new();
    for round in 0..2u8 {
        let mut hasher = state.build_hasher();
        hasher.write_u8(round);
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
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
    // Highest major version first (15 before 9.6).
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
        "initdb and pg_ctl were not found in PG_BIN, /usr/lib/postgresql/*/bin or PATH".into()
    })
}

/// Whether this process runs as root (PostgreSQL refuses to run as root).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn postgres_uid() -> Result<(u32, u32), String> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            "running as root, but there is no `postgres` user to run the server as (PostgreSQL \
             refuses root): create one (`useradd postgres`) or run the tests as another user"
                .into()
        })
}
