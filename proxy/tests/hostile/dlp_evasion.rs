//! Secrets smuggled past DLP: outside `arguments` (in `_meta`, another member of `params`, a string `id`, the
//! method name, members JSON-RPC does not define), through plumbing, list requests and answers to server
//! requests, and inside arguments in small format changes (glued, dashed, zero-width characters, full-width
//! letters, percent-encoding, relabelled or armourless private keys, cards as numbers, an assignment moved
//! into an object key). Each is refused by
//! the shipped policies before the upstream sees it, and nothing of it reaches the audit log.

use serde_json::{json, Value};

use crate::common::upstream::{self, MockUpstream, FAKE_AWS_KEY};
use crate::common::{audit_events, token, with_http_upstream, Agent, Proxy};

/// A PEM private key whose body starts with real PKCS#1 DER (the rest is filler: no real key is committed).
const PEM_BODY: &str = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z5WnyP0k4vU8qLd2XeR7sYtB\nc9fKp2Lm4Nq8Rs1Tu3Vw5Xy7Za0Bc2De4Fg6Hi8Jk0Lm2No4Pq6Rs8Tu0Vw2Xy4Z";

fn pem(label: &str) -> String {
    format!("-----BEGIN {label}-----\n{PEM_BODY}\n-----END {label}-----\n")
}

fn interleave(s: &str, sep: char) -> String {
    s.chars().flat_map(|c| [c, sep]).collect()
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap())
        .collect()
}

async fn start() -> (Proxy, MockUpstream, Agent) {
    let (proxy, mock) = with_http_upstream(upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("agent-dlp", &[]));
    agent.initialize().await;
    (proxy, mock, agent)
}

/// Every message the mock received, as text.
fn received(mock: &MockUpstream) -> String {
    mock.state
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _, _)| m.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The audit log holds no trace of the key, nor of any six-character piece of it.
async fn audit_is_clean(proxy: &Proxy) {
    let events = serde_json::to_string(&audit_events(&proxy.app, 500).await).unwrap();
    for w in FAKE_AWS_KEY.as_bytes().windows(6) {
        let w = std::str::from_utf8(w).unwrap();
        assert!(!events.contains(w), "the audit log holds {w:?}: {events}");
    }
}

fn call(id: Value, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params })
}

