//! End to end: the real server on loopback, real upstreams (the demo stdio child and a streamable-HTTP mock),
//! MCP in both protocol eras, and the audit log behind every decision.

mod common;

use std::time::Duration;

use common::{start, token, upstream, with_http_upstream, Agent, Options};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn text_of(answer: &common::Answer) -> String {
    answer.message()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_2025_era_session_and_decisions() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("agent-1", &["dev"]));
    let init = agent.initialize().await;
    assert_eq!(init.message()["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        init.message()["result"]["serverInfo"]["name"],
        "toolgate-demo"
    );

    // tools/list is filtered through `visible`: no shell role, no run_shell.
    let list = agent.request("tools/list", json!({})).await;
    let names: Vec<String> = list.message()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"echo".to_owned()) && names.contains(&"read_file".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"run_shell".to_owned()),
        "run_shell must be hidden: {names:?}"
    );

    // Allowed: forwarded, answered by the child.
    let echo = agent.call("echo", json!({ "text": "hello" })).await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(text_of(&echo), "hello");

    // Traversal is judged on the normalised target: a policy denial is HTTP 200 with JSON-RPC -31001.
    let denied = agent
        .call(
            "read_file",
            json!({ "path": "/home/projects/../../etc/passwd" }),
        )
        .await;
    assert_eq!(denied.status, StatusCode::OK);
    assert_eq!(denied.error_code(), Some(-31001));
    let msg = denied.message()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.starts_with("denied by policy toolgate.filesystem.system_path: "),
        "{msg}"
    );
    assert!(msg.contains("/etc/passwd"), "{msg}");
    assert_eq!(
        denied.message()["id"],
        json!(4),
        "the error echoes the request id"
    );

    // A write escalates; with no hold it is answered -31002 with the escalation id.
    let esc = agent
        .call(
            "write_file",
            json!({ "path": "/workspace/notes.txt", "content": "hi" }),
        )
        .await;
    assert_eq!(esc.error_code(), Some(-31002));
    let esc_id = esc.message()["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(esc.message()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("escalation pending {esc_id}: ")));
    let query = toolgate::escalation::ListQuery {
        tenant_id: None,
        status: Some(toolgate::escalation::Status::Pending),
        limit: 10,
        cursor: None,
    };
    let pending = proxy.app.escalations.list(&query).await.unwrap();
    assert_eq!(pending.escalations.len(), 1);
    assert_eq!(pending.escalations[0].id, esc_id);

    // Shell is denied without the role.
    let shell = agent.call("run_shell", json!({ "command": "ls" })).await;
    assert_eq!(shell.error_code(), Some(-31001));

    // Another agent cannot use this session; an unknown session is 404 too.
    let mut thief = Agent::new(&proxy, "demo", token("agent-2", &["dev"]));
    thief.session = agent.session.clone();
    let stolen = thief.call("echo", json!({ "text": "x" })).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    thief.session = Some("0123456789abcdef0123456789abcdef".into());
    assert_eq!(
        thief.call("echo", json!({ "text": "x" })).await.status,
        StatusCode::NOT_FOUND
    );

    // DELETE ends the session.
    let auth = format!("Bearer {}", agent.token);
    let sid = agent.session.clone().unwrap();
    let del = common::send(
        Method::DELETE,
        &agent.url,
        &[("authorization", &auth), ("mcp-session-id", &sid)],
        "",
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        agent.call("echo", json!({ "text": "x" })).await.status,
        StatusCode::NOT_FOUND
    );

    // The audit log: every decision, write-ahead before the outcome, and an intact chain.
    let app = proxy.app.clone();
    let events = common::eventually(Duration::from_secs(5), || {
        let app = app.clone();
        async move {
            let events = common::audit_events(&app, 100).await;
            events
                .iter()
                .any(|e| e["event_type"] == "session_end")
                .then_some(events)
        }
    })
    .await;
    let types: Vec<&str> = events
        .iter()
        .rev()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    // The tools/list pinned each of the demo's seven tool definitions (one event each) and was one `list`.
    let mut expected = vec!["session_start"];
    expected.extend(["tool_definition"; 7]);
    expected.extend(["list", "tool_call"]);
    assert_eq!(types[..expected.len()], expected[..], "oldest first");
    assert_eq!(
        types[expected.len() - 1..],
        [
            "tool_call",
            "tool_result",
            "policy_deny",
            "policy_escalate",
            "policy_deny",
            // The thief's use of the session and its guessed id, each refused and recorded.
            "policy_deny",
            "policy_deny",
            "session_end",
            // The ended session presented again.
            "policy_deny"
        ],
        "oldest first"
    );
    let call = events
        .iter()
        .find(|e| e["event_type"] == "tool_call")
        .unwrap();
    assert_eq!(call["agent_id"], "agent-1");
    assert_eq!(call["tool_name"], "echo");
    assert_eq!(call["policy_result"], "allow");
    assert_eq!(
        call["input_hash"],
        toolgate_engine::canonical::input_hash(&json!({ "text": "hello" }))
    );
    assert!(call["extra"]["policy_revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let result = events
        .iter()
        .find(|e| e["event_type"] == "tool_result")
        .unwrap();
    assert_eq!(result["response_code"], 200);
    assert!(result["seq"].as_i64() > call["seq"].as_i64());
    let deny = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "policy_deny")
        .unwrap();
    assert_eq!(deny["target"], "/etc/passwd");
    assert_eq!(deny["policy_id"], "toolgate.filesystem.system_path");
    let report = proxy.app.audit.store().verify(None, None).await.unwrap();
    let report = serde_json::to_value(report).unwrap();
    assert_eq!(report["chain_intact"], true, "{report}");
    // 15, and the three recorded session refusals.
    assert_eq!(report["events_verified"], 18);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_stateless_2026_era() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("agent-s", &[]));
    let echo = agent
        .call_stateless("echo", json!({ "text": "stateless" }))
        .await;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(text_of(&echo), "stateless");
    assert!(echo.header("mcp-session-id").is_none());
    let discover = agent
        .request(
            "server/discover",
            json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } }),
        )
        .await;
    assert_eq!(discover.status, StatusCode::OK);
    assert!(
        discover.message()["result"]["supportedVersions"]
            .as_array()
            .is_some(),
        "{:?}",
        discover.message()
    );
    let denied = agent
        .call_stateless("read_file", json!({ "path": "/etc/shadow" }))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_passthrough_sessions_and_filtering() {
    let (proxy, mock) = with_http_upstream(upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("agent-h", &[]));
    agent.initialize().await;
    assert_eq!(
        agent.session.as_deref(),
        Some("upstream-session-1"),
        "the upstream's session id is passed through"
    );
    let list = agent.request("tools/list", json!({})).await;
    let list = list.message();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "read_file"]);
    let ok = agent.call("echo", json!({ "text": "x" })).await;
    assert_eq!(text_of(&ok), "called echo");
    let denied = agent
        .call("read_file", json!({ "path": "/etc/passwd" }))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    // Only the allowed call reached the upstream, with the upstream's own Host and no agent token.
    let calls = mock.state.tool_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["params"]["name"], "echo");
    for (_, host, has_auth) in mock.state.received.lock().unwrap().iter() {
        assert_eq!(host.as_deref(), Some(mock.addr.to_string().as_str()));
        assert!(!has_auth, "the agent's token must never reach the upstream");
    }
    // The GET stream flows through.
    let auth = format!("Bearer {}", agent.token);
    let sid = agent.session.clone().unwrap();
    let resp = common::client()
        .request(
            hyper::Request::get(&agent.url)
                .header("authorization", &auth)
                .header("mcp-session-id", &sid)
                .header("accept", "text/event-stream")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(frame.data_ref().unwrap()).contains("notifications/message"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_sse_streams_unbuffered_and_discover_400_passes_through() {
    let (proxy, mock) = with_http_upstream(
        upstream::State {
            sse: true,
            legacy_only: true,
            ..Default::default()
        },
        None,
    )
    .await;
    let mut agent = Agent::new(&proxy, "web", token("agent-sse", &[]));
    // A 2025-era server answers server/discover with 400; clients use that to fall back, so it passes through.
    let discover = agent.request("server/discover", json!({})).await;
    assert_eq!(discover.status, StatusCode::BAD_REQUEST);
    assert_eq!(discover.json()["error"]["code"], -32601);
    agent.initialize().await;
    // tools/list over SSE is filtered too.
    let list = agent.request("tools/list", json!({})).await;
    assert_eq!(
        list.message()["result"]["tools"].as_array().unwrap().len(),
        2
    );
    // tools/call: the first event must reach the agent while the upstream still holds the second.
    let body = json!({ "jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": { "name": "echo", "arguments": {} } }).to_string();
    let auth = format!("Bearer {}", agent.token);
    let req = hyper::Request::post(&agent.url)
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", agent.session.as_deref().unwrap())
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = common::client().request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    use http_body_util::BodyExt;
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event before the second is released")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(first.data_ref().unwrap()).contains("notifications/progress"));
    mock.state.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("streamed"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_and_timeout_are_json_rpc_errors_and_audited() {
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "[[upstream]]\nname = \"dead\"\nurl = \"http://{dead}/mcp\"\ntimeout_seconds = 2\n"
    );
    let proxy = start(Options {
        extra_toml: extra,
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "dead", token("agent-d", &[]));
    let down = agent.call_stateless("echo", json!({ "text": "x" })).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.error_code(), Some(-31003), "{:?}", down.message());
    // The demo child answers echo after delay_ms; the upstream timeout is 2 s.
    let mut slow = Agent::new(&proxy, "demo", token("agent-d", &[]));
    let timed_out = slow
        .call_stateless("echo", json!({ "text": "late", "delay_ms": 5000 }))
        .await;
    assert_eq!(
        timed_out.error_code(),
        Some(-31004),
        "{:?}",
        timed_out.message()
    );
    let app = proxy.app.clone();
    let errors = common::eventually(Duration::from_secs(5), || {
        let app = app.clone();
        async move {
            let errs: Vec<Value> = common::audit_events(&app, 100)
                .await
                .into_iter()
                .filter(|e| e["event_type"] == "tool_result")
                .collect();
            (errs.len() == 2).then_some(errs)
        }
    })
    .await;
    for e in errors {
        assert!(e["error"].as_str().unwrap().contains("upstream"), "{e}");
        assert!(e["response_code"].is_null());
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_trusted_only_with_its_ca() {
    let (mock, ca_pem) = upstream::start_tls(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let port = mock.addr.port();
    let extra = format!(
        "[[upstream]]\nname = \"tls\"\nurl = \"https://localhost:{port}/mcp\"\nca_file = \"{}\"\n[[upstream]]\nname = \"untrusted\"\nurl = \"https://localhost:{port}/mcp\"\ntimeout_seconds = 2\n",
        ca.display()
    );
    let proxy = start(Options {
        extra_toml: extra,
        demo: false,
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "tls", token("agent-tls", &[]));
    let ok = agent.call_stateless("echo", json!({ "text": "x" })).await;
    assert_eq!(text_of(&ok), "called echo", "{:?}", ok.message());
    assert_eq!(
        mock.state.received.lock().unwrap()[0].1.as_deref(),
        Some(format!("localhost:{port}").as_str())
    );
    let mut stranger = Agent::new(&proxy, "untrusted", token("agent-tls", &[]));
    let refused = stranger
        .call_stateless("echo", json!({ "text": "x" }))
        .await;
    assert_eq!(
        refused.error_code(),
        Some(-31003),
        "{:?}",
        refused.message()
    );
    assert!(
        refused.message()["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{:?}",
        refused.message()
    );
    assert_eq!(
        mock.state.tool_calls().len(),
        1,
        "the untrusted upstream got nothing"
    );
    proxy.stop().await;
}

/// 2026-07-28 (SEP-2243): the official SDK clients mirror `x-mcp-header` arguments into `Mcp-Param-*` headers and
/// SDK servers refuse a `tools/call` whose header is missing, so toolgate passes them on with `Mcp-Method` and
/// `Mcp-Name` (found with the Python and TypeScript SDKs in `sdk_clients.rs`). The agent's token still is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstream_receives_sep2243_routing_and_param_headers() {
    let (proxy, mock) = with_http_upstream(upstream::State::default(), None).await;
    let auth = format!("Bearer {}", token("agent-p", &[]));
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "hi", "region": "eu" }, "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } });
    let answer = common::send(
        Method::POST,
        &proxy.url("/mcp/web"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-text", "hi"),
            ("Mcp-Param-Region", "eu"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(text_of(&answer), "called echo", "{:?}", answer.message());
    let seen = mock
        .state
        .headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the call reached the upstream");
    for (name, value) in [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-param-text", "hi"),
        ("mcp-param-region", "eu"),
    ] {
        assert_eq!(
            seen.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name} not forwarded: {seen:?}"
        );
    }
    assert!(
        !seen.contains_key("authorization"),
        "the agent's token is never forwarded"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agents_session_cannot_be_taken_over_by_initialize() {
    let (proxy, mock) = with_http_upstream(upstream::State::default(), None).await;
    let mut alice = Agent::new(&proxy, "web", token("alice", &[]));
    alice.initialize().await;
    let mut mallory = Agent::new(&proxy, "web", token("mallory", &[]));
    mallory.session = alice.session.clone();
    // The mock hands out the same session id to every initialize: the binding must not move to mallory.
    let answer = mallory
        .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "m", "version": "1" } }))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let last_init = mock.state.headers.lock().unwrap().last().cloned().unwrap();
    assert!(
        !last_init.contains_key("mcp-session-id"),
        "a session id sent with initialize is not forwarded"
    );
    assert_eq!(
        mallory.call("echo", json!({ "text": "x" })).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        text_of(&alice.call("echo", json!({ "text": "x" })).await),
        "called echo"
    );
    proxy.stop().await;
}
