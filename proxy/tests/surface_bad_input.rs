//! Bad input across the MCP surface: each gets a precise answer and an audit row, and the proxy keeps serving.

mod common;

use std::time::Duration;

use common::upstream::{self, FAKE_AWS_KEY};
use common::{audit_events, eventually, token, Agent};
use serde_json::{json, Value};

async fn proxy() -> (common::Proxy, upstream::MockUpstream) {
    common::with_http_upstream(upstream::State::default(), None).await
}

async fn outcome_with_error(proxy: &common::Proxy, needle: &str) -> Value {
    eventually(Duration::from_secs(5), || async {
        audit_events(&proxy.app, 100).await.into_iter().find(|e| {
            e["event_type"] == "tool_result"
                && e["error"].as_str().is_some_and(|err| err.contains(needle))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_that_are_not_an_object_are_refused_and_recorded() {
    let (proxy, mock) = proxy().await;
    let mut agent = Agent::new(&proxy, "web", token("agent-b", &[]));
    agent.initialize().await;
    for method in ["tools/call", "prompts/get", "resources/read", "frobnicate"] {
        let answer = agent.request(method, json!(["not", "an", "object"])).await;
        assert_eq!(
            answer.error_code(),
            Some(-32602),
            "{method}: {:?}",
            answer.message()
        );
    }
    assert!(mock.state.tool_calls().is_empty());
    let invalid = audit_events(&proxy.app, 50)
        .await
        .into_iter()
        .filter(|e| e["policy_id"] == "toolgate.invalid_params")
        .count();
    assert_eq!(invalid, 4);
    // Still serving.
    let ok = agent.call("echo", json!({ "text": "hi" })).await.message();
    assert_eq!(ok["result"]["content"][0]["text"], "called echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_json_rpc_is_refused_and_recorded() {
    let (proxy, _mock) = proxy().await;
    let mut agent = Agent::new(&proxy, "web", token("agent-b", &[]));
    agent.initialize().await;
    let answer = agent
        .call("echo", json!({ "text": "x", "mode": "not_jsonrpc" }))
        .await;
    assert_eq!(answer.error_code(), Some(-31003), "{:?}", answer.message());
    assert!(!String::from_utf8_lossy(&answer.body).contains("hello"));
    outcome_with_error(&proxy, "not a JSON-RPC response").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_the_answer_ends_with_an_error_event() {
    let (proxy, _mock) = proxy().await;
    let mut agent = Agent::new(&proxy, "web", token("agent-b", &[]));
    agent.initialize().await;
    let answer = agent
        .call("echo", json!({ "text": "x", "mode": "cut_stream" }))
        .await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(text.contains("notifications/progress"), "{text}");
    assert_eq!(answer.error_code(), Some(-31003), "{text}");
    outcome_with_error(&proxy, "ended before the answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_is_judged_too() {
    let (proxy, _mock) = proxy().await;
    let mut agent = Agent::new(&proxy, "web", token("agent-b", &[]));
    agent.initialize().await;
    let answer = agent
        .call("echo", json!({ "text": "x", "mode": "server_error" }))
        .await;
    assert_eq!(answer.status.as_u16(), 500);
    let message = answer.message();
    let text = message["error"]["message"].as_str().unwrap();
    assert!(!text.contains(FAKE_AWS_KEY), "{text}");
    assert!(text.contains("[REDACTED:aws_access_key]"), "{text}");
    let outcome = outcome_with_error(&proxy, "JSON-RPC error").await;
    assert_eq!(outcome["response_code"], 500);
    assert_eq!(outcome["dlp_action"], "redact");
}
