//! The whole MCP surface under policy against a real MCP server: the official Python SDK server
//! (`proxy/tests/sdk/python_server.py`) behind toolgate as a streamable-HTTP upstream, spoken to over HTTP in
//! both protocol eras (2025: `initialize` and `Mcp-Session-Id`; 2026-07-28: stateless, `_meta`): resources,
//! prompts, tool results, tool definitions (poisoning, a rug pull and its approval) and the server's own
//! sampling and elicitation requests.
//!
//! Like `sdk_clients.rs`, each test prints a skip notice and passes when `proxy/tests/sdk/setup.sh` has not
//! installed the SDK, and fails instead under `TOOLGATE_REQUIRE_SDK_TESTS=1`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{audit_events, eventually, start, token, Agent, Answer, Options, Proxy, ADMIN};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// The fake credentials python_server.py leaks (they belong to no account).
const FAKE_AWS_KEY: &str = "AKIAZ7EXAMPLE4DEMO7Q";
const FAKE_AWS_SECRET: &str = "FAKEdemoSecretKey/0nlyForToolgateDLPTour";
const REDACTED_KEY: &str = "[REDACTED:aws_access_key]";
/// The upstream's name in toolgate's config (and so in `/mcp/sdk` and the tools API).
const UPSTREAM: &str = "sdk";
const STATELESS_VERSION: &str = "2026-07-28";

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// True when the Python SDK is installed; otherwise a skip notice (false), or a failure under
/// TOOLGATE_REQUIRE_SDK_TESTS=1 (the pattern of sdk_clients.rs).
fn sdk_present() -> bool {
    let dir = sdk_dir();
    let needed = dir.join(".venv/lib");
    let ok = needed.exists()
        && std::process::Command::new(dir.join(".venv/bin/python"))
            .args(["-c", "import mcp, httpx2, uvicorn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    let what = format!("Python SDK ({} and its runtime)", needed.display());
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

/// python_server.py on 127.0.0.1, killed when dropped.
struct SdkServer {
    base: String,
    _child: Child,
}

impl SdkServer {
    async fn start(sse: bool) -> SdkServer {
        let dir = sdk_dir();
        let mut cmd = Command::new(dir.join(".venv/bin/python"));
        cmd.arg(dir.join("python_server.py"));
        if sse {
            cmd.arg("--sse");
        }
        let mut child = cmd
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
                        tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err))
                            .await;
                }
                panic!("python_server.py did not announce its port: {other:?}\n{err}");
            }
        };
        SdkServer {
            base: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    }

    /// What the server was sent (`{method, name, uri}` per JSON-RPC message), asked of it directly.
    async fn received(&self) -> Vec<Value> {
        let url = format!("{}/debug/received", self.base);
        let answer = common::send(Method::GET, &url, &[], "").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json().as_array().cloned().unwrap_or_default()
    }

    /// How many messages of `method` naming `name` (a tool or prompt name, or a uri) the server got.
    async fn got(&self, method: &str, name: &str) -> usize {
        self.received()
            .await
            .iter()
            .filter(|m| m["method"] == method && (m["name"] == name || m["uri"] == name))
            .count()
    }
}

/// A copy of the shipped policies (in `dir`) whose data.json also lists the SDK server's tools of `unknown`
/// action as harmless, so they run and their results are judged, and uses `sampling_mode` when given.
fn policies_for_sdk_tools(dir: &Path, sampling_mode: Option<&str>) -> PathBuf {
    common::shipped_policies_with(dir, |knobs| {
        let harmless = knobs["harmless_tools"].as_array_mut().unwrap();
        // poisoned_helper is listed too, so the only reason left to hide it is its poisoned description.
        for tool in [
            "leak_secret",
            "rug_pull",
            "ask_model",
            "ask_user",
            "poisoned_helper",
        ] {
            harmless.push(json!(tool));
        }
        if let Some(mode) = sampling_mode {
            knobs["sampling"]["mode"] = json!(mode);
        }
    })
}

/// toolgate with the SDK server as its only upstream, `sdk`.
async fn proxy_for(server: &SdkServer, policy_dir: Option<PathBuf>) -> Proxy {
    start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"{UPSTREAM}\"\nurl = \"{}/mcp\"\ntimeout_seconds = 20\nworkdir = \"/workspace\"\n",
            server.base
        ),
        demo: false,
        policy_dir,
        ..Options::default()
    })
    .await
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Era {
    /// 2025-11-25: `initialize`, then `Mcp-Session-Id` on every request.
    Session,
    /// 2026-07-28: no session; the version in `_meta` and the SEP-2243 headers the SDK server checks.
    Stateless,
}

