//! A real streaming standby of this process's test cluster (`migrator::testing::postgres`): a
//! `pg_basebackup -R -X stream` copy started on its own port, streaming WAL from the primary
//! over the primary's Unix socket (the `replication` lines `initdb` writes into `pg_hba.conf`
//! trust local connections; `wal_level = replica` and `max_wal_senders = 10` are PostgreSQL's
//! defaults). Its `cluster_name` is its name, so the primary's `pg_stat_replication` shows it
//! as `application_name`.
//!
//! One standby at a time per test process: [`Standby::start`] waits for the previous one to be
//! dropped, because a standby whose replay is paused holds back every backfill throttled on
//! replica lag against the primary (all tests of the binary share one cluster).
//!
//! If it cannot be made (no `pg_basebackup`, a failed copy, a standby that does not stream),
//! the test fails with a message saying how to fix it; nothing is skipped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use migrator::connection::Count;

use migrator::testing::PostgresCluster;

const HOW_TO_FIX: &str = "pg_basebackup (package postgresql-client-15, a dependency of \
    postgresql-15) is needed to make a streaming standby: run scripts/setup, or \
    `apt-get install -y postgresql-client-15`";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static STANDBYS: AtomicUsize = AtomicUsize::new(0);

/// A running standby; dropping it stops it (immediate shutdown) and removes its directory.
#[derive(Debug)]
pub struct Standby {
    /// Its `cluster_name`: the `application_name` the primary shows for it.
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    primary: &'static PostgresCluster,
    password: &'static str,
    dir: PathBuf,
    _one: MutexGuard<'static, ()>,
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = Text)]
    v: String,
}

impl Standby {
    /// Its row in the primary's replica lag ([`migrator::backfill::replica_lag`] on `conn`, a
    /// connection to the primary), if the primary lists it.
    pub fn lag(
        &self,
        conn: &mut migrator::AnyConnection,
    ) -> Option<migrator::backfill::ReplicaLag> {
        migrator::backfill::replica_lag(conn)
            .expect("replica_lag")
            .into_iter()
            .find(|lag| lag.name == self.name)
    }

    /// Copies the test cluster with `pg_basebackup`, starts the copy as a hot standby and waits
    /// (up to 60 s) until the primary shows it streaming. Panics with a fix if it cannot.
    pub fn start() -> Standby {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let server = migrator::testing::postgres().unwrap_or_else(|e| panic!("{e}"));
        let primary = server
            .cluster()
            .unwrap_or_else(|e| panic!("cannot make a streaming standby: {e}"));
        let name = format!(
            "standby{}_{}",
            std::process::id(),
            STANDBYS.fetch_add(1, Ordering::Relaxed)
        );
        if !primary.tool("pg_basebackup").is_file() {
            panic!(
                "cannot make a streaming standby: {} does not exist\n{HOW_TO_FIX}",
                primary.tool("pg_basebackup").display()
            );
        }
        let dir = primary.socket_dir().join(&name);
        let mut standby = Standby {
            name,
            port: 0,
            primary,
            password: server.password(),
            dir,
            _one: guard,
        };
        // Through the primary's socket directory: local replication connections are trusted.
        let copied = primary.run("pg_basebackup", |cmd| {
            cmd.arg("-D")
                .arg(&standby.dir)
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
                .arg("-h")
                .arg(primary.socket_dir())
                .args(["-p", &primary.port().to_string(), "-U", "postgres"])
        });
        if let Err(why) = copied {
            panic!(
                "cannot make a streaming standby: {why}\nprimary's log:\n{}\n{HOW_TO_FIX}",
                primary.log()
            );
        }
        let extra = format!("-c cluster_name={} -c hot_standby=on", standby.name);
        match primary.start_server(&standby.dir, &standby.log_path(), &extra) {
            Ok(port) => standby.port = port,
            Err(why) => panic!(
                "cannot start the streaming standby {}: {why}\nits log:\n{}",
                standby.name,
                standby.log()
            ),
        }
        standby.wait_until(Duration::from_secs(60), "streaming", |s| {
            s.streaming_rows() == 1
        });
        standby
    }

    /// The URL of database `name` on the standby (read-only), as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        )
    }

    /// Pauses WAL replay (`pg_wal_replay_pause()`) and waits until it is paused: the standby
    /// still receives WAL but applies none, so it falls behind with every write.
    pub fn pause_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_pause()");
        self.wait_until(Duration::from_secs(30), "replay paused", |s| {
            s.standby_text("SELECT pg_get_wal_replay_pause_state()::text AS v") == "paused"
        });
    }

    /// Resumes WAL replay (`pg_wal_replay_resume()`).
    pub fn resume_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_resume()");
    }

    /// Waits (up to 60 s) until the primary shows the standby has replayed all WAL written so
    /// far.
    pub fn wait_caught_up(&self) {
        let target = self.primary_text("SELECT pg_current_wal_lsn()::text AS v");
        let sql = format!(
            "SELECT COUNT(*) AS n FROM pg_stat_replication WHERE application_name = '{}' \
             AND replay_lsn >= '{target}'::pg_lsn",
            self.name
        );
        self.wait_until(Duration::from_secs(60), "caught up", |s| {
            s.primary_count(&sql) == 1
        });
    }

    /// The standby's server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.primary.socket_dir().join(format!("{}.log", self.name))
    }

    fn streaming_rows(&self) -> i64 {
        self.primary_count(&format!(
            "SELECT COUNT(*) AS n FROM pg_stat_replication WHERE application_name = '{}' \
             AND state = 'streaming'",
            self.name
        ))
    }

    fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&Standby) -> bool) {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > limit {
                panic!(
                    "standby {} not {what} within {limit:?}\nstandby's log:\n{}\nprimary's \
                     log:\n{}",
                    self.name,
                    self.log(),
                    self.primary.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn primary_conn(&self) -> PgConnection {
        let url = format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password,
            self.primary.port()
        );
        PgConnection::establish(&url).unwrap_or_else(|e| panic!("connect to the primary: {e}"))
    }

    fn primary_count(&self, sql: &str) -> i64 {
        let row: Count = diesel::sql_query(sql)
            .get_result(&mut self.primary_conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }

    fn primary_text(&self, sql: &str) -> String {
        let row: TextValue = diesel::sql_query(sql)
            .get_result(&mut self.primary_conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.v
    }

    fn standby_conn(&self) -> PgConnection {
        PgConnection::establish(&self.url("postgres")).unwrap_or_else(|e| {
            panic!(
                "connect to standby {}: {e}\nits log:\n{}",
                self.name,
                self.log()
            )
        })
    }

    fn standby_text(&self, sql: &str) -> String {
        let row: TextValue = diesel::sql_query(sql)
            .get_result(&mut self.standby_conn())
            .unwrap_or_else(|e| panic!("{sql} on standby {}: {e}", self.name));
        row.v
    }

    fn on_standby(&self, sql: &str) {
        self.standby_conn()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql} on standby {}: {e}", self.name));
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self
            .primary
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.log_path());
    }
}
