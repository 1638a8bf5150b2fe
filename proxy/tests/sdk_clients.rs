//! toolgate with the official MCP SDK clients in both protocol eras: the Python SDK (`mcp` 2.x), the TypeScript
//! SDK 1.x (`@modelcontextprotocol/sdk`, 2025 era only) and its 2.x client package (`@modelcontextprotocol/client`,
//! both eras), each run as a subprocess against the real proxy.
//!
//! The client scripts live in `proxy/tests/sdk/` and print one JSON line of what they saw; these tests assert on
//! it and on toolgate's own state (sessions, audit log). `proxy/tests/sdk/setup.sh` installs the pinned SDKs;
//! without them each test prints a skip notice and passes, unless `TOOLGATE_REQUIRE_SDK_TESTS=1` (CI), where a
//! missing SDK fails the test.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{start, token, upstream, Options, Proxy};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// A client script's whole run (start-up, handshake, four requests, close).
const CLIENT_LIMIT: Duration = Duration::from_secs(90);
const DENIED: &str = "denied by policy toolgate.filesystem.system_path: ";

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

#[derive(Clone, Copy, Debug)]
enum Sdk {
    /// Python `mcp` 2.x.
    Python,
    /// `@modelcontextprotocol/sdk` 1.x.
    TsV1,
    /// `@modelcontextprotocol/client` 2.x.
    TsV2,
}

