//! `GET /metrics` after real calls: the exact values of the contract's metrics, scraped from the real server.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{send, start, token, Agent, Options};
use hyper::{Method, StatusCode};
use serde_json::json;

/// One sample of the text exposition: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (the subset the `prometheus` crate writes: no escaped quotes in our labels).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let value: f64 = value.parse().expect("the value is a number");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// A scrape of `/metrics`, looked up by name and exact label set.
struct Scrape(Vec<Sample>, String);

impl Scrape {
    /// The value of the series with exactly these labels, if it exists.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.1))
    }

    /// Every series of one metric, as (labels, value).
    fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (&s.labels, s.value))
            .collect()
    }
}

async fn scrape(proxy: &common::Proxy) -> Scrape {
    let answer = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    assert_eq!(answer.status, StatusCode::OK);
    let ct = answer.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    let text = String::from_utf8(answer.body.to_vec()).expect("UTF-8 exposition");
    Scrape(parse(&text), text)
}

/// A port nothing listens on: bound, then released.
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_calls_have_exact_values() {
    let port = dead_port().await;
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{port}/mcp\"\ntimeout_seconds = 2\nworkdir = \"/workspace\"\n[telemetry]\nmetrics_max_agents = 2\n"
        ),
        ..Default::default()
    })
    .await;

    // Before any call: the policy load is counted, every stage is exported at zero, nothing is pending.
    let before = scrape(&proxy).await;
    assert_eq!(
        before.value("toolgate_policy_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(before.value("toolgate_escalations_pending", &[]), 0.0);
    for stage in ["jwt", "session", "dlp", "policy", "forward", "audit"] {
        assert_eq!(
            before.value("toolgate_stage_duration_seconds_count", &[("stage", stage)]),
            0.0
        );
    }

    // agent-a: allowed, allowed with a DLP finding (an e-mail address: medium, allowed), denied, escalated,
    // and an allowed call whose upstream is down.
    let mut a = Agent::new(&proxy, "demo", token("agent-a", &["dev"]));
    let echo = a.call_stateless("echo", json!({ "text": "hello" })).await;
    assert!(
        echo.message().get("result").is_some(),
        "{:?}",
        echo.message()
    );
    let dlp = a
        .call_stateless("echo", json!({ "text": "write to alice@example.com" }))
        .await;
    assert!(dlp.message().get("result").is_some(), "{:?}", dlp.message());
    let denied = a
        .call_stateless("read_file", json!({ "path": "/etc/passwd" }))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    let escalated = a
        .call_stateless(
            "write_file",
            json!({ "path": "/workspace/notes.txt", "content": "hi" }),
        )
        .await;
    assert_eq!(escalated.error_code(), Some(-31002));
    let mut a_dead = Agent::new(&proxy, "dead", a.token.clone());
    let failed = a_dead
        .call_stateless("echo", json!({ "text": "anyone there?" }))
        .await;
    assert_eq!(
        failed.error_code(),
        Some(toolgate::mcp::jsonrpc::UPSTREAM_UNAVAILABLE),
        "{:?}",
        failed.message()
    );

    // A forwarded request that is not a tool call (stdio tools/list) counts as an upstream request, not a call.
    let list = a
        .request(
            "tools/list",
            json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } }),
        )
        .await;
    assert!(
        list.message()["result"]["tools"].is_array(),
        "{:?}",
        list.message()
    );

    // agent-b fills the cap of two; agent-c is folded into `other`.
    let mut b = Agent::new(&proxy, "demo", token("agent-b", &[]));
    b.call_stateless("echo", json!({ "text": "b" })).await;
    let mut c = Agent::new(&proxy, "demo", token("agent-c", &[]));
    c.call_stateless("echo", json!({ "text": "c" })).await;
    let c_denied = c
        .call_stateless("read_file", json!({ "path": "/etc/shadow" }))
        .await;
    assert_eq!(c_denied.error_code(), Some(-31001));

    // The audit writer observes its commit time after the commit; poll for it rather than sleep.
    let m = common::eventually(Duration::from_secs(5), || async {
        let m = scrape(&proxy).await;
        (m.value("toolgate_audit_write_duration_seconds_count", &[]) > 0.0).then_some(m)
    })
    .await;

    let calls = "toolgate_tool_calls_total";
    let expected = [
        ("agent-a", "allow", "demo", 2.0),
        ("agent-a", "deny", "demo", 1.0),
        ("agent-a", "escalate", "demo", 1.0),
        ("agent-a", "allow", "dead", 1.0),
        ("agent-b", "allow", "demo", 1.0),
        ("other", "allow", "demo", 1.0),
        ("other", "deny", "demo", 1.0),
    ];
    for (agent, result, server, n) in expected {
        assert_eq!(
            m.value(
                calls,
                &[
                    ("agent_id", agent),
                    ("policy_result", result),
                    ("mcp_server", server)
                ]
            ),
            n,
            "{agent} {result} {server}"
        );
    }
    assert_eq!(
        m.series(calls).len(),
        expected.len(),
        "no other series: {:?}",
        m.series(calls)
    );
    assert!(
        !m.1.contains("agent-c"),
        "the third agent must not get its own label"
    );

    // One finding type, by type and severity, counted twice: in the echo's arguments and in its result (which
    // the agent received redacted); never a value.
    assert_eq!(
        m.series("toolgate_dlp_findings_total").len(),
        1,
        "{:?}",
        m.series("toolgate_dlp_findings_total")
    );
    assert_eq!(
        m.value(
            "toolgate_dlp_findings_total",
            &[("type", "email"), ("severity", "medium")]
        ),
        2.0
    );
    assert!(!m.1.contains("alice@example.com"));

    assert_eq!(m.value("toolgate_escalations_pending", &[]), 1.0);
    assert_eq!(
        m.value(
            "toolgate_upstream_requests_total",
            &[("mcp_server", "demo"), ("status", "ok")]
        ),
        5.0
    );
    assert_eq!(
        m.value(
            "toolgate_upstream_requests_total",
            &[("mcp_server", "dead"), ("status", "unavailable")]
        ),
        1.0
    );
    assert_eq!(m.series("toolgate_upstream_requests_total").len(), 2);

    // Per stage: 9 MCP requests (stateless, so no handshake) pass jwt and session; 9 pass dlp (the 8 tool calls
    // and the tools/list: every request is scanned whole before it is forwarded); 8 tool calls pass policy; 5 allowed calls are forwarded (4 to demo, 1 to the dead upstream); every decision is recorded
    // before it is answered: 5 write-ahead tool_call + 2 policy_deny + 1 policy_escalate = 8 awaited appends.
    // (The tool_result outcome is queued, not awaited, so it is not in the audit stage.)
    let stage_counts = [
        ("jwt", 9.0),
        ("session", 9.0),
        ("dlp", 9.0),
        ("policy", 8.0),
        ("forward", 5.0),
        ("audit", 8.0),
    ];
    for (stage, n) in stage_counts {
        assert_eq!(
            m.value("toolgate_stage_duration_seconds_count", &[("stage", stage)]),
            n,
            "stage {stage}"
        );
    }
    assert_eq!(
        m.value(
            "toolgate_policy_decision_duration_seconds_count",
            &[("mcp_server", "demo")]
        ),
        7.0
    );
    assert_eq!(
        m.value(
            "toolgate_policy_decision_duration_seconds_count",
            &[("mcp_server", "dead")]
        ),
        1.0
    );
    // Policy decisions resolve microseconds: a finite bucket below 1 ms holds at least one decision.
    let fast = m.value(
        "toolgate_policy_decision_duration_seconds_bucket",
        &[("mcp_server", "demo"), ("le", "0.001")],
    );
    assert!(fast >= 1.0, "no policy decision under 1 ms: {fast}");
    assert_eq!(m.value("toolgate_audit_write_failures_total", &[]), 0.0);
    assert_eq!(m.value("toolgate_policy_errors_total", &[]), 0.0);
    proxy.stop().await;
}
