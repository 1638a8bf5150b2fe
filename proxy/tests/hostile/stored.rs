//! What toolgate stores and writes about an attacker's input: nothing DLP flags reaches the audit log (rows and
//! export), the JSON log lines or `/metrics`, wherever the agent hid it (a tool's name, a path, a policy reason
//! that quotes an argument, the `MCP-Protocol-Version` header, its own JWT `sub`); no input makes an audit row
//! big; and no agent id breaks the metrics exposition.

use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use tracing_subscriber::layer::SubscriberExt;

use crate::common::upstream::{State, FAKE_AWS_KEY};
use crate::common::{self, send, token, Agent, Proxy, ADMIN};

/// A policy set that allows `echo` and denies everything else with a reason quoting the call's arguments, the
/// way a Rego author writing `sprintf` into a reason would.
const QUOTING_POLICY: &str = r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "test.quote", "reason": "not a tool call"}

decision := {"result": "allow", "policy_id": "test.echo", "reason": "echo is harmless"} if {
	input.tool.name == "echo"
}

decision := {
	"result": "deny",
	"policy_id": "test.quote",
	"reason": sprintf("refused %v with %v", [input.tool.name, input.tool.arguments]),
} if {
	input.tool.name != "echo"
}
"#;

/// The JSON log lines written while `f` runs on this thread (the test runs on a current-thread runtime, so the
/// server's tasks log here too).
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn install() -> (Captured, tracing::subscriber::DefaultGuard) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(toolgate::telemetry::logs::JsonLines::to(buffer.clone()));
        let guard = tracing::subscriber::set_default(subscriber);
        (Captured(buffer), guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn admin_get(proxy: &Proxy, path: &str) -> common::Answer {
    send(
        Method::GET,
        &proxy.url(path),
        &[("authorization", &format!("Bearer {ADMIN}"))],
        "",
    )
    .await
}

/// A `tools/call` with extra headers, outside any session (so the header is the protocol version in effect).
async fn call_with_headers(
    agent: &Agent,
    name: &str,
    arguments: Value,
    extra: &[(&str, &str)],
) -> common::Answer {
    let auth = format!("Bearer {}", agent.token);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(extra);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": name, "arguments": arguments } });
    send(Method::POST, &agent.url, &headers, body.to_string()).await
}

/// The tests of this module run one at a time: one captures log lines with a scoped subscriber, and a log call
/// site another test's thread reaches while no subscriber is installed can be cached as disabled for it (tracing
/// keeps call-site interest process-wide; installing a subscriber rebuilds it, a concurrent first hit races that).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn secrets_in_names_paths_reasons_and_headers_are_stored_and_logged_nowhere() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (logs, _guard) = Captured::install();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("quote.rego"), QUOTING_POLICY).unwrap();
    let (proxy, mock) = common::with_http_upstream(State::default(), Some(policies)).await;
    let agent = Agent::new(&proxy, "web", token("agent-stored", &[]));

    // A tool whose name is the key; a path holding it (the policy's reason quotes both back).
    let named = call_with_headers(&agent, FAKE_AWS_KEY, json!({}), &[]).await;
    assert_eq!(named.error_code(), Some(-31001), "{:?}", named.body);
    let path = format!("/tmp/{FAKE_AWS_KEY}/notes.txt");
    let pathed = call_with_headers(&agent, "read_file", json!({ "path": path }), &[]).await;
    assert_eq!(pathed.error_code(), Some(-31001), "{:?}", pathed.body);
    // A call whose protocol version header carries the key: refused before the upstream, and recorded.
    let version = format!("2025-11-25 {FAKE_AWS_KEY}");
    let refused = call_with_headers(
        &agent,
        "echo",
        json!({ "text": "hi" }),
        &[("mcp-protocol-version", &version)],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.error_code(), Some(-32001), "{:?}", refused.body);
    assert!(mock.state.tool_calls().is_empty(), "nothing was forwarded");

    let events = common::eventually(std::time::Duration::from_secs(5), || async {
        let events = common::audit_events(&proxy.app, 50).await;
        // The three refusals; the `dlp_critical` alert's event comes beside them.
        let calls = events.iter().filter(|e| e["event_type"] != "alert").count();
        (calls >= 3).then_some(events)
    })
    .await;
    let rows = serde_json::to_string(&events).unwrap();
    assert!(
        !rows.contains(FAKE_AWS_KEY),
        "audit rows hold the key: {rows}"
    );
    // Not vacuous: each hiding place was stored, redacted where the key was.
    let of_tool = |name: &str| {
        events
            .iter()
            .find(|e| e["tool_name"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {rows}"))
    };
    let named = of_tool("[REDACTED:aws_access_key]");
    assert_eq!(named["event_type"], "policy_deny");
    assert!(named["policy_reason"]
        .as_str()
        .unwrap()
        .starts_with("refused [REDACTED:aws_access_key]"));
    let pathed = of_tool("read_file");
    assert_eq!(pathed["target"], "/tmp/[REDACTED:aws_access_key]/notes.txt");
    assert!(
        pathed["policy_reason"]
            .as_str()
            .unwrap()
            .contains("/tmp/[REDACTED:aws_access_key]/notes.txt"),
        "{pathed}"
    );
    let header = events
        .iter()
        .find(|e| e["policy_id"] == "toolgate.mcp.bad_header")
        .unwrap_or_else(|| panic!("the refused header is recorded: {rows}"));
    assert_eq!(header["event_type"], "policy_deny");
    assert!(
        header["policy_reason"]
            .as_str()
            .unwrap()
            .contains("MCP-Protocol-Version"),
        "{header}"
    );

    // The export an auditor downloads, and the chain over the redacted values.
    let export = admin_get(&proxy, "/api/v1/audit/export?format=ndjson").await;
    assert_eq!(export.status, StatusCode::OK);
    let export = String::from_utf8_lossy(&export.body).into_owned();
    assert!(export.contains("[REDACTED:aws_access_key]"), "{export}");
    assert!(!export.contains(FAKE_AWS_KEY), "{export}");
    let verify = admin_get(&proxy, "/api/v1/audit/verify").await.json();
    assert_eq!(verify["chain_intact"], true, "{verify}");

    // The log lines (`policy decision` among them) and the scrape.
    let lines = logs.text();
    assert!(lines.contains("\"policy decision\""), "{lines}");
    assert!(
        lines.contains("/tmp/[REDACTED:aws_access_key]/notes.txt"),
        "the decision line keeps the rest of the target: {lines}"
    );
    assert!(!lines.contains(FAKE_AWS_KEY), "logged: {lines}");
    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    assert!(!String::from_utf8_lossy(&metrics.body).contains(FAKE_AWS_KEY));
    proxy.stop().await;
}

#[tokio::test]
async fn a_huge_tool_name_is_stored_capped_and_the_chain_still_verifies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (proxy, _mock) = common::with_http_upstream(State::default(), None).await;
    let agent = Agent::new(&proxy, "web", token("agent-big", &[]));
    // As long as the harness's 64 KiB body limit lets it be; the audit unit tests take a 4 MiB one.
    let name = "n".repeat(60_000);
    let answer = call_with_headers(&agent, &name, json!({ "path": "/workspace/a" }), &[]).await;
    assert!(answer.message().get("error").is_some(), "{:?}", answer.body);

    let events = common::eventually(std::time::Duration::from_secs(5), || async {
        let events = common::audit_events(&proxy.app, 10).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let event = &events[0];
    let row = event.to_string();
    assert!(row.len() < 6 * 1024, "a {}-byte row: {row}", row.len());
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let stored = event["tool_name"].as_str().unwrap();
    assert!(stored.starts_with("nnnn"), "{stored}");
    assert!(
        stored.ends_with(&format!("…[sha256:{digest} len:60000]")),
        "{stored}"
    );

    let verify = admin_get(&proxy, "/api/v1/audit/verify").await.json();
    assert_eq!(verify["chain_intact"], true, "{verify}");
    proxy.stop().await;
}

/// One sample line of the Prometheus text format, parsed by its rules: a metric name, optional
/// `{name="value",…}` whose values escape only `\\`, `\"` and `\n`, a space and a value. No raw control
/// character may appear anywhere. Returns the labels with their values unescaped.
fn parse_sample(line: &str) -> Result<(String, Vec<(String, String)>), String> {
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Err(format!("raw control character {c:?}"));
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let (start, c) = chars.next().ok_or("unterminated labels")?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            if c == ',' {
                continue;
            }
            let eq = body[start..].find("=\"").ok_or("label without =\"")? + start;
            let label = body[start..eq].to_owned();
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {label:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().ok_or("unterminated label value")?;
                match c {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    c => value.push(c),
                }
            }
            labels.push((label, value));
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    value
        .parse::<f64>()
        .map_err(|e| format!("bad value {value:?}: {e}"))?;
    Ok((name, labels))
}

#[tokio::test]
async fn an_agent_id_with_control_characters_and_a_secret_makes_a_safe_metric_label() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (proxy, _mock) = common::with_http_upstream(State::default(), None).await;
    let sub = format!("evil\n\"}} 1\nforged_total 9\r\u{1b}[2J {FAKE_AWS_KEY}");
    let agent = Agent::new(&proxy, "web", token(&sub, &[]));
    let answer = call_with_headers(&agent, "echo", json!({ "text": "hi" }), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    let scrape = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8(scrape.body.to_vec()).expect("the exposition is UTF-8");
    assert!(!text.contains(FAKE_AWS_KEY), "{text}");
    let mut agents = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, labels) = parse_sample(line).unwrap_or_else(|e| panic!("{e} in {line:?}"));
        assert_ne!(name, "forged_total", "the agent forged a series: {text}");
        if name == "toolgate_tool_calls_total" {
            agents.extend(
                labels
                    .into_iter()
                    .filter(|(k, _)| k == "agent_id")
                    .map(|(_, v)| v),
            );
        }
    }
    assert_eq!(agents.len(), 1, "{text}");
    let label = &agents[0];
    assert!(!label.chars().any(char::is_control), "{label:?}");
    assert!(label.starts_with("evil\u{FFFD}\"} 1"), "{label:?}");
    assert!(label.ends_with("[REDACTED:aws_access_key]"), "{label:?}");
    proxy.stop().await;
}
