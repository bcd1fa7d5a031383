//! A PgBouncer of a test's own in front of the test cluster ([`super::cluster`]): started on
//! a free port, stopped when dropped. If the binary is missing, the test fails with a fix.

#![allow(
    unsafe_code,
    reason = "libc calls on our own child processes and descriptors; each block says why it is sound"
)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW_TO_FIX: &str = "PgBouncer is needed for these tests: install it with \
    `apt-get install -y pgbouncer` (scripts/setup does this on a fresh machine), or set \
    PGBOUNCER to the pgbouncer binary";

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug)]
pub enum PoolMode {
    /// A server connection per transaction: session state, and session advisory locks, do not
    /// stay with the client.
    Transaction,
    /// A server connection per client connection.
    Session,
}

/// A running pgbouncer.
#[derive(Debug)]
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PGBOUNCER").map(PathBuf::from) {
        assert!(
            path.is_file(),
            "PGBOUNCER={} is not a file\n{HOW_TO_FIX}",
            path.display()
        );
        return path;
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("pgbouncer"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/sbin/pgbouncer"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("pgbouncer was not found in PATH or /usr/sbin\n{HOW_TO_FIX}"))
}

impl PgBouncer {
    /// Starts pgbouncer in `mode` in front of this process's cluster (any database, the
    /// superuser with its password, SCRAM), and waits (at most 15 s) until it accepts
    /// connections.
    pub fn start(mode: PoolMode) -> PgBouncer {
        let cluster = super::cluster();
        let bin = binary();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = cluster.socket_dir().join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).expect("create the pgbouncer directory");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() == 0 };
        let (pool_mode, pool_size) = match mode {
            PoolMode::Transaction => ("transaction", 10),
            PoolMode::Session => ("session", 150),
        };
        // PgBouncer refuses to run as root: it switches to the cluster's owner.
        let user = if root { "user = postgres\n" } else { "" };
        let config = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {auth}\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 1000\n\
             ignore_startup_parameters = extra_float_digits\n\
             {user}",
            cluster.port(),
            auth = dir.join("users.txt").display(),
        );
        std::fs::write(
            dir.join("users.txt"),
            format!("\"postgres\" \"{}\"\n", super::pg_password()),
        )
        .expect("write the pgbouncer auth file");
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("write pgbouncer.ini");
        if root {
            let owner = std::fs::metadata(cluster.socket_dir()).expect("the cluster directory");
            for path in [
                dir.clone(),
                dir.join("users.txt"),
                dir.join("pgbouncer.ini"),
            ] {
                std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid()))
                    .expect("chown the pgbouncer files");
            }
        }
        let log = std::fs::File::create(dir.join("pgbouncer.log")).expect("create the log");
        let child = Command::new(&bin)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}\n{HOW_TO_FIX}", bin.display()));
        let mut bouncer = PgBouncer { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = bouncer.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "pgbouncer did not start ({exited:?}):\n{}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// `url` (a URL of the test cluster) through this pgbouncer.
    pub fn url(&self, url: &str) -> String {
        let direct = format!("127.0.0.1:{}/", super::cluster().port());
        assert!(
            url.contains(&direct),
            "not a URL of the test cluster: {url}"
        );
        url.replace(&direct, &format!("127.0.0.1:{}/", self.port))
    }

    /// pgbouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