impl Sdk {
    /// What must be installed for this SDK, or None when it is.
    fn missing(self) -> Option<String> {
        let dir = sdk_dir();
        let needed = match self {
            Sdk::Python => dir.join(".venv/lib"),
            Sdk::TsV1 => dir.join("node_modules/@modelcontextprotocol/sdk/package.json"),
            Sdk::TsV2 => dir.join("node_modules/@modelcontextprotocol/client/package.json"),
        };
        let python_ok = || {
            std::process::Command::new(dir.join(".venv/bin/python"))
                .args(["-c", "import mcp, httpx2, uvicorn"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let node_ok = || {
            std::process::Command::new("node")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ok = needed.exists()
            && match self {
                Sdk::Python => python_ok(),
                Sdk::TsV1 | Sdk::TsV2 => node_ok(),
            };
        (!ok).then(|| format!("{self:?} SDK ({} and its runtime)", needed.display()))
    }

    fn command(self) -> Command {
        let dir = sdk_dir();
        let mut cmd = match self {
            Sdk::Python => {
                let mut c = Command::new(dir.join(".venv/bin/python"));
                c.arg(dir.join("python_client.py"));
                c
            }
            Sdk::TsV1 | Sdk::TsV2 => {
                let mut c = Command::new("node");
                c.arg(dir.join("ts_client.mjs")).args([
                    "--package",
                    if matches!(self, Sdk::TsV1) {
                        "sdk"
                    } else {
                        "client"
                    },
                ]);
                c
            }
        };
        cmd.current_dir(&dir);
        cmd
    }
}

/// True when the SDKs are present; otherwise a skip notice (false), or a failure under TOOLGATE_REQUIRE_SDK_TESTS=1.
fn sdks_present(sdks: &[Sdk]) -> bool {
    let missing: Vec<String> = sdks.iter().filter_map(|s| s.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("TOOLGATE_REQUIRE_SDK_TESTS").as_deref() == Ok("1") {
        panic!(
            "TOOLGATE_REQUIRE_SDK_TESTS=1 but not installed: {what}; run proxy/tests/sdk/setup.sh"
        );
    }
    // Straight to stderr, not eprintln!: the test harness captures the print macros of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: MCP SDK test: not installed: {what}; run proxy/tests/sdk/setup.sh to include it"
    );
    false
}

/// Runs one client script to completion and returns its JSON report.
async fn run_client(sdk: Sdk, url: &str, token: &str, args: &[&str]) -> Value {
    let mut cmd = sdk.command();
    cmd.args(["--url", url])
        .args(args)
        .env("TOOLGATE_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("client script starts");
    let output = tokio::time::timeout(CLIENT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("{sdk:?} client {args:?} did not finish within {CLIENT_LIMIT:?}")
        })
        .expect("client script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let report: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("{sdk:?} client {args:?} printed no report (exit {:?})\nstdout: {stdout}\nstderr: {stderr}", output.status)
        });
    assert!(
        output.status.success(),
        "{sdk:?} client {args:?} exited {:?}: {report}\nstderr: {stderr}",
        output.status
    );
    report
}

/// The checks every run shares: no failed check in the script, echo present, run_shell hidden, the denial as
/// the contract says, and the negotiated version.
fn assert_common(report: &Value, version: &str, echo: &str) {
    let failures = report["failures"].as_array().expect("failures list");
    assert!(
        failures.is_empty(),
        "the client's checks failed: {report:#}"
    );
    assert_eq!(report["protocol_version"], version, "{report:#}");
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(tools.contains(&"read_file"), "{tools:?}");
    assert!(
        !tools.contains(&"run_shell"),
        "run_shell must be hidden: {tools:?}"
    );
    assert!(
        report["echo_text"]
            .as_str()
            .is_some_and(|t| t.contains(echo)),
        "{report:#}"
    );
    assert_eq!(report["echo_is_error"], false);
    assert_eq!(report["denied_code"], -31001, "{report:#}");
    assert!(
        report["denied_message"]
            .as_str()
            .is_some_and(|m| m.starts_with(DENIED) && m.len() > DENIED.len()),
        "{report:#}"
    );
    assert_eq!(report["closed"], true);
}

fn rpc_methods(report: &Value) -> Vec<String> {
    report["http"]
        .as_array()
        .expect("http log")
        .iter()
        .filter_map(|x| x["rpc"].as_str().map(str::to_owned))
        .collect()
}

/// A 2025-era run: initialize with a session id, and the session ended by DELETE (gone from toolgate too).
async fn assert_2025_era(proxy: &Proxy, report: &Value, echo: &str) {
    assert_common(report, "2025-11-25", echo);
    let methods = rpc_methods(report);
    assert!(methods.iter().any(|m| m == "initialize"), "{methods:?}");
    assert_eq!(report["sent_session_header"], true, "{report:#}");
    let delete = report["delete_status"].as_u64();
    assert!(
        matches!(delete, Some(200 | 204)),
        "session not ended cleanly: {report:#}"
    );
    assert_eq!(
        proxy.app.sessions.len(),
        0,
        "toolgate still holds the session"
    );
}

/// A 2026-07-28 run: the SDK discovered the server, sent no initialize and no session id.
fn assert_2026_era(proxy: &Proxy, report: &Value, echo: &str) {
    assert_common(report, "2026-07-28", echo);
    let methods = rpc_methods(report);
    assert_eq!(
        methods.first().map(String::as_str),
        Some("server/discover"),
        "{methods:?}"
    );
    assert!(!methods.iter().any(|m| m == "initialize"), "{methods:?}");
    assert_eq!(report["sent_session_header"], false, "{report:#}");
    assert_eq!(proxy.app.sessions.len(), 0);
}

/// The audit log's event types, oldest first.
async fn audit_types(proxy: &Proxy) -> Vec<String> {
    let page = proxy
        .app
        .audit
        .store()
        .query(&toolgate::audit::EventFilter {
            limit: Some(200),
            ..Default::default()
        })
        .await
        .expect("audit query");
    let v = serde_json::to_value(page).expect("page is JSON");
    let events = v.get("events").cloned().unwrap_or(v);
    let mut types: Vec<String> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
        .collect();
    types.reverse();
    types
}

/// A real MCP server built with the Python SDK, on 127.0.0.1, killed when dropped.
struct SdkServer {
    url: String,
    _child: Child,
}

async fn start_python_server() -> SdkServer {
    let dir = sdk_dir();
    let mut child = Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("python_server.py"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python_server.py starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let port = match first {
        Ok(Ok(Some(line))) => serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .unwrap_or_else(|| panic!("python_server.py printed {line:?}")),
        other => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err)).await;
            }
            panic!("python_server.py did not announce its port: {other:?}\n{err}");
        }
    };
    SdkServer {
        url: format!("http://127.0.0.1:{port}/mcp"),
        _child: child,
    }
}

/// toolgate with the demo stdio upstream plus an HTTP upstream named `http` at `url`.
async fn proxy_with_http_upstream(url: &str) -> Proxy {
    start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"http\"\nurl = \"{url}\"\ntimeout_seconds = 20\n"
        ),
        ..Options::default()
    })
    .await
}

