//! toolgate as separate `toolgate serve` processes on one PostgreSQL database: what a deployment of several
//! instances is. Each test gets a schema of its own (dropped by [`PgSchema::drop_now`]) so tests sharing the
//! database in parallel never see each other's rows.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_toolgate");

/// A fresh schema in the test database, and the URL that makes it a connection's `search_path`.
pub struct PgSchema {
    pub url: String,
    name: String,
    admin: sqlx::PgPool,
}

impl PgSchema {
    /// `None` (test skipped, saying why) without `TOOLGATE_TEST_POSTGRES_URL`.
    pub async fn create(prefix: &str) -> Option<PgSchema> {
        let Ok(base) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
            eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Some(PgSchema { url, name, admin })
    }

    /// A pool whose connections read and write this schema.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.unwrap()
    }

    pub async fn drop_now(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// Writes `<name>.toml` in `dir`: the test secret and admin token, the shipped policies, the database, the
/// chain id, then `extra` (more tables: `[[upstream]]`, `[escalation]`, …).
pub fn config(dir: &Path, name: &str, url: &str, chain: &str, extra: &str) -> PathBuf {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{}\"\n[admin]\ntoken = \"{}\"\n[policy]\ndir = \"{}\"\n\
         [audit]\ndatabase_url = \"{url}\"\nchain_id = \"{chain}\"\nsigning_key_file = \"{}\"\n{extra}\n",
        super::SECRET,
        super::ADMIN,
        super::repo_root().join("policies").display(),
        dir.join(format!("{name}.signing-key")).display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

/// A running `toolgate serve`; killed (SIGKILL) when dropped.
pub struct Instance {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL: no chance to drain, flush or close anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `serve` and waits for `toolgate ready` (whose `listen` field says where); panics with the process's
/// stderr if it exits first.
pub fn serve_ready(config: &Path) -> Instance {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so the process never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("\"toolgate ready\"") {
                let log: serde_json::Value = serde_json::from_str(&line).unwrap();
                let addr = log["listen"]
                    .as_str()
                    .or_else(|| log["fields"]["listen"].as_str())
                    .unwrap_or_else(|| panic!("no listen address in {line}"))
                    .parse()
                    .unwrap();
                return Instance { child, addr };
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("serve exited with {status:?} before ready: {err}");
        }
        assert!(Instant::now() < deadline, "toolgate ready within 30 s");
    }
}
