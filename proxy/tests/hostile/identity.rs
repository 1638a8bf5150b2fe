//! Identity is tenant and `sub` together, and no agent can crowd the others out: sessions and approvals of one
//! tenant's `alice` are not another tenant's `alice`'s, an approval covers exactly the approved arguments (not a
//! neighbouring large integer that JCS rounds to the same `input_hash`), one agent cannot fill the session store
//! or the review queue, a request cannot carry two session ids, and the admin export neither answers a bad range
//! with an empty 200 nor lets a `;`-splitting spreadsheet find a formula in a cell.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, send, start, token, upstream, Agent, Options, Proxy, ADMIN, SECRET};

/// A `toolgate token`-style HS256 token of `sub` in `tenant`, signed with the one configured secret.
fn tenant_token(sub: &str, tenant: &str) -> String {
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(SECRET.into()),
        ..Default::default()
    };
    toolgate::auth::mint_hs256(&settings, sub, Some(tenant), &[], Duration::from_secs(3600))
        .unwrap()
}

async fn admin_get(proxy: &Proxy, path: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(
        Method::GET,
        &proxy.url(path),
        &[("authorization", &auth)],
        "",
    )
    .await
}

async fn approve(proxy: &Proxy, id: &str) {
    let auth = format!("Bearer {ADMIN}");
    let r = send(
        Method::POST,
        &proxy.url(&format!("/api/v1/escalations/{id}/approve")),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// The escalation id of a `-31002` answer (the call is pending review), failing otherwise.
fn pending_id(answer: &common::Answer) -> String {
    let message = answer.message();
    assert_eq!(
        message["error"]["code"], -31002,
        "expected a pending escalation: {message}"
    );
    message["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn events_where(proxy: &Proxy, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| keep(e))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sub_of_another_tenant_cannot_use_or_end_a_session() {
    let proxy = start(Options::default()).await;
    let mut owner = Agent::new(&proxy, "demo", tenant_token("alice", "t1"));
    owner.initialize().await;
    let sid = owner.session.clone().unwrap();

    let mut thief = Agent::new(&proxy, "demo", tenant_token("alice", "t2"));
    thief.session = Some(sid.clone());
    let stolen = thief.request("tools/list", json!({})).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    // Exactly the answer to an id never issued: the refusal says nothing about whose session it is.
    let mut guesser = Agent::new(&proxy, "demo", tenant_token("alice", "t2"));
    guesser.session = Some("0".repeat(32));
    let unknown = guesser.request("tools/list", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(stolen.message()["error"], unknown.message()["error"]);

    // Nor can the thief end it.
    let auth = format!("Bearer {}", thief.token);
    let deleted = send(
        Method::DELETE,
        &proxy.url("/mcp/demo"),
        &[("authorization", &auth), ("mcp-session-id", &sid)],
        "",
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);

    // The owner's session is untouched.
    let own = owner.request("tools/list", json!({})).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.message().get("result").is_some(), "{}", own.message());

    // Both attempts are in the audit log, as the other tenant's agent presenting the owner's session.
    let foreign = events_where(&proxy, |e| {
        e["event_type"] == "policy_deny" && e["policy_id"] == "toolgate.session.foreign"
    })
    .await;
    assert_eq!(foreign.len(), 2, "{foreign:#?}");
    for e in &foreign {
        assert_eq!(e["agent_id"], "alice");
        assert_eq!(e["tenant_id"], "t2");
        assert_eq!(e["session_id"], sid.as_str());
    }
    let methods: Vec<&Value> = foreign.iter().map(|e| &e["extra"]["method"]).collect();
    assert!(methods.contains(&&json!("tools/list")) && methods.contains(&&json!("DELETE")));
    let guessed = events_where(&proxy, |e| e["policy_id"] == "toolgate.session.unknown").await;
    assert_eq!(guessed.len(), 1);
    assert!(
        guessed[0]["session_id"].is_null(),
        "an agent-chosen id is not stored"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_not_taken_by_the_same_sub_of_another_tenant() {
    let (proxy, mock) = common::with_http_upstream(upstream::State::default(), None).await;
    let call = json!({ "path": "/workspace/reviewed.txt", "content": "hello" });
    let mut t1 = Agent::new(&proxy, "web", tenant_token("alice", "t1"));
    let mut t2 = Agent::new(&proxy, "web", tenant_token("alice", "t2"));

    let escalated = pending_id(&t1.call_stateless("write_file", call.clone()).await);
    approve(&proxy, &escalated).await;

    // t2's alice sends the identical call: it is her own, new escalation, and nothing reaches the upstream.
    let other = pending_id(&t2.call_stateless("write_file", call.clone()).await);
    assert_ne!(other, escalated);
    assert!(mock.state.tool_calls().is_empty());

    // The approval is still there for t1's alice, and serves her call.
    let retried = t1.call_stateless("write_file", call.clone()).await;
    assert!(
        retried.message().get("result").is_some(),
        "{}",
        retried.message()
    );
    assert_eq!(mock.state.tool_calls().len(), 1);

    // The admin listing tells the two alices apart.
    let listed = admin_get(&proxy, "/api/v1/escalations").await.json();
    let tenant_of = |id: &str| {
        listed["escalations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["tenant_id"].clone())
            .unwrap()
    };
    assert_eq!(tenant_of(&escalated), "t1");
    assert_eq!(tenant_of(&other), "t2");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_covers_the_exact_large_integer_only() {
    let (proxy, mock) = common::with_http_upstream(upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("writer", &[]));
    // 2^53 + 1 and 2^53: one double apart from none, so JCS (and `input_hash`) writes both as 9007199254740992.
    let approved_id: u64 = 9_007_199_254_740_993;
    let neighbour: u64 = 9_007_199_254_740_992;
    let call = |id: u64| json!({ "path": "/workspace/ledger.txt", "content": "pay", "id": id });

    let escalated = pending_id(&agent.call_stateless("write_file", call(approved_id)).await);
    approve(&proxy, &escalated).await;

    let other = pending_id(&agent.call_stateless("write_file", call(neighbour)).await);
    assert_ne!(other, escalated, "a neighbouring large id is another call");
    assert!(mock.state.tool_calls().is_empty());

    // Both escalations carry the same `input_hash`: only the exact fingerprint told them apart.
    let escalations = events_where(&proxy, |e| e["event_type"] == "policy_escalate").await;
    assert_eq!(escalations.len(), 2);
    assert_eq!(escalations[0]["input_hash"], escalations[1]["input_hash"]);

    // The approved id itself goes through, once, with its exact digits.
    let retried = agent.call_stateless("write_file", call(approved_id)).await;
    assert!(
        retried.message().get("result").is_some(),
        "{}",
        retried.message()
    );
    let forwarded = mock.state.tool_calls();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0]["params"]["arguments"]["id"], approved_id);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_cannot_push_another_out_of_the_session_store() {
    let proxy = start(Options {
        extra_toml: "[session]\nmax_sessions = 4\nmax_sessions_per_agent = 2\n".into(),
        ..Default::default()
    })
    .await;
    let mut bob = Agent::new(&proxy, "demo", token("bob", &[]));
    bob.initialize().await;

    // Alice opens five sessions, far beyond her cap of two: each new one ends her own longest-idle one.
    let mut alice = Vec::new();
    for _ in 0..5 {
        let mut a = Agent::new(&proxy, "demo", token("alice", &[]));
        a.initialize().await;
        alice.push(a);
    }
    for (i, a) in alice.iter_mut().enumerate() {
        let status = a.request("tools/list", json!({})).await.status;
        let want = if i < 3 {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "alice's session {i}");
    }
    assert_eq!(
        bob.request("tools/list", json!({})).await.status,
        StatusCode::OK,
        "bob's session survives alice's flood"
    );

    // There is room for a newcomer; the global bound still holds after that.
    let mut carol = Agent::new(&proxy, "demo", token("carol", &[]));
    carol.initialize().await;
    let mut dave = Agent::new(&proxy, "demo", token("dave", &[]));
    let refused = dave
        .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }))
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);

    let evicted = events_where(&proxy, |e| {
        e["event_type"] == "session_end" && e["extra"]["reason"] == "agent_session_limit"
    })
    .await;
    assert_eq!(evicted.len(), 3);
    let ended: Vec<&str> = evicted
        .iter()
        .map(|e| e["session_id"].as_str().unwrap())
        .collect();
    for a in &alice[..3] {
        assert!(ended.contains(&a.session.as_deref().unwrap()));
    }
    assert!(evicted.iter().all(|e| e["agent_id"] == "alice"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_cannot_fill_the_review_queue() {
    let (proxy, mock) = common::with_http_upstream(upstream::State::default(), None).await;
    let mut flooder = Agent::new(&proxy, "web", token("flooder", &[]));
    let write = |n: usize| json!({ "path": format!("/workspace/f{n}.txt"), "content": "x" });
    let mut first = None;
    for n in 0..16 {
        let id = pending_id(&flooder.call_stateless("write_file", write(n)).await);
        first.get_or_insert(id);
    }
    let refused = flooder
        .call_stateless("write_file", write(16))
        .await
        .message();
    assert_eq!(refused["error"]["code"], -31001, "{refused}");
    let text = refused["error"]["message"].as_str().unwrap();
    assert!(text.contains("toolgate.escalation.pending_limit"), "{text}");
    // A retry of a pending call joins it rather than needing a slot.
    let joined = pending_id(&flooder.call_stateless("write_file", write(0)).await);
    assert_eq!(Some(joined), first);
    // Another agent's call is still reviewed.
    let mut other = Agent::new(&proxy, "web", token("other", &[]));
    pending_id(&other.call_stateless("write_file", write(0)).await);

    let denied = events_where(&proxy, |e| {
        e["policy_id"] == "toolgate.escalation.pending_limit"
    })
    .await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["event_type"], "policy_deny");
    assert_eq!(denied[0]["agent_id"], "flooder");
    let pending = admin_get(&proxy, "/api/v1/escalations?status=pending")
        .await
        .json();
    assert_eq!(pending["escalations"].as_array().unwrap().len(), 17);
    assert!(mock.state.tool_calls().is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_stores_a_bounded_copy_of_a_huge_target() {
    let (proxy, _mock) = common::with_http_upstream(upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("writer", &[]));
    // As long a path as the test's 64 KiB body limit lets through (the unit test goes to 4 MiB).
    let path = format!("/workspace/{}", "d".repeat(60_000));
    let id = pending_id(
        &agent
            .call_stateless("write_file", json!({ "path": path, "content": "x" }))
            .await,
    );
    let listed = admin_get(&proxy, "/api/v1/escalations").await.json();
    let escalation = &listed["escalations"][0];
    assert_eq!(escalation["id"], id.as_str());
    // The reviewer sees each field as the audit log stores it, and the escalations table holds the same:
    // capped with the digest and length of the whole (`…[sha256:<hex> len:<n>]`).
    for field in ["target", "reason"] {
        let text = escalation[field].as_str().unwrap();
        assert!(
            text.len() <= toolgate::escalation::MAX_FIELD_BYTES && text.contains("…[sha256:"),
            "{field}: {} bytes",
            text.len()
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_session_ids_is_refused() {
    let (proxy, mock) = common::with_http_upstream(upstream::State::default(), None).await;
    let mut alice = Agent::new(&proxy, "web", token("alice", &[]));
    alice.initialize().await;
    let own = alice.session.clone().unwrap();
    let before = mock.state.received.lock().unwrap().len();
    let auth = format!("Bearer {}", alice.token);
    let body = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": "/workspace/a.txt" } } });
    // toolgate would check the first; the upstream might act on the second (someone else's).
    let answer = send(
        Method::POST,
        &proxy.url("/mcp/web"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &own),
            ("mcp-session-id", "another-agents-session"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.message()["error"]["code"], -32600);
    assert!(answer.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Mcp-Session-Id"));
    // DELETE likewise.
    let deleted = send(
        Method::DELETE,
        &proxy.url("/mcp/web"),
        &[
            ("authorization", &auth),
            ("mcp-session-id", &own),
            ("mcp-session-id", &own),
        ],
        "",
    )
    .await;
    assert_eq!(deleted.status, StatusCode::BAD_REQUEST);
    assert_eq!(mock.state.received.lock().unwrap().len(), before);
    let refused = events_where(&proxy, |e| e["policy_id"] == "toolgate.session.bad_header").await;
    assert_eq!(refused.len(), 2);
    // One header is fine.
    assert_eq!(
        alice.request("tools/list", json!({})).await.status,
        StatusCode::OK
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_refuses_a_bad_range_and_quotes_cells_a_spreadsheet_would_split() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("reader", &[]));
    // A target holding `;=`: a spreadsheet splitting at `;` would start a formula cell there.
    let target = "/workspace/a;=SUM(1+1)";
    agent
        .call_stateless("read_file", json!({ "path": target }))
        .await;
    let csv = admin_get(&proxy, "/api/v1/audit/export?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&csv.body);
    let quoted = format!("\"{target}\"");
    assert!(text.contains(&quoted), "{text}");
    // No unquoted cell anywhere starts with a formula character after a `;`.
    for line in text.lines() {
        let mut in_quotes = false;
        let mut previous = ',';
        for c in line.chars() {
            if c == '"' {
                in_quotes = !in_quotes;
            }
            if !in_quotes && previous == ';' {
                assert!(!"=+-@".contains(c), "formula cell after ';' in {line}");
            }
            previous = c;
        }
    }

    for query in [
        "start=yesterday",
        "end=2026-13-40",
        "start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z",
        "start=%27%20OR%201%3D1%20--",
    ] {
        for format in ["csv", "ndjson", "json"] {
            let r = admin_get(
                &proxy,
                &format!("/api/v1/audit/export?format={format}&{query}"),
            )
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{format} {query}");
            assert_eq!(r.json()["error"], "bad_request");
        }
    }
    proxy.stop().await;
}