const ERAS: [Era; 2] = [Era::Session, Era::Stateless];

/// One agent speaking MCP to toolgate's `/mcp/sdk` in one era.
struct Client {
    agent: Agent,
    era: Era,
    next_id: i64,
}

impl Client {
    async fn open(proxy: &Proxy, era: Era, sub: &str) -> Client {
        let mut agent = Agent::new(proxy, UPSTREAM, token(sub, &[]));
        if era == Era::Session {
            agent.initialize().await;
        }
        Client {
            agent,
            era,
            next_id: 100,
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Answer {
        let id = self.next_id;
        self.next_id += 1;
        match self.era {
            Era::Session => {
                let message =
                    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
                self.agent.post(&message).await
            }
            Era::Stateless => {
                let mut params = params;
                params["_meta"] = json!({
                    "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
                    "io.modelcontextprotocol/clientCapabilities": {},
                });
                // The SDK server refuses a request whose Mcp-* headers are missing or disagree with the body
                // (-32020), so these go as an SDK client sends them; toolgate must pass them on.
                let auth = format!("Bearer {}", self.agent.token);
                let mut headers = vec![
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                    ("mcp-protocol-version", STATELESS_VERSION),
                    ("mcp-method", method),
                ];
                let name = params["name"].as_str().or(params["uri"].as_str());
                if let Some(name) = name {
                    headers.push(("mcp-name", name));
                }
                // echo's `text` carries `x-mcp-header: Text` in its schema.
                if let Some(text) = params["arguments"]["text"].as_str() {
                    headers.push(("mcp-param-text", text));
                }
                let message =
                    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
                common::send(Method::POST, &self.agent.url, &headers, message.to_string()).await
            }
        }
    }

    /// The JSON-RPC answer of one request.
    async fn rpc(&mut self, method: &str, params: Value) -> Value {
        let answer = self.request(method, params).await;
        assert_eq!(answer.status, StatusCode::OK, "{method}: {answer:?}");
        answer.message()
    }

    async fn read(&mut self, uri: &str) -> Value {
        self.rpc("resources/read", json!({ "uri": uri })).await
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.rpc(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }
}

/// The newest audit event of agent `sub` that `matches` (waiting for the audit writer).
async fn event_of(proxy: &Proxy, sub: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(5), || async {
        audit_events(&proxy.app, 500)
            .await
            .into_iter()
            .find(|e| e["agent_id"] == sub && matches(e))
    })
    .await
}

/// Every audit event stored so far, as one string, for "this text never reached the log" checks.
async fn whole_audit_log(proxy: &Proxy) -> String {
    serde_json::to_string(&audit_events(&proxy.app, 1000).await).unwrap()
}

async fn assert_no_secret_in_audit_log(proxy: &Proxy) {
    let log = whole_audit_log(proxy).await;
    assert!(!log.contains(FAKE_AWS_KEY), "the key reached the audit log");
    assert!(
        !log.contains(FAKE_AWS_SECRET),
        "the secret reached the audit log"
    );
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

fn assert_redacted(text: &str) {
    assert!(text.contains(REDACTED_KEY), "{text}");
    assert!(!text.contains(FAKE_AWS_KEY), "{text}");
    assert!(!text.contains(FAKE_AWS_SECRET), "{text}");
}

fn assert_denied(answer: &Value, policy_id: &str) {
    assert_eq!(answer["error"]["code"], -31001, "{answer}");
    assert_eq!(answer["error"]["data"]["policy_id"], policy_id, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_filtered_judged_audited_and_redacted_in_both_eras() {
    if !sdk_present() {
        return;
    }
    let server = SdkServer::start(false).await;
    let proxy = proxy_for(&server, None).await;
    for era in ERAS {
        let sub = format!("resources-{era:?}");
        let mut client = Client::open(&proxy, era, &sub).await;

        let list = client.rpc("resources/list", json!({})).await;
        let uris = names(&list["result"]["resources"], "uri");
        assert!(
            has(&uris, "file:///workspace/readme.txt"),
            "{era:?}: {uris:?}"
        );
        assert!(has(&uris, "demo://secret"), "{era:?}: {uris:?}");
        assert!(!has(&uris, "file:///etc/passwd"), "{era:?}: {uris:?}");
        let listed = event_of(&proxy, &sub, |e| {
            e["event_type"] == "list" && e["extra"]["method"] == "resources/list"
        })
        .await;
        assert_eq!(listed["extra"]["hidden"], 1, "{listed}");
        assert_eq!(listed["extra"]["listed"], 3, "{listed}");
        let templates = client.rpc("resources/templates/list", json!({})).await;
        let kept = names(&templates["result"]["resourceTemplates"], "uriTemplate");
        assert_eq!(kept, vec!["file:///workspace/{name}"], "{era:?}");

        // Allowed: the upstream answers; request and result are audited with the normalised target.
        let read = client.read("file:///workspace/readme.txt").await;
        assert_eq!(
            read["result"]["contents"][0]["text"], "Hello from the toolgate SDK test server.\n",
            "{era:?}: {read}"
        );
        let request = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["target"] == "/workspace/readme.txt"
        })
        .await;
        assert_eq!(request["extra"]["method"], "resources/read");
        assert_eq!(request["policy_result"], "allow");
        assert_eq!(request["policy_id"], "toolgate.filesystem.read");
        let result = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["extra"]["decision_event"] == request["id"]
        })
        .await;
        assert_eq!(result["extra"]["method"], "resources/read");
        assert_eq!(result["target"], "/workspace/readme.txt", "{result}");

        // A template's expansion is read like any file under a root.
        let templated = client.read("file:///workspace/notes.txt").await;
        assert_eq!(
            templated["result"]["contents"][0]["text"],
            "(fake) contents of /workspace/notes.txt\n"
        );

        // Denied: a system path; recorded with its method and target, and never answered by the upstream.
        let denied = client.read("file:///etc/passwd").await;
        assert_denied(&denied, "toolgate.filesystem.system_path");
        let deny = event_of(&proxy, &sub, |e| e["event_type"] == "policy_deny").await;
        assert_eq!(deny["extra"]["method"], "resources/read", "{deny}");
        assert_eq!(deny["target"], "/etc/passwd");

        // A secret in a resource's contents is redacted before the agent sees it.
        let secret = client.read("demo://secret").await;
        let text = secret["result"]["contents"][0]["text"].as_str().unwrap();
        assert_redacted(text);
        let redacted = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["dlp_action"] == "redact"
        })
        .await;
        assert_eq!(redacted["extra"]["method"], "resources/read");
        assert!(
            redacted["dlp_findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["type"] == "aws_access_key"),
            "{redacted}"
        );
    }
    // The server itself: both allowed reads of each era arrived, the denied one never did.
    assert_eq!(
        server
            .got("resources/read", "file:///workspace/readme.txt")
            .await,
        2
    );
    assert_eq!(server.got("resources/read", "demo://secret").await, 2);
    assert_eq!(server.got("resources/read", "file:///etc/passwd").await, 0);
    assert_no_secret_in_audit_log(&proxy).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_tool_results_are_judged_and_redacted_in_both_eras() {
    if !sdk_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = SdkServer::start(false).await;
    let proxy = proxy_for(&server, Some(policies_for_sdk_tools(dir.path(), None))).await;
    for era in ERAS {
        let sub = format!("prompts-{era:?}");
        let mut client = Client::open(&proxy, era, &sub).await;

        let prompts = client.rpc("prompts/list", json!({})).await;
        let listed = names(&prompts["result"]["prompts"], "name");
        assert!(
            has(&listed, "summarise") && has(&listed, "leak"),
            "{listed:?}"
        );
        let event = event_of(&proxy, &sub, |e| {
            e["event_type"] == "list" && e["extra"]["method"] == "prompts/list"
        })
        .await;
        assert_eq!(event["extra"]["hidden"], 0);

        let summary = client
            .rpc(
                "prompts/get",
                json!({ "name": "summarise", "arguments": { "text": "toolgate judges prompts" } }),
            )
            .await;
        assert_eq!(
            summary["result"]["messages"][0]["content"]["text"],
            "Summarise the following text in three sentences.\n\ntoolgate judges prompts",
            "{era:?}: {summary}"
        );
        let request = event_of(&proxy, &sub, |e| {
            e["event_type"] == "request" && e["tool_name"] == "summarise"
        })
        .await;
        assert_eq!(request["extra"]["method"], "prompts/get");
        assert_eq!(request["policy_id"], "toolgate.prompts.allowed");
        let result = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["extra"]["decision_event"] == request["id"]
        })
        .await;
        assert_eq!(result["tool_name"], "summarise");