const PY_ECHO: &str = "hello from the python sdk";
const TS_ECHO: &str = "hello from the typescript sdk";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_both_eras_through_stdio_upstream() {
    if !sdks_present(&[Sdk::Python]) {
        return;
    }
    let proxy = start(Options::default()).await;
    let url = proxy.url("/mcp/demo");
    let agent = token("py-agent", &["dev"]);

    let legacy = run_client(Sdk::Python, &url, &agent, &["--era", "legacy"]).await;
    assert_2025_era(&proxy, &legacy, PY_ECHO).await;
    assert_eq!(legacy["initialized"], true);
    let types = audit_types(&proxy).await;
    for t in [
        "session_start",
        "tool_call",
        "tool_result",
        "policy_deny",
        "session_end",
    ] {
        assert!(
            types.iter().any(|x| x == t),
            "{t} missing from the audit log: {types:?}"
        );
    }

    let modern = run_client(Sdk::Python, &url, &agent, &["--era", "auto"]).await;
    assert_2026_era(&proxy, &modern, PY_ECHO);
    assert_eq!(modern["discovered"], true);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_v1_2025_era_through_stdio_upstream() {
    if !sdks_present(&[Sdk::TsV1]) {
        return;
    }
    let proxy = start(Options::default()).await;
    let url = proxy.url("/mcp/demo");
    let report = run_client(
        Sdk::TsV1,
        &url,
        &token("ts1-agent", &[]),
        &["--era", "legacy"],
    )
    .await;
    assert_2025_era(&proxy, &report, TS_ECHO).await;
    assert!(
        report["sdk_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{report:#}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_v2_both_eras_through_stdio_upstream() {
    if !sdks_present(&[Sdk::TsV2]) {
        return;
    }
    let proxy = start(Options::default()).await;
    let url = proxy.url("/mcp/demo");
    let agent = token("ts2-agent", &[]);
    let legacy = run_client(Sdk::TsV2, &url, &agent, &["--era", "legacy"]).await;
    assert_2025_era(&proxy, &legacy, TS_ECHO).await;
    let modern = run_client(Sdk::TsV2, &url, &agent, &["--era", "auto"]).await;
    assert_2026_era(&proxy, &modern, TS_ECHO);
    assert_eq!(modern["era_negotiated"], "modern");
    proxy.stop().await;
}

/// SDK client → toolgate → SDK server over streamable HTTP: toolgate's forwarding (headers, session ids, the
/// GET stream, JSON answers) is what the SDK server itself validates, in both eras.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_both_eras_through_python_sdk_http_upstream() {
    if !sdks_present(&[Sdk::Python, Sdk::TsV2]) {
        return;
    }
    let server = start_python_server().await;
    let proxy = proxy_with_http_upstream(&server.url).await;
    let url = proxy.url("/mcp/http");
    let agent = token("http-agent", &[]);

    let py_legacy = run_client(Sdk::Python, &url, &agent, &["--era", "legacy"]).await;
    assert_2025_era(&proxy, &py_legacy, PY_ECHO).await;
    let py_modern = run_client(Sdk::Python, &url, &agent, &["--era", "auto"]).await;
    assert_2026_era(&proxy, &py_modern, PY_ECHO);
    let ts_legacy = run_client(Sdk::TsV2, &url, &agent, &["--era", "legacy"]).await;
    assert_2025_era(&proxy, &ts_legacy, TS_ECHO).await;
    let ts_modern = run_client(Sdk::TsV2, &url, &agent, &["--era", "auto"]).await;
    assert_2026_era(&proxy, &ts_modern, TS_ECHO);
    proxy.stop().await;
}

/// A 2025-only HTTP upstream answers `server/discover` with 400; toolgate passes it through and the SDKs'
/// `auto` negotiation falls back to `initialize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_auto_negotiation_falls_back_to_2025_era_on_legacy_http_upstream() {
    if !sdks_present(&[Sdk::Python, Sdk::TsV2]) {
        return;
    }
    let mock = upstream::start(upstream::State {
        legacy_only: true,
        ..Default::default()
    })
    .await;
    let proxy = proxy_with_http_upstream(&format!("http://{}/mcp", mock.addr)).await;
    let url = proxy.url("/mcp/http");
    let agent = token("fallback-agent", &[]);
    // The mock answers every allowed tools/call with "called <tool>".
    let expect = ["--era", "auto", "--expect-echo", "called echo"];
    for sdk in [Sdk::Python, Sdk::TsV2] {
        let report = run_client(sdk, &url, &agent, &expect).await;
        assert_2025_era(&proxy, &report, "called echo").await;
        let methods = rpc_methods(&report);
        assert_eq!(
            methods.first().map(String::as_str),
            Some("server/discover"),
            "{sdk:?} probes first: {methods:?}"
        );
        let discover = &report["http"][0];
        assert_eq!(discover["status"], 400, "{sdk:?}: {report:#}");
    }
    // The denied read never reached the upstream; the allowed echo did, once per client.
    let calls = mock.state.tool_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c["params"]["name"] == "echo"));
    proxy.stop().await;
}
