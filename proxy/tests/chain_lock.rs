//! One live instance per audit chain on PostgreSQL, with real `toolgate serve` processes: a second instance
//! started with a chain id that a live one holds is refused at start with one clear line; once the holder is
//! killed with SIGKILL (no chance to clean up), the same chain id starts at once and continues the chain.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_toolgate");

fn config(dir: &std::path::Path, name: &str, url: &str, chain: &str) -> std::path::PathBuf {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{}\"\n[policy]\ndir = \"{}\"\n[audit]\n\
         database_url = \"{url}\"\nchain_id = \"{chain}\"\nsigning_key_file = \"{}\"\n\
         [[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
        common::SECRET,
        common::repo_root().join("policies").display(),
        dir.join(format!("{name}.signing-key")).display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

/// Starts `serve` and waits for `toolgate ready`; panics with the process's stderr if it exits first.
fn serve_ready(config: &std::path::Path) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains("\"toolgate ready\"") {
                return child;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_chain_refuses_a_second_instance_until_its_holder_dies() {
    let Ok(base) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("toolgate_lock_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();

    let mut first = serve_ready(&config(dir.path(), "a", &url, "shared"));
    // Same chain: refused, non-zero, one line naming the setting to change.
    let second = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config(dir.path(), "b", &url, "shared"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second instance on a held chain started"
    );
    assert!(
        stderr.contains("held by another live toolgate instance")
            && stderr.contains("audit.chain_id"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    // Another chain on the same database starts beside it.
    let mut other = serve_ready(&config(dir.path(), "c", &url, "other"));

    // SIGKILL: the holder's connection goes with it, and the chain is free at once.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut again = serve_ready(&config(dir.path(), "b", &url, "shared"));

    for child in [&mut again, &mut other] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}