        let leak = client.rpc("prompts/get", json!({ "name": "leak" })).await;
        let text = leak["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap();
        assert!(
            text.starts_with("Use these credentials to deploy:"),
            "{text}"
        );
        assert_redacted(text);
        let outcome = event_of(&proxy, &sub, |e| {
            e["event_type"] == "result" && e["tool_name"] == "leak"
        })
        .await;
        assert_eq!(outcome["dlp_action"], "redact", "{outcome}");

        // A tool result: both the text and the structured copy of the key are redacted.
        let leaked = client.call("leak_secret", json!({})).await;
        let redacted_secret = "[REDACTED:aws_secret_key]";
        assert_eq!(
            leaked["result"]["content"][0]["text"],
            format!("AWS_ACCESS_KEY_ID={REDACTED_KEY}\nAWS_SECRET_ACCESS_KEY={redacted_secret}\n"),
            "{era:?}: {leaked}"
        );
        assert_eq!(
            leaked["result"]["structuredContent"],
            json!({ "aws_access_key_id": REDACTED_KEY, "aws_secret_access_key": redacted_secret }),
            "{era:?}: {leaked}"
        );
        let outcome = event_of(&proxy, &sub, |e| {
            e["event_type"] == "tool_result" && e["tool_name"] == "leak_secret"
        })
        .await;
        assert_eq!(outcome["dlp_action"], "redact");
        // The findings point into both copies.
        let findings = outcome["dlp_findings"].to_string();
        assert!(
            findings.contains("\"/content/") && findings.contains("\"/structuredContent/"),
            "{outcome}"
        );

        // An ordinary call goes through (at 2026-07-28 with the Mcp-Param-Text header the SDK checks);
        // a denied one never reaches the server.
        let echo = client.call("echo", json!({ "text": "hello sdk" })).await;
        assert_eq!(
            echo["result"]["content"][0]["text"], "hello sdk",
            "{era:?}: {echo}"
        );
        let denied = client
            .call("read_file", json!({ "path": "/etc/passwd" }))
            .await;
        assert_denied(&denied, "toolgate.filesystem.system_path");
        event_of(&proxy, &sub, |e| {
            e["event_type"] == "policy_deny" && e["tool_name"] == "read_file"
        })
        .await;
    }
    assert_eq!(server.got("tools/call", "echo").await, 2);
    assert_eq!(server.got("tools/call", "leak_secret").await, 2);
    assert_eq!(server.got("prompts/get", "leak").await, 2);
    assert_eq!(server.got("tools/call", "read_file").await, 0);
    assert_no_secret_in_audit_log(&proxy).await;
    proxy.stop().await;
}

