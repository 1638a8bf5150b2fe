//! The real `toolgate` binary: serve, token, audit verify/export, policy eval, and one-line errors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_toolgate");

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[auth]\nhs256_secret = \"{}\"\n[policy]\ndir = \"{}\"\n[audit]\ndatabase_url = \"sqlite://{}\"\n[[upstream]]\nname = \"demo\"\ncommand = [\"toolgate\", \"demo-server\", \"--sandbox\", \"{}\"]\n",
        common::SECRET,
        common::repo_root().join("policies").display(),
        dir.join("audit.db").display(),
        dir.join("sandbox").display(),
    );
    let path = dir.join("toolgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_token_call_verify_tamper_export() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let cfg = config.to_str().unwrap();

    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read JSON log lines until `toolgate ready`, which carries the bound address.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready: Value = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("toolgate ready within 30 s");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
        for key in ["time", "level", "name", "message"] {
            assert!(v.get(key).is_some(), "log line lacks {key}: {line}");
        }
        if v["message"] == "toolgate ready" {
            break v;
        }
    };
    let addr = ready["listen"].as_str().unwrap().to_owned();

    let (code, token, _) = run(&[
        "token",
        "--config",
        cfg,
        "--sub",
        "cli-agent",
        "--role",
        "dev",
        "--ttl",
        "10m",
    ]);
    assert_eq!(code, 0);
    let token = token.trim().to_owned();
    let url = format!("http://{addr}/mcp/demo");
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let meta = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    let read = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": "/workspace/readme.txt" }, "_meta": meta } });
    let answer = common::send(hyper::Method::POST, &url, &headers, read.to_string()).await;
    let text = answer.message()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("toolgate demo sandbox"),
        "the sandbox starts with a readme: {:?}",
        answer.message()
    );
    let denied = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "run_shell", "arguments": { "command": "id" }, "_meta": meta } });
    assert_eq!(
        common::send(hyper::Method::POST, &url, &headers, denied.to_string())
            .await
            .error_code(),
        Some(-31001)
    );

    // SIGTERM: a clean shutdown drains the audit log.
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");

    let (code, out, _) = run(&["audit", "verify", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["chain_intact"], true);
    assert_eq!(
        report["events_verified"], 3,
        "decision + outcome of the read, the shell denial: {report}"
    );

    let (code, out, _) = run(&["audit", "export", "--config", cfg, "--format", "ndjson"]);
    assert_eq!(code, 0);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event_type"], "tool_call");
    assert_eq!(lines[2]["policy_result"], "deny");

    // Tamper with the stored decision: verify names the row and exits 1.
    let db = format!("sqlite://{}", dir.path().join("audit.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE audit_events SET policy_result = 'allow' WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (code, out, _) = run(&["audit", "verify", "--config", cfg]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["chain_intact"], false);
    assert_eq!(report["first_bad_row"]["seq"], 3);
}

#[test]
fn errors_are_one_line_on_stderr_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 5\n").unwrap();
    for args in [
        vec!["serve", "--config", bad.to_str().unwrap()],
        vec!["serve", "--config", "/nonexistent/toolgate.toml"],
        vec!["token", "--config", "/dev/null", "--sub", "a"],
        vec![
            "policy",
            "eval",
            "--input",
            "/nonexistent.json",
            "--dir",
            "policies",
        ],
    ] {
        let (code, _, err) = run(&args);
        assert_ne!(code, 0, "{args:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("toolgate: "), "{args:?}: {err}");
    }
}

#[test]
fn policy_eval_prints_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        json!({
            "agent": { "id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {} },
            "session": { "id": null, "calls": 0, "started_at": null },
            "request": { "method": "tools/call", "upstream": "demo", "protocol_version": "2026-07-28" },
            "tool": { "name": "read_file", "arguments": { "path": "/etc/passwd" }, "action": "read", "target": "/etc/passwd" },
            "dlp": { "findings": [] },
            "behavior": { "score": 0.0 },
            "now": "2026-11-22T20:15:00Z"
        })
        .to_string(),
    )
    .unwrap();
    let policies = common::repo_root().join("policies");
    let (code, out, err) = run(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap(),
        "--dir",
        policies.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    let decision = v.get("decision").unwrap_or(&v);
    assert_eq!(decision["result"], "deny");
    assert_eq!(decision["policy_id"], "toolgate.filesystem.system_path");
}
