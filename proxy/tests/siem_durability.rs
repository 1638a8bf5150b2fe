//! SIEM delivery across failures of toolgate itself: a `kill -9` of the real binary in the middle of a slow
//! delivery and a restart (every event's `event_hash` reaches the sink; re-sends allowed, nothing missing), and
//! two instances on one PostgreSQL sharing one sink (each event once while one instance holds the lease; the
//! other takes over when the holder leaves, re-sending at most one batch).

mod common;
#[path = "siem/receivers.rs"]
mod receivers;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, repo_root, start, token, Agent, Options, Proxy, SECRET};
use hyper::StatusCode;
use serde_json::{json, Value};
use toolgate::audit::AuditStore;
use toolgate_engine::chain::AuditEvent;

const BIN: &str = env!("CARGO_BIN_EXE_toolgate");

async fn stored(store: &AuditStore) -> Vec<AuditEvent> {
    let mut all = Vec::new();
    for (chain, head) in store.chain_heads().await.unwrap() {
        all.extend(
            store
                .chain_events(&chain, 0, head, &Default::default(), 1_000_000)
                .await
                .unwrap(),
        );
    }
    all
}

/// Event hashes of the webhook requests the receiver answered 200, with how often each arrived.
fn acknowledged(receiver: &receivers::HttpReceiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in receiver.received().iter().filter(|r| r.status == 200) {
        for e in serde_json::from_slice::<Vec<Value>>(&r.body).unwrap() {
            *seen
                .entry(e["event_hash"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    seen
}

/// Starts `toolgate serve` and returns it with its address (from the `toolgate ready` log line). The caller
/// kills and waits for it; a child that never gets ready fails the test, which ends the process group anyway.
#[allow(clippy::zombie_processes)]
fn serve(config: &std::path::Path) -> (Child, String) {
    let (child, addr, _) = serve_logged(config);
    (child, addr)
}

/// [`serve`], also keeping every log line the child prints.
#[allow(clippy::zombie_processes)]
fn serve_logged(config: &std::path::Path) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("toolgate ready within 30 s");
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["message"] == "toolgate ready" {
            // Keep draining the pipe so the child never blocks on a full stdout.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, v["listen"].as_str().unwrap().to_owned(), logs);
        }
    }
}

async fn call(addr: &str, n: usize) {
    let url = format!("http://{addr}/mcp/demo");
    let auth = format!("Bearer {}", token("agent-k", &["dev"]));
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let meta = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    for i in 0..n {
        let message = json!({ "jsonrpc": "2.0", "id": i, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "x" }, "_meta": meta } });
        let answer = common::send(hyper::Method::POST, &url, &headers, message.to_string()).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_no_event() {
    let receiver = receivers::http(receivers::ok()).await;
    // A slow sink: each batch of 2 takes 150 ms, so a kill lands in the middle of the delivery.
    *receiver.delay.lock().unwrap() = Duration::from_millis(150);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.key"), "kill-test-key").unwrap();
    let db = format!("sqlite://{}", dir.path().join("audit.db").display());
    let config = dir.path().join("toolgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[policy]\ndir = \"{}\"\n[audit]\ndatabase_url = \"{db}\"\nsigning_key_file = \"{}\"\n\
             [[upstream]]\nname = \"demo\"\ncommand = [\"{BIN}\", \"demo-server\", \"--sandbox\", \"{}\"]\nworkdir = \"/workspace\"\n\
             [[siem]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\ntoken_file = \"{}\"\nbatch_max = 2\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\npoll_ms = 100\n",
            repo_root().join("policies").display(),
            dir.path().join("key").display(),
            dir.path().join("sandbox").display(),
            receiver.url("/hook"),
            dir.path().join("hook.key").display(),
        ),
    )
    .unwrap();
    let (mut child, addr) = serve(&config);
    call(&addr, 15).await;
    eventually(Duration::from_secs(20), || async {
        (receiver.received().len() >= 3).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = AuditStore::connect(&db).await.unwrap();
    let events = stored(&store).await;
    let before = acknowledged(&receiver);
    assert!(
        events.iter().any(|e| !before.contains_key(&e.event_hash)),
        "the kill must land before delivery finished ({} of {} delivered)",
        before.len(),
        events.len()
    );

    let (mut child, addr) = serve(&config);
    call(&addr, 3).await;
    let all = eventually(Duration::from_secs(60), || async {
        let events = stored(&store).await;
        let got = acknowledged(&receiver);
        events
            .iter()
            .all(|e| got.contains_key(&e.event_hash))
            .then_some(events)
    })
    .await;
    assert!(all.len() > events.len());
    // At least once: a re-send is at most the one batch in flight at the kill.
    let resent: usize = acknowledged(&receiver).values().map(|n| n - 1).sum();
    assert!(resent <= 2, "{resent} events re-sent");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A fresh PostgreSQL schema's URL, or `None` (the test is skipped) without `TOOLGATE_TEST_POSTGRES_URL`.
async fn postgres_schema() -> Option<(String, sqlx::PgPool, String)> {
    let base = std::env::var("TOOLGATE_TEST_POSTGRES_URL").ok()?;
    let schema = format!("toolgate_siem_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    Some((
        format!("{base}{separator}options=-c%20search_path%3D{schema}"),
        admin,
        schema,
    ))
}

async fn instance(db: &str, chain: &str, sink: &str) -> Proxy {
    start(Options {
        database_url: Some(db.to_owned()),
        audit_toml: format!("chain_id = \"{chain}\""),
        extra_toml: sink.to_owned(),
        ..Default::default()
    })
    .await
}

async fn echo(proxy: &Proxy, n: usize) {
    let mut a = Agent::new(proxy, "demo", token("agent-pg", &["dev"]));
    for _ in 0..n {
        a.call_stateless("echo", json!({ "text": "x" })).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_deliver_each_event_once() {
    let Some((db, admin, schema)) = postgres_schema().await else {
        eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    let receiver = receivers::http(receivers::ok()).await;
    // A sink slower than the lease: the holder must keep its lease renewed while it waits for the answer, or
    // the other instance would take over and send the same batch again.
    *receiver.delay.lock().unwrap() = Duration::from_millis(1200);
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("k"), "pg-key").unwrap();
    let sink = format!(
        "[[siem]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\ntoken_file = \"{}\"\nbatch_max = 5\nlease_seconds = 1\npoll_ms = 100\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\n",
        receiver.url("/hook"),
        keys.path().join("k").display()
    );
    let a = instance(&db, "inst-a", &sink).await;
    let b = instance(&db, "inst-b", &sink).await;
    echo(&a, 6).await;
    echo(&b, 6).await;
    let store = a.app.audit.store().clone();
    eventually(Duration::from_secs(60), || async {
        let events = stored(&store).await;
        let got = acknowledged(&receiver);
        let chains: HashSet<&str> = events.iter().map(|e| e.chain_id.as_str()).collect();
        (chains.len() == 2 && events.iter().all(|e| got.contains_key(&e.event_hash))).then_some(())
    })
    .await;
    let once = acknowledged(&receiver);
    assert!(
        once.values().all(|&n| n == 1),
        "one holder: each event once, got {:?}",
        once.values().filter(|&&n| n > 1).count()
    );
    // Both instances agree on who delivers.
    let holder = store.siem_lease("hook").await.unwrap().unwrap().holder;
    assert!(holder == "inst-a" || holder == "inst-b");
    let (leaver, stayer) = if holder == "inst-a" { (a, b) } else { (b, a) };
    // The holder leaves (gives its lease up); the other takes over and delivers both chains' new events.
    leaver.app.siem.stop().await;
    echo(&leaver, 3).await;
    echo(&stayer, 3).await;
    eventually(Duration::from_secs(30), || async {
        let events = stored(&store).await;
        let got = acknowledged(&receiver);
        events
            .iter()
            .all(|e| got.contains_key(&e.event_hash))
            .then_some(())
    })
    .await;
    let after = acknowledged(&receiver);
    let resent: usize = after.values().map(|n| n - 1).sum();
    assert!(
        resent <= 5,
        "a takeover re-sends at most one batch: {resent}"
    );
    assert_eq!(
        store.siem_lease("hook").await.unwrap().unwrap().holder,
        stayer.app.audit.chain_id()
    );
    leaver.stop().await;
    stayer.stop().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_never_reaches_the_logs() {
    // A hostile sink: it echoes the request headers back and refuses them, so every attempt fails and is logged.
    let receiver = receivers::http(Arc::new(|req, _| {
        (401, json!({ "echo": req.headers }).to_string())
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hec.token"), "hec-SECRET-in-logs").unwrap();
    let config = dir.path().join("toolgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[policy]\ndir = \"{}\"\n[audit]\ndatabase_url = \"sqlite://{}\"\nsigning_key_file = \"{}\"\n\
             [telemetry]\ndebug = true\n\
             [[upstream]]\nname = \"demo\"\ncommand = [\"{BIN}\", \"demo-server\", \"--sandbox\", \"{}\"]\nworkdir = \"/workspace\"\n\
             [[siem]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = \"http://collector:pw-SECRET@{}\"\ntoken_file = \"{}\"\nfailing_after = 1\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\npoll_ms = 100\n",
            repo_root().join("policies").display(),
            dir.path().join("audit.db").display(),
            dir.path().join("key").display(),
            dir.path().join("sandbox").display(),
            receiver.addr,
            dir.path().join("hec.token").display(),
        ),
    )
    .unwrap();
    let (mut child, addr, logs) = serve_logged(&config);
    call(&addr, 2).await;
    // Failures are logged (with the sink's echoed answer, scrubbed)…
    eventually(Duration::from_secs(20), || async {
        let logs = logs.lock().unwrap();
        (logs
            .iter()
            .filter(|l| l.contains("SIEM delivery attempt failed"))
            .count()
            >= 2
            && logs.iter().any(|l| l.contains("SIEM delivery failing")))
        .then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // …and the sink did get the credentials, but no log line holds them.
    assert!(receiver
        .received()
        .iter()
        .any(|r| r.header("authorization") == Some("Splunk hec-SECRET-in-logs")));
    let logs = logs.lock().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("[REDACTED]")),
        "the echoed credential is shown redacted"
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("collector:pw-SECRET");
    for line in logs.iter() {
        assert!(!line.contains("SECRET"), "a credential in the logs: {line}");
        assert!(!line.contains(&basic), "a credential in the logs: {line}");
    }
}
