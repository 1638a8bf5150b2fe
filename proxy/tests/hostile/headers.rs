//! Secrets in the HTTP headers toolgate forwards to an HTTP upstream beside the body (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` values and names, `Last-Event-ID`, `tracestate`, `Accept`): each is
//! refused (400, `-32001`, the header named and its value not echoed) before the upstream sees anything, on a
//! `POST`, a `GET` and a `DELETE`, and recorded without the secret. Headers that mirror the body still pass.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::upstream::{self, MockUpstream, FAKE_AWS_KEY};
use crate::common::{audit_events, send, token, with_http_upstream, Agent};

/// Everything the mock saw: bodies, and the headers of every POST, GET and DELETE.
fn seen_by_upstream(mock: &MockUpstream) -> String {
    let state = &mock.state;
    let mut text: Vec<String> = state
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _, _)| m.to_string())
        .collect();
    for list in [&state.headers, &state.gets, &state.deletes] {
        for headers in list.lock().unwrap().iter() {
            text.push(format!("{headers:?}"));
        }
    }
    text.join("\n")
}

fn echo(id: i64) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": "hi" } } })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_forwarded_header_never_reaches_the_upstream() {
    let (proxy, mock) = with_http_upstream(upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("agent-headers", &[]));
    agent.initialize().await;
    let session = agent.session.clone().unwrap();
    let auth = format!("Bearer {}", agent.token);
    let base = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];

    // The control: headers that say what the body says are forwarded as sent.
    let mut good = base.to_vec();
    good.extend([
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-param-text", "hi"),
    ]);
    let answer = send(Method::POST, &agent.url, &good, echo(1)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.message().get("result").is_some(), "{answer:?}");
    let forwarded = mock.state.headers.lock().unwrap().last().cloned().unwrap();
    assert_eq!(forwarded["mcp-param-text"], "hi");
    assert_eq!(forwarded["mcp-name"], "echo");
    let calls_before = mock.state.tool_calls().len();

    let version = format!("2025-11-25 {FAKE_AWS_KEY}");
    let accept = format!("application/json, text/event-stream, {FAKE_AWS_KEY}");
    let tracestate = format!("vendor={FAKE_AWS_KEY}");
    let param_name = format!("mcp-param-{}", FAKE_AWS_KEY.to_ascii_lowercase());
    let hiding_places: Vec<(&str, &str, &str)> = vec![
        ("mcp-protocol-version", &version, "MCP-Protocol-Version"),
        ("mcp-method", FAKE_AWS_KEY, "Mcp-Method"),
        ("mcp-name", FAKE_AWS_KEY, "Mcp-Name"),
        ("mcp-param-note", FAKE_AWS_KEY, "Mcp-Param-note"),
        (&param_name, "hi", "Mcp-Param-*"),
        ("last-event-id", FAKE_AWS_KEY, "Last-Event-ID"),
        ("tracestate", &tracestate, "tracestate"),
        ("accept", &accept, "Accept"),
    ];
    for (i, (name, value, shown)) in hiding_places.iter().enumerate() {
        let mut headers: Vec<(&str, &str)> =
            base.iter().filter(|(k, _)| k != name).cloned().collect();
        headers.push((name, value));
        let answer = send(Method::POST, &agent.url, &headers, echo(10 + i as i64)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: {answer:?}");
        let error = &answer.message()["error"];
        assert_eq!(error["code"], -32001, "{name}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(shown), "{name}: {message}");
        assert_eq!(error["data"]["header"], *shown);
        assert!(
            !answer_text(&answer).contains(FAKE_AWS_KEY),
            "{name}: echoed"
        );
    }
    // The same on the GET stream and on DELETE: nothing is forwarded, and the session is still there.
    for method in [Method::GET, Method::DELETE] {
        let mut headers = base.to_vec();
        headers.push(("last-event-id", FAKE_AWS_KEY));
        let answer = send(method.clone(), &agent.url, &headers, "").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method}: {answer:?}"
        );
    }
    assert_eq!(
        mock.state.tool_calls().len(),
        calls_before,
        "no refused call was forwarded"
    );
    assert!(mock.state.gets.lock().unwrap().is_empty());
    assert!(mock.state.deletes.lock().unwrap().is_empty());
    let seen = seen_by_upstream(&mock);
    assert!(
        !seen.contains(FAKE_AWS_KEY),
        "the upstream saw the key: {seen}"
    );
    assert!(!seen
        .to_ascii_lowercase()
        .contains(&FAKE_AWS_KEY.to_ascii_lowercase()));
    assert_eq!(
        agent
            .call("echo", json!({ "text": "still" }))
            .await
            .error_code(),
        None
    );

    // Each refusal is recorded, the header named, the key nowhere.
    let events = audit_events(&proxy.app, 100).await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["policy_id"] == "toolgate.mcp.bad_header")
        .collect();
    assert_eq!(refused.len(), hiding_places.len() + 2, "{events:?}");
    let rows = serde_json::to_string(&events).unwrap();
    assert!(!rows.contains(FAKE_AWS_KEY), "{rows}");
    assert!(!rows
        .to_ascii_lowercase()
        .contains(&FAKE_AWS_KEY.to_ascii_lowercase()));
    proxy.stop().await;
}

fn answer_text(answer: &crate::common::Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// The protocol version a session keeps is stored (`mcp_sessions.protocol_version` on PostgreSQL) and audited
/// (`session_start`): only a version toolgate knows is kept, whatever the upstream's answer header or the
/// agent's `initialize` says.
async fn only_a_known_protocol_version_is_kept(database_url: String) {
    let mock = upstream::start(upstream::State {
        initialize_version_header: Some(format!("2025-11-25 {FAKE_AWS_KEY}")),
        unique_sessions: true,
        ..Default::default()
    })
    .await;
    let proxy = crate::common::start(crate::common::Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        database_url: Some(database_url.clone()),
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "web", token("agent-version", &[]));
    // The upstream's header is not a version: the agent's known request is kept instead.
    let known = initialize(&mut agent, "2025-06-18").await;
    // Neither is known: none is kept.
    let unknown = initialize(&mut agent, "2031-01-01-draft").await;

    let events = audit_events(&proxy.app, 50).await;
    let started = |sid: &str| -> Value {
        events
            .iter()
            .find(|e| e["event_type"] == "session_start" && e["session_id"] == sid)
            .unwrap_or_else(|| panic!("no session_start for {sid}: {events:?}"))["extra"]
            ["protocol_version"]
            .clone()
    };
    assert_eq!(started(&known), "2025-06-18");
    assert_eq!(started(&unknown), Value::Null);
    let rows = serde_json::to_string(&events).unwrap();
    assert!(!rows.contains("2031-01-01-draft"), "{rows}");
    assert!(
        !rows.contains("[REDACTED"),
        "nothing needed redacting: {rows}"
    );

    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
        let mut stored: Vec<Option<String>> =
            sqlx::query_scalar("SELECT protocol_version FROM mcp_sessions")
                .fetch_all(&pool)
                .await
                .unwrap();
        stored.sort();
        assert_eq!(stored, [None, Some("2025-06-18".to_owned())]);
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_known_protocol_version_is_kept_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("audit.db").display());
    only_a_known_protocol_version_is_kept(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_known_protocol_version_is_kept_postgres() {
    crate::common::on_postgres(only_a_known_protocol_version_is_kept).await;
}

/// An `initialize` asking for `version`; answers the session id.
async fn initialize(agent: &mut Agent, version: &str) -> String {
    let params = json!({ "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } });
    let answer = agent.request("initialize", params).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.header("mcp-session-id").unwrap()
}
