//! One live instance per audit chain on PostgreSQL, with real `toolgate serve` processes: a second instance
//! started with a chain id that a live one holds is refused at start with one clear line; once the holder is
//! killed with SIGKILL (no chance to clean up), the same chain id starts at once and continues the chain.

mod common;

use std::process::Command;

use common::instances::{config as instance_config, serve_ready, PgSchema, BIN};

fn config(dir: &std::path::Path, name: &str, url: &str, chain: &str) -> std::path::PathBuf {
    instance_config(
        dir,
        name,
        url,
        chain,
        "[[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_chain_refuses_a_second_instance_until_its_holder_dies() {
    let Some(schema) = PgSchema::create("toolgate_lock").await else {
        return;
    };
    let url = schema.url.clone();
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
    first.kill();
    let mut again = serve_ready(&config(dir.path(), "b", &url, "shared"));

    for instance in [&mut again, &mut other] {
        instance.kill();
    }
    schema.drop_now().await;
}
