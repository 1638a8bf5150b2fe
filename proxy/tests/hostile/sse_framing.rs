//! An upstream that frames its own Server-Sent Events: what the agent reads must be exactly what toolgate
//! judged. Found by the `sse` fuzz target (docs/fuzzing.md): toolgate ended lines at LF only, the SSE
//! standard (and so an agent's client) also at a lone CR; an event hidden behind CRs in the `event:` field of
//! a judged one reached the agent unjudged and unredacted.

use serde_json::{json, Value};

use crate::common::upstream::{State, FAKE_AWS_KEY};
use crate::common::{token, with_http_upstream, Agent};

/// The events of an SSE body as the standard splits them (lines end at CRLF, CR or LF): each event's data.
fn standard_events(body: &str) -> Vec<String> {
    let (mut events, mut data, mut has_data) = (Vec::new(), String::new(), false);
    let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalised.split('\n') {
        if line.is_empty() {
            if has_data {
                events.push(std::mem::take(&mut data));
            }
            has_data = false;
        } else if let Some(value) = line.strip_prefix("data:") {
            if has_data {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
            has_data = true;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_hidden_behind_carriage_returns_is_judged_like_any_other() {
    // A standard parser reads two answers here: the first, carrying a key, hidden in the `event:` line
    // (`\r` ends that line, `\r\r` adds a blank one), then a harmless one.
    let leak = json!({ "jsonrpc": "2.0", "id": "ID", "result": { "content": [{ "type": "text", "text": format!("key {FAKE_AWS_KEY}") }] } });
    let harmless = json!({ "jsonrpc": "2.0", "id": "ID", "result": { "content": [{ "type": "text", "text": "nothing to see" }] } });
    let body = format!("event: message\rdata: {leak}\r\r\r\ndata: {harmless}\n\n");
    let (proxy, _mock) = with_http_upstream(
        State {
            raw_call_sse: Some(body),
            ..Default::default()
        },
        None,
    )
    .await;
    let mut agent = Agent::new(&proxy, "web", token("sse-framer", &[]));
    agent.initialize().await;
    let answer = agent.call("echo", json!({ "text": "hi" })).await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();

    assert!(
        !text.contains(FAKE_AWS_KEY),
        "the key reached the agent: {text:?}"
    );
    assert!(
        !text.contains('\r'),
        "a line break toolgate did not judge: {text:?}"
    );
    // Every event the agent's parser finds is a JSON-RPC message toolgate judged (and redacted).
    let events = standard_events(&text);
    assert!(!events.is_empty(), "{text:?}");
    for data in events {
        let message: Value =
            serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data:?}"));
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
    }
}