/// GET or POST on the admin API.
async fn admin(method: Method, proxy: &Proxy, path: &str) -> Answer {
    let auth = format!("Bearer {ADMIN}");
    common::send(method, &proxy.url(path), &[("authorization", &auth)], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_tool_is_hidden_and_a_rug_pull_caught_and_approved_in_both_eras() {
    if !sdk_present() {
        return;
    }
    for era in ERAS {
        // rug_pull changes the server for good: a fresh server (and toolgate) per era.
        let dir = tempfile::tempdir().unwrap();
        let server = SdkServer::start(false).await;
        let proxy = proxy_for(&server, Some(policies_for_sdk_tools(dir.path(), None))).await;
        let sub = format!("tools-{era:?}");
        let mut client = Client::open(&proxy, era, &sub).await;

        let first = client.rpc("tools/list", json!({})).await;
        let tools = names(&first["result"]["tools"], "name");
        for shown in ["echo", "read_file", "leak_secret", "rug_pull"] {
            assert!(
                has(&tools, shown),
                "{era:?}: {shown} missing from {tools:?}"
            );
        }
        assert!(!has(&tools, "run_shell"), "{era:?}: {tools:?}");
        assert!(!has(&tools, "poisoned_helper"), "{era:?}: {tools:?}");
        let pinned = event_of(&proxy, &sub, |e| {
            e["event_type"] == "tool_definition" && e["tool_name"] == "poisoned_helper"
        })
        .await;
        assert_eq!(pinned["extra"]["status"], "new");
        let listed = event_of(&proxy, &sub, |e| {
            e["event_type"] == "list" && e["extra"]["method"] == "tools/list"
        })
        .await;
        assert_eq!(listed["extra"]["hidden"], 2, "{listed}");
        let definitions = admin(Method::GET, &proxy, "/api/v1/tools").await.json();
        let poisoned = definitions["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "poisoned_helper")
            .cloned()
            .expect("poisoned_helper pinned");
        assert!(
            poisoned["poisoning"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "hidden_instruction")),
            "{poisoned}"
        );
        let call = client.call("poisoned_helper", json!({ "note": "x" })).await;
        assert_denied(&call, "toolgate.tools.poisoned");
        assert!(
            !whole_audit_log(&proxy).await.contains("id_rsa"),
            "the poisoned text reached the audit log"
        );

        let echo = client.call("echo", json!({ "text": "before" })).await;
        assert_eq!(echo["result"]["content"][0]["text"], "before", "{echo}");
        let pulled = client.call("rug_pull", json!({})).await;
        let said = pulled["result"]["content"][0]["text"].as_str().unwrap();
        assert!(said.starts_with("echo's description changed"), "{said}");

        // The next list shows the changed echo is hidden, and a call to it is denied until approved.
        let second = client.rpc("tools/list", json!({})).await;
        let tools = names(&second["result"]["tools"], "name");
        assert!(!has(&tools, "echo"), "{era:?}: {tools:?}");
        assert!(has(&tools, "read_file"), "{era:?}: {tools:?}");
        let changed = event_of(&proxy, &sub, |e| {
            e["event_type"] == "tool_definition" && e["extra"]["status"] == "changed"
        })
        .await;
        assert_eq!(changed["tool_name"], "echo");
        let refused = client.call("echo", json!({ "text": "during" })).await;
        assert_denied(&refused, "toolgate.tools.changed");

        let pending = admin(Method::GET, &proxy, "/api/v1/tools?status=changed").await;
        assert_eq!(pending.status, StatusCode::OK);
        let pending = pending.json();
        assert_eq!(names(&pending["tools"], "name"), vec!["echo"], "{pending}");
        assert_eq!(pending["tools"][0]["upstream"], UPSTREAM);
        let approve = admin(
            Method::POST,
            &proxy,
            &format!("/api/v1/tools/{UPSTREAM}/echo/approve"),
        )
        .await;
        assert_eq!(approve.status, StatusCode::OK, "{approve:?}");
        assert_eq!(approve.json()["status"], "pinned");

        let third = client.rpc("tools/list", json!({})).await;
        assert!(has(&names(&third["result"]["tools"], "name"), "echo"));
        let echo = client.call("echo", json!({ "text": "after" })).await;
        assert_eq!(echo["result"]["content"][0]["text"], "after", "{echo}");
        // The denied calls (the changed echo, the poisoned helper) never reached the server.
        assert_eq!(server.got("tools/call", "echo").await, 2, "{era:?}");
        assert_eq!(server.got("tools/call", "poisoned_helper").await, 0);
        proxy.stop().await;
    }
}

/// A 2025-era `tools/call` read as its SSE stream arrives: each request the upstream sends the agent on it is
/// answered with what `reply` returns for it (nothing: left unanswered). Returns the call's answer and the
/// server-to-client requests the agent saw.
async fn call_streaming(
    agent: &Agent,
    tool: &str,
    arguments: Value,
    reply: impl Fn(&Value) -> Option<Value>,
) -> (Value, Vec<Value>) {
    let body = json!({ "jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": { "name": tool, "arguments": arguments } });
    let request = Request::builder()
        .method(Method::POST)
        .uri(&agent.url)
        .header("authorization", format!("Bearer {}", agent.token))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "mcp-session-id",
            agent.session.as_deref().expect("a session"),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = common::client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut pending, mut seen, mut answer) = (String::new(), Vec::new(), None);
    while answer.is_none() {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("the stream goes on");
        let Some(frame) = frame else { break };
        if let Ok(data) = frame.unwrap().into_data() {
            pending.push_str(&String::from_utf8_lossy(&data));
        }
        // Whole lines only: an event's data may arrive split over frames.
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(message) = line
                .trim_end()
                .strip_prefix("data:")
                .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
            else {
                continue;
            };
            if message["id"] == 77 && message.get("method").is_none() {
                answer = Some(message);
            } else if message.get("method").is_some() && message.get("id").is_some() {
                seen.push(message.clone());
                if let Some(result) = reply(&message) {
                    let response =
                        json!({ "jsonrpc": "2.0", "id": message["id"], "result": result });
                    let posted = agent.post(&response).await;
                    assert_eq!(posted.status, StatusCode::ACCEPTED, "{posted:?}");
                }
            }
        }
    }
    (answer.expect("the call's answer in the stream"), seen)
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_from_the_sdk_server_is_refused_by_default_and_delivered_when_allowed() {
    if !sdk_present() {
        return;
    }
    // Default sampling.mode (escalate, no reviewer): the agent never sees the request, the server gets the
    // refusal and its tool says so.
    let dir = tempfile::tempdir().unwrap();
    let server = SdkServer::start(true).await;
    let proxy = proxy_for(&server, Some(policies_for_sdk_tools(dir.path(), None))).await;
    let mut agent = Agent::new(&proxy, UPSTREAM, token("sampling-escalated", &[]));
    agent.initialize().await;
    let question = json!({ "question": "What is two plus two?" });
    let (answer, seen) = call_streaming(&agent, "ask_model", question.clone(), |_| None).await;
    assert!(seen.is_empty(), "the agent saw {seen:?}");
    // The server got toolgate's refusal of its request, and the SDK made it the call's JSON-RPC error.
    let refused = server.received().await;
    assert_eq!(
        refused.iter().filter(|m| m["error"] == -31002).count(),
        1,
        "{refused:?}"
    );
    assert_eq!(answer["error"]["code"], -31002, "{answer}");
    assert_eq!(
        answer["error"]["data"]["policy_id"],
        "toolgate.sampling.create_message"
    );
    let escalated = event_of(&proxy, "sampling-escalated", |e| {
        e["event_type"] == "policy_escalate" && e["extra"]["method"] == "sampling/createMessage"
    })
    .await;
    assert_eq!(escalated["extra"]["direction"], "server_to_client");
    assert_eq!(escalated["policy_id"], "toolgate.sampling.create_message");
    // The call itself was allowed and its outcome recorded.
    event_of(&proxy, "sampling-escalated", |e| {
        e["event_type"] == "tool_result" && e["tool_name"] == "ask_model"
    })
    .await;
    proxy.stop().await;
    drop(server);

    // sampling.mode = "allow": the request reaches the agent, its answer the server, and the tool returns it.
    // Elicitation is allowed by the shipped library's default: it travels the same way.
    let dir = tempfile::tempdir().unwrap();
    let server = SdkServer::start(true).await;
    let proxy = proxy_for(
        &server,
        Some(policies_for_sdk_tools(dir.path(), Some("allow"))),
    )
    .await;
    let mut agent = Agent::new(&proxy, UPSTREAM, token("sampling-allowed", &[]));
    agent.initialize().await;
    let (answer, seen) = call_streaming(&agent, "ask_model", question, |request| {
        (request["method"] == "sampling/createMessage").then(|| {
            json!({ "role": "assistant", "content": { "type": "text", "text": "four" }, "model": "test-model", "stopReason": "endTurn" })
        })
    })
    .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["method"], "sampling/createMessage");
    assert_eq!(
        seen[0]["params"]["messages"][0]["content"]["text"],
        "What is two plus two?"
    );
    assert_eq!(text_of(&answer), "four", "{answer}");
    let refusals = server.received().await;
    assert!(
        refusals.iter().all(|m| m["error"].is_null()),
        "{refusals:?}"
    );
    let delivered = event_of(&proxy, "sampling-allowed", |e| {
        e["event_type"] == "request" && e["extra"]["method"] == "sampling/createMessage"
    })
    .await;
    assert_eq!(delivered["extra"]["direction"], "server_to_client");
    assert_eq!(delivered["policy_result"], "allow");

    let (answer, seen) = call_streaming(
        &agent,
        "ask_user",
        json!({ "question": "Favourite colour?" }),
        |request| {
            (request["method"] == "elicitation/create")
                .then(|| json!({ "action": "accept", "content": { "answer": "blue" } }))
        },
    )
    .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(text_of(&answer), "blue", "{answer}");
    let elicited = event_of(&proxy, "sampling-allowed", |e| {
        e["event_type"] == "request" && e["extra"]["method"] == "elicitation/create"
    })
    .await;
    assert_eq!(elicited["extra"]["direction"], "server_to_client");
    proxy.stop().await;
}
