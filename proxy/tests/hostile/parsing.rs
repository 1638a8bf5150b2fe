//! Bodies built to make parsing expensive or to nest past what the classifier inspects: refused with
//! `-32600` before any judging, in one linear pass (docs/mcp.md, "Structure limits").

use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::common::{send, start, token, Agent, Answer, Options};

/// A stateless-era `tools/call` of `echo` whose `arguments` is the raw JSON text `arguments`, sent as
/// written (not re-serialised: duplicate keys and deep nesting survive).
async fn call_raw(agent: &Agent, arguments: &str) -> Answer {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{arguments},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    );
    let auth = format!("Bearer {}", agent.token);
    send(
        Method::POST,
        &agent.url,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        body,
    )
    .await
}

/// The JSON-RPC error of a refused body: HTTP 400, code -32600; its message.
fn refusal(answer: &Answer) -> String {
    let message: Value = answer.json();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{message}");
    assert_eq!(message["error"]["code"], -32600, "{message}");
    message["error"]["message"].as_str().unwrap().to_owned()
}

/// `{"text": "x", "n": [[…]]}` with `arrays` nested arrays: the arguments sit at the third level of the
/// message (message, params, arguments), so the deepest array is at level `3 + arrays`.
fn nested(arrays: usize) -> String {
    format!(
        r#"{{"text":"x","n":{}{}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_structure_limits_are_refused_before_judging() {
    let proxy = start(Options::default()).await;
    let agent = Agent::new(&proxy, "demo", token("parser", &[]));

    // 65 levels: refused.
    let answer = call_raw(&agent, &nested(62)).await;
    assert_eq!(
        refusal(&answer),
        "invalid request: the message nests deeper than 64 levels"
    );
    // 64 levels: judged and run; the classifier inspects every level an accepted call can have.
    let answer = call_raw(&agent, &nested(61)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let message = answer.message();
    assert_eq!(message["result"]["content"][0]["text"], "x", "{message}");

    // Far deeper than serde_json's own recursion limit: the same refusal, not a parse error.
    let answer = call_raw(&agent, &nested(20_000)).await;
    assert_eq!(
        refusal(&answer),
        "invalid request: the message nests deeper than 64 levels"
    );

    // A key longer than 4096 bytes.
    let long_key = format!(r#"{{"text":"x","{}":1}}"#, "k".repeat(4097));
    assert_eq!(
        refusal(&call_raw(&agent, &long_key).await),
        "invalid request: an object key is longer than 4096 bytes"
    );

    // A duplicate hidden after thousands of distinct keys is still found.
    let mut arguments = String::from(r#"{"text":"x""#);
    for i in 0..4000 {
        arguments.push_str(&format!(r#","k{i}":0"#));
    }
    arguments.push_str(r#","text":"y"}"#);
    assert_eq!(
        refusal(&call_raw(&agent, &arguments).await),
        "invalid request: duplicate key \"text\": keys must be unique"
    );
    proxy.stop().await;
}