/// Asserts the answer is the DLP deny of the shipped policies and returns its message text.
fn denied_by_dlp(what: &str, answer: &Value) -> String {
    let error = &answer["error"];
    assert_eq!(error["code"], -31001, "{what}: {answer}");
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("toolgate.dlp.critical") || message.contains("toolgate.plumbing.dlp"),
        "{what}: {message}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_anywhere_in_a_tool_call_is_denied_before_the_upstream() {
    let (proxy, mock, agent) = start().await;
    let args = |n: usize| json!({ "name": "echo", "arguments": { "text": format!("attack-{n}") } });
    let with = |n: usize, extra: Value| {
        let mut p = args(n);
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let key = FAKE_AWS_KEY;
    let attacks: Vec<(&str, Value, &str)> = vec![
        (
            "params._meta",
            call(
                json!(1),
                with(1, json!({ "_meta": { "note": format!("key {key}") } })),
            ),
            "/_meta/note",
        ),
        (
            "an unknown member of params",
            call(
                json!(2),
                with(
                    2,
                    json!({ "context": { "deploy": pem("RSA PRIVATE KEY") } }),
                ),
            ),
            "/context/deploy",
        ),
        (
            "a string id",
            call(json!(format!("req-{key}")), args(3)),
            "~/id",
        ),
        (
            "an unknown top-level member",
            {
                let mut m = call(json!(4), args(4));
                m["x-trace"] = json!({ "carrier": key });
                m
            },
            "~/x-trace/carrier",
        ),
        (
            "a top-level member named with the key",
            {
                let mut m = call(json!(5), args(5));
                m[key] = json!(true);
                m
            },
            "~/~redacted",
        ),
    ];
    for (what, message, path) in attacks {
        let answer = agent.post(&message).await.message();
        let reason = denied_by_dlp(what, &answer);
        assert!(reason.contains(path), "{what}: {reason}");
        assert!(!reason.contains(key), "{what}: {reason}");
    }
    // The same call without a secret goes through: the denials above were DLP's.
    let clean = json!({ "name": "echo", "arguments": { "text": "clean call" } });
    let clean = agent.post(&call(json!(9), clean)).await.message();
    assert_eq!(
        clean["result"]["content"][0]["text"], "called echo",
        "{clean}"
    );
    let seen = received(&mock);
    assert!(
        !seen.contains("attack-"),
        "an attack reached the upstream: {seen}"
    );
    assert!(seen.contains("clean call"));
    audit_is_clean(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_format_changes_do_not_hide_a_secret() {
    let (proxy, mock, mut agent) = start().await;
    let key = FAKE_AWS_KEY;
    let percent = format!("%{:02X}{}", key.as_bytes()[0], &key[1..]);
    let evasions: Vec<(&str, Value)> = vec![
        ("glued to a word", json!(format!("token{key}"))),
        ("dashed", json!(interleave(key, '-'))),
        ("zero-width spaces", json!(interleave(key, '\u{200B}'))),
        ("word joiners", json!(interleave(key, '\u{2060}'))),
        (
            "a BOM and soft hyphens",
            json!(format!("\u{FEFF}{}", interleave(key, '\u{00AD}'))),
        ),
        ("tag characters", json!(interleave(key, '\u{E0041}'))),
        (
            "bidi controls",
            json!(format!("\u{202E}{}\u{202C}", interleave(key, '\u{2066}'))),
        ),
        ("full-width", json!(fullwidth(key))),
        ("percent-encoded", json!(percent)),
        ("a relabelled private key", json!(pem("FOO"))),
        ("a private key without armour", json!(PEM_BODY)),
        ("an OpenSSH key", json!(pem("OPENSSH PRIVATE KEY"))),
    ];
    for (n, (what, value)) in evasions.into_iter().enumerate() {
        let answer = agent
            .call(
                "echo",
                json!({ "text": format!("evasion-{n}"), "data": value }),
            )
            .await
            .message();
        let reason = denied_by_dlp(what, &answer);
        assert!(reason.contains("/arguments/data"), "{what}: {reason}");
    }
    // Card numbers are high severity: the shipped policy escalates them, and the escalation (hold time 0)
    // answers pending; none reaches the upstream.
    for (n, card) in [
        json!(4111111111111111u64),
        serde_json::from_str::<Value>("4.111111111111111e15").unwrap(),
        json!("4111.1111.1111.1111"),
        json!("4111/1111/1111/1111"),
        json!("４１１１ １１１１ １１１１ １１１１"),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = agent
            .call("echo", json!({ "text": format!("card-{n}"), "card": card }))
            .await
            .message();
        assert_eq!(answer["error"]["code"], -31002, "card {n}: {answer}");
    }
    // An assignment is the same finding (high: escalated) as a value and moved into an object key.
    for (n, note) in [
        json!("db_password=hunter2hunter2"),
        json!({ "db_password=hunter2hunter2": 1 }),
        json!([{ "api_key: hunter2hunter2": { "x": true } }]),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = agent
            .call(
                "echo",
                json!({ "text": format!("assign-{n}"), "note": note }),
            )
            .await
            .message();
        assert_eq!(answer["error"]["code"], -31002, "assignment {n}: {answer}");
    }
    let seen = received(&mock);
    assert!(
        !seen.contains("evasion-") && !seen.contains("card-") && !seen.contains("assign-"),
        "{seen}"
    );
    audit_is_clean(&proxy).await;
    let events = serde_json::to_string(&audit_events(&proxy.app, 500).await).unwrap();
    assert!(!events.contains("hunter2"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_lists_and_answers_are_scanned_whole() {
    let (proxy, mock, agent) = start().await;
    let key = FAKE_AWS_KEY;
    let attacks: Vec<(&str, Value)> = vec![
        (
            "a ping with a string id",
            json!({ "jsonrpc": "2.0", "id": format!("ping-{key}"), "method": "ping" }),
        ),
        (
            "a ping with an unknown member",
            json!({ "jsonrpc": "2.0", "id": 70, "method": "ping", "note": interleave(key, '\u{200B}') }),
        ),
        (
            "a list request's cursor",
            json!({ "jsonrpc": "2.0", "id": 71, "method": "tools/list", "params": { "cursor": key } }),
        ),
        (
            "a list request's _meta",
            json!({ "jsonrpc": "2.0", "id": 72, "method": "prompts/list", "params": { "_meta": { "k": fullwidth(key) } } }),
        ),
        (
            "an answer's error beside its result",
            json!({ "jsonrpc": "2.0", "id": "srv-1", "result": {}, "error": { "code": 1, "message": key } }),
        ),
        (
            "an answer's unknown member",
            json!({ "jsonrpc": "2.0", "id": "srv-2", "result": {}, "extra": pem("RSA PRIVATE KEY") }),
        ),
    ];
    for (what, message) in attacks {
        let answer = agent.post(&message).await;
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        if message.get("method").is_some() {
            denied_by_dlp(what, &answer.message());
        } else {
            // An answer has no id of its own to be answered on: refused without reaching the upstream.
            assert_ne!(answer.status, hyper::StatusCode::OK, "{what}: {body}");
        }
        // The refusal echoes the agent's own id, as JSON-RPC requires; its message names no value.
        let reason = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        assert!(!reason.contains(key), "{what}: {reason}");
    }
    let seen = received(&mock);
    assert!(!seen.contains(key), "a secret reached the upstream: {seen}");
    assert!(
        !seen.contains("\"id\":7") && !seen.contains("srv-"),
        "{seen}"
    );
    assert!(mock.state.answers.lock().unwrap().is_empty());
    audit_is_clean(&proxy).await;
}
