//! The throwaway PostgreSQL (the test suite's cluster) with a streaming standby, the app's
//! role and database, the seeded `user_profiles`, and the trigger that counts hash writes.

use std::path::PathBuf;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use migrator::testing::PostgresCluster;
use migrator_benches::pg;
use migrator_benches::standby::Standby;

use crate::{note, Plan};

/// The app's role: its sessions get the role-level `idle_in_transaction_session_timeout`.
pub(crate) const ROLE: &str = "soak_app";
/// The database.
pub(crate) const DB: &str = "soak";

/// Everything the run needs from its environment.
pub(crate) struct Env {
    pub cluster: &'static PostgresCluster,
    pub standby: Standby,
    /// The app's URL (role [`ROLE`], the test server's password, checked never to show).
    pub app_url: String,
    /// The superuser's URL of [`DB`] (faults and checks).
    pub admin_url: String,
    /// Where the demo logs go (`target/soak`).
    pub dir: PathBuf,
    /// Every seeded and every newly set password contains it: found anywhere, it is a leak.
    pub secret_marker: String,
}

/// Runs `f`, turning a panic of the test helpers (which explain what to install) into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    std::panic::catch_unwind(f).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown error".into());
        format!("{what}: {why}")
    })
}

/// Connects to `url`.
pub(crate) fn connect(url: &str) -> Result<PgConnection, String> {
    PgConnection::establish(url).map_err(|e| format!("cannot connect to the soak database: {e}"))
}

/// Runs `sql` on `url`.
pub(crate) fn exec(url: &str, sql: &str) -> Result<(), String> {
    connect(url)?.batch_execute(sql).map_err(|e| {
        format!(
            "{}: {e}",
            sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
        )
    })
}

impl Env {
    pub(crate) fn start(plan: &Plan, start: Instant) -> Result<Env, String> {
        note(
            start,
            "starting a throwaway PostgreSQL and a streaming standby",
        );
        let cluster = guarded("the throwaway PostgreSQL cluster", pg::cluster)?;
        let standby = guarded("the streaming standby", Standby::start)?;
        let server = pg::server();
        let app_url = format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{DB}",
            server.password(),
            cluster.port()
        );
        let admin_url = server.url(DB).map_err(|e| e.to_string())?;
        let root = server.url("postgres").map_err(|e| e.to_string())?;
        // A login role of its own (pg_monitor: it reads the replicas' WAL positions) owning
        // the database, as an application's role does in production.
        exec(
            &root,
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD '{}'; GRANT pg_monitor TO {ROLE};",
                server.password()
            ),
        )?;
        exec(&root, &format!("CREATE DATABASE {DB} OWNER {ROLE}"))?;
        // Kept after the run (for a failed check), emptied at the next.
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let env = Env {
            cluster,
            standby,
            app_url,
            admin_url,
            dir,
            secret_marker: format!(
                "kp{:x}z",
                plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24
            ),
        };
        note(start, &format!("seeding {} users", plan.rows));
        env.seed(plan)?;
        Ok(env)
    }

    /// The plaintext seeded for user `id` (`None` for every 97th).
    pub(crate) fn seeded(&self, id: i64) -> Option<String> {
        (id % 97 != 0).then(|| format!("{}-{id}", self.secret_marker))
    }

    fn seed(&self, plan: &Plan) -> Result<(), String> {
        // As the app's role: it owns the table, as in production. The trigger records every
        // change of the hash column, by whom: the app's two statements start with
        // `UPDATE user_profiles SET kroger_password_hash = $1`; anything else is the backfill.
        // (The column does not exist yet: 001 adds it; to_jsonb reads it when it is there.)
        exec(
            &self.app_url,
            &format!(
                "CREATE TABLE user_profiles (
                    id INTEGER PRIMARY KEY,
                    email TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    kroger_password TEXT
                 );
                 INSERT INTO user_profiles (id, email, kroger_password)
                 SELECT g, 'user' || g || '@example.com',
                        CASE WHEN g % 97 = 0 THEN NULL ELSE '{marker}-' || g END
                 FROM generate_series(1, {rows}) AS g;
                 CREATE TABLE soak_hash_writes (
                    seq BIGSERIAL PRIMARY KEY,
                    user_id INTEGER NOT NULL,
                    by_backfill BOOLEAN NOT NULL,
                    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
                 );
                 CREATE FUNCTION soak_count_hash_writes() RETURNS trigger AS $$
                 BEGIN
                    IF to_jsonb(OLD) -> 'kroger_password_hash'
                       IS DISTINCT FROM to_jsonb(NEW) -> 'kroger_password_hash' THEN
                        INSERT INTO soak_hash_writes (user_id, by_backfill)
                        VALUES (NEW.id, current_query() NOT LIKE
                                'UPDATE user_profiles SET kroger_password_hash = $1%');
                    END IF;
                    RETURN NEW;
                 END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER soak_count_hash_writes AFTER UPDATE ON user_profiles
                 FOR EACH ROW EXECUTE FUNCTION soak_count_hash_writes();
                 ANALYZE user_profiles;",
                marker = self.secret_marker,
                rows = plan.rows
            ),
        )
    }
}
