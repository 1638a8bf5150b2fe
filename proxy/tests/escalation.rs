//! Escalated calls: recorded pending with an id, held for a reviewer, released by the admin API; stored in the
//! audit database, so they survive a restart, every instance sharing the database sees them, and they expire to
//! deny when nobody decides in time.

mod common;

use std::time::Duration;

use common::{send, start, token, upstream, Agent, Options, Proxy, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

async fn pending(proxy: &common::Proxy) -> Vec<Value> {
    let auth = format!("Bearer {ADMIN}");
    let r = send(
        Method::GET,
        &proxy.url("/api/v1/escalations?status=pending"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["escalations"].as_array().unwrap().clone()
}

async fn review(proxy: &common::Proxy, id: &str, verb: &str) -> StatusCode {
    decide(proxy, id, verb).await.status
}

async fn decide(proxy: &common::Proxy, id: &str, verb: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(
        Method::POST,
        &proxy.url(&format!("/api/v1/escalations/{id}/{verb}")),
        &[("authorization", &auth)],
        "",
    )
    .await
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

/// `toolgate_escalations_pending` as `/metrics` shows it.
async fn pending_gauge(proxy: &Proxy) -> f64 {
    let text = String::from_utf8(
        send(Method::GET, &proxy.url("/metrics"), &[], "")
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("toolgate_escalations_pending "))
        .expect("the gauge is exported")
        .trim()
        .parse()
        .unwrap()
}

/// The escalation id of a `-31002` answer (the call is pending review), failing otherwise.
fn pending_id(answer: &common::Answer) -> String {
    let message = answer.message();
    assert_eq!(
        message["error"]["code"], -31002,
        "expected pending: {message}"
    );
    message["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// toolgate in front of the mock HTTP upstream `web`, on the audit database `database_url` as chain `chain`.
async fn web_proxy(
    mock: &upstream::MockUpstream,
    database_url: &str,
    chain: &str,
    hold_seconds: u64,
    escalation_toml: &str,
) -> Proxy {
    start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        database_url: Some(database_url.to_owned()),
        audit_toml: format!("chain_id = \"{chain}\""),
        hold_seconds,
        escalation_toml: escalation_toml.to_owned(),
        ..Default::default()
    })
    .await
}

/// The events of `event_type` about escalation `id`.
async fn events_about(proxy: &Proxy, event_type: &str, id: &str) -> Vec<Value> {
    common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == event_type && e["extra"]["escalation_id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_is_released_by_approval_or_denial() {
    let proxy = start(Options {
        hold_seconds: 30,
        ..Default::default()
    })
    .await;
    for (verb, path) in [
        ("approve", "/workspace/approved.txt"),
        ("deny", "/workspace/denied.txt"),
    ] {
        let mut agent = Agent::new(&proxy, "demo", token("writer", &[]));
        let call = tokio::spawn(async move {
            agent
                .call_stateless("write_file", json!({ "path": path, "content": "reviewed" }))
                .await
        });
        let esc = common::eventually(Duration::from_secs(10), || async {
            pending(&proxy)
                .await
                .into_iter()
                .find(|e| e["target"] == path)
        })
        .await;
        assert_eq!(esc["agent_id"], "writer");
        assert_eq!(esc["action"], "write");
        assert_eq!(esc["policy_id"], "toolgate.filesystem.write_review");
        let id = esc["id"].as_str().unwrap().to_owned();
        assert_eq!(review(&proxy, &id, verb).await, StatusCode::OK);
        assert_eq!(
            review(&proxy, &id, verb).await,
            StatusCode::CONFLICT,
            "a decision is final"
        );
        let answer = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap()
            .unwrap();
        let written = proxy
            .dir
            .path()
            .join("sandbox")
            .join(path.trim_start_matches('/'));
        if verb == "approve" {
            assert_eq!(
                answer.message()["result"]["isError"],
                false,
                "{:?}",
                answer.message()
            );
            assert_eq!(std::fs::read_to_string(&written).unwrap(), "reviewed");
        } else {
            assert_eq!(answer.error_code(), Some(-31001));
            assert!(answer.message()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("denied by a reviewer"));
            assert!(
                !written.exists(),
                "a denied write never reaches the upstream"
            );
        }
    }
    assert_eq!(
        review(&proxy, "no-such-id", "approve").await,
        StatusCode::NOT_FOUND
    );
    assert!(pending(&proxy).await.is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token() {
    let proxy = start(Options::default()).await;
    let r = send(Method::GET, &proxy.url("/api/v1/escalations"), &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        Method::GET,
        &proxy.url("/api/v1/escalations"),
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        Method::GET,
        &proxy.url("/api/v1/policy"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["revision"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    proxy.stop().await;
}

/// With no hold time the agent gets `-31002` at once; the reviewer's answer then applies to its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_answer_applies_to_the_agents_identical_retry() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("writer", &[]));
    let write = |path: &str| json!({ "path": path, "content": "reviewed later" });
    let escalation_id = |answer: &common::Answer| {
        assert_eq!(answer.error_code(), Some(-31002), "{:?}", answer.message());
        answer.message()["error"]["data"]["escalation_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Approved: the first retry goes through, once.
    let first = escalation_id(
        &agent
            .call_stateless("write_file", write("/workspace/later.txt"))
            .await,
    );
    let retry = escalation_id(
        &agent
            .call_stateless("write_file", write("/workspace/later.txt"))
            .await,
    );
    assert_eq!(retry, first, "a retry joins the pending escalation");
    assert_eq!(pending(&proxy).await.len(), 1, "reviewers see it once");
    assert_eq!(review(&proxy, &first, "approve").await, StatusCode::OK);
    let other = agent
        .call_stateless("write_file", write("/workspace/other.txt"))
        .await;
    assert_ne!(
        escalation_id(&other),
        first,
        "other arguments are another call"
    );
    let approved = agent
        .call_stateless("write_file", write("/workspace/later.txt"))
        .await;
    assert_eq!(
        approved.message()["result"]["isError"],
        false,
        "{:?}",
        approved.message()
    );
    let written = proxy.dir.path().join("sandbox/workspace/later.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "reviewed later");
    let events = common::audit_events(&proxy.app, 10).await;
    let call = events
        .iter()
        .find(|e| e["event_type"] == "tool_call" && e["extra"]["escalation_id"] == first.as_str())
        .expect("the released retry is recorded with its escalation");
    assert_eq!(call["policy_result"], "allow");
    assert!(call["policy_reason"]
        .as_str()
        .unwrap()
        .starts_with("approved by a reviewer"));
    let again = agent
        .call_stateless("write_file", write("/workspace/later.txt"))
        .await;
    assert_ne!(
        escalation_id(&again),
        first,
        "one approval lets one call through"
    );

    // Denied: the retry is denied and never reaches the upstream.
    let denied_id = escalation_id(
        &agent
            .call_stateless("write_file", write("/workspace/no.txt"))
            .await,
    );
    assert_eq!(review(&proxy, &denied_id, "deny").await, StatusCode::OK);
    let denied = agent
        .call_stateless("write_file", write("/workspace/no.txt"))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    assert!(denied.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("denied by a reviewer"));
    assert!(!proxy.dir.path().join("sandbox/workspace/no.txt").exists());
    proxy.stop().await;
}

fn write(path: &str) -> Value {
    json!({ "path": path, "content": "reviewed" })
}

/// A pending escalation is stored: a restart of the proxy on the same database keeps it (and the gauge), an
/// admin approves it afterwards, and that approval lets the agent's identical retry through once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_escalation_survives_a_restart_and_its_approval_serves_one_retry() {
    let mock = upstream::start(upstream::State::default()).await;
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("audit.db").display());
    let first = web_proxy(&mock, &url, "toolgate", 0, "").await;
    let mut agent = Agent::new(&first, "web", token("writer", &[]));
    let kept = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/kept.txt"))
            .await,
    );
    let other = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/other.txt"))
            .await,
    );
    assert_ne!(
        kept, other,
        "a call with other arguments is a new escalation"
    );
    assert_eq!(pending_gauge(&first).await, 2.0);
    first.stop().await;

    let second = web_proxy(&mock, &url, "toolgate", 0, "").await;
    assert_eq!(pending_gauge(&second).await, 2.0, "exact after a restart");
    let listed: Vec<String> = pending(&second)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, [other.clone(), kept.clone()], "newest first");

    let approved = decide(&second, &kept, "approve").await;
    assert_eq!(approved.status, StatusCode::OK);
    let approved = approved.json();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "admin");
    assert_eq!(approved["delivered"], false);
    assert_eq!(pending_gauge(&second).await, 1.0);

    let mut agent = Agent::new(&second, "web", token("writer", &[]));
    let passed = agent
        .call_stateless("write_file", write("/workspace/kept.txt"))
        .await;
    assert!(
        passed.message().get("result").is_some(),
        "{}",
        passed.message()
    );
    assert_eq!(mock.state.tool_calls().len(), 1);
    let again = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/kept.txt"))
            .await,
    );
    assert_ne!(again, kept, "one approval lets one call through");
    assert_eq!(mock.state.tool_calls().len(), 1);
    // The other one is still the same pending escalation: its retry joins it.
    let joined = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/other.txt"))
            .await,
    );
    assert_eq!(joined, other);
    assert_eq!(pending_gauge(&second).await, 2.0);

    // The decision is in the audit log, naming the reviewer and what was decided.
    let decided = events_about(&second, "escalation_decided", &kept).await;
    assert_eq!(decided.len(), 1, "{decided:?}");
    let decided = &decided[0];
    assert_eq!(decided["requester_id"], "admin");
    assert_eq!(decided["extra"]["decision"], "approve");
    assert_eq!(decided["agent_id"], "writer");
    assert_eq!(decided["tool_name"], "write_file");
    assert_eq!(decided["mcp_server"], "web");
    assert_eq!(decided["target"], "/workspace/kept.txt");
    let action = events_about(&second, "admin_action", &kept).await;
    assert_eq!(action.len(), 1, "{action:?}");
    assert_eq!(action[0]["requester_id"], "admin");
    assert_eq!(action[0]["extra"]["action"], "escalation_approve");
    assert_eq!(action[0]["agent_id"], "writer");
    let verify = admin_get(&second, "/api/v1/audit/verify").await.json();
    assert_eq!(verify["chain_intact"], true, "{verify}");
    second.stop().await;
}

/// Nobody decides: the escalation expires to deny after `escalation.timeout_seconds`, with no request needed,
/// recorded as `escalation_expired`; the agent's retry is denied and a reviewer can no longer approve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_nobody_decides_expires_to_deny() {
    let mock = upstream::start(upstream::State::default()).await;
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("audit.db").display());
    let proxy = web_proxy(&mock, &url, "toolgate", 0, "timeout_seconds = 1").await;
    let mut agent = Agent::new(&proxy, "web", token("writer", &[]));
    let id = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/late.txt"))
            .await,
    );
    assert_eq!(pending_gauge(&proxy).await, 1.0);
    let expired = common::eventually(Duration::from_secs(10), || async {
        events_about(&proxy, "escalation_expired", &id).await.pop()
    })
    .await;
    assert_eq!(expired["agent_id"], "writer");
    assert_eq!(expired["tool_name"], "write_file");
    assert_eq!(expired["target"], "/workspace/late.txt");
    assert_eq!(expired["extra"]["timeout_seconds"], 1);
    let stored = admin_get(&proxy, "/api/v1/escalations?status=expired")
        .await
        .json();
    let stored = &stored["escalations"][0];
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["decided_by"], Value::Null);
    // Expired within a second of its timeout (timestamps of one clock, fixed-width, so they compare as text
    // once parsed).
    let at = |field: &str| {
        time::OffsetDateTime::parse(
            stored[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let late = at("decided_at") - at("expires_at");
    assert!(
        late >= time::Duration::ZERO && late < time::Duration::SECOND,
        "expired {late} after its timeout"
    );
    assert_eq!(pending_gauge(&proxy).await, 0.0);

    let refused = decide(&proxy, &id, "approve").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.json()["error"], "expired");
    let denied = agent
        .call_stateless("write_file", write("/workspace/late.txt"))
        .await;
    assert_eq!(denied.error_code(), Some(-31001), "{}", denied.message());
    let text = denied.message()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("toolgate.escalation.expired")
            && text.contains("no reviewer decided in time"),
        "{text}"
    );
    assert!(mock.state.tool_calls().is_empty());
    // The expiry served that one retry; the next is a new escalation.
    assert_ne!(
        pending_id(
            &agent
                .call_stateless("write_file", write("/workspace/late.txt"))
                .await
        ),
        id
    );
    proxy.stop().await;
}

/// A call held longer than the timeout gets the expiry's deny while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_gets_the_expirys_deny() {
    let mock = upstream::start(upstream::State::default()).await;
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("audit.db").display());
    let proxy = web_proxy(&mock, &url, "toolgate", 30, "timeout_seconds = 1").await;
    let mut agent = Agent::new(&proxy, "web", token("writer", &[]));
    let denied = agent
        .call_stateless("write_file", write("/workspace/held.txt"))
        .await;
    assert_eq!(denied.error_code(), Some(-31001), "{}", denied.message());
    assert!(denied.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no reviewer decided in time"));
    assert!(mock.state.tool_calls().is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_on_unknown_decided_or_bad_requests_are_refused() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("writer", &[]));
    for verb in ["approve", "deny"] {
        let unknown = decide(&proxy, "no-such-escalation", verb).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.json()["error"], "not_found");
    }
    let id = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/twice.txt"))
            .await,
    );
    assert_eq!(review(&proxy, &id, "approve").await, StatusCode::OK);
    for verb in ["approve", "deny"] {
        let again = decide(&proxy, &id, verb).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{verb} after approve");
        assert_eq!(again.json()["error"], "already_decided");
    }
    let events = common::audit_events(&proxy.app, 100).await;
    let decided = events
        .iter()
        .filter(|e| e["event_type"] == "escalation_decided")
        .count();
    assert_eq!(decided, 1, "a refused decision records nothing");

    for (query, what) in [
        ("status=maybe", "status must be"),
        ("limit=0", "limit must be"),
        ("limit=abc", "limit must be"),
        ("cursor=not-a-cursor", "bad cursor"),
    ] {
        let r = admin_get(&proxy, &format!("/api/v1/escalations?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(what), "{query}: {message}");
    }
    let all = admin_get(&proxy, "/api/v1/escalations").await.json();
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(all["escalations"][0]["id"], id.as_str());
    proxy.stop().await;
}

/// Two instances on one database: a call held on one is answered by a decision made on the other, and of
/// identical retries sent to both at once, one approval lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_database_share_the_escalations() {
    let mock = upstream::start(upstream::State::default()).await;
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("audit.db").display());
    let here = web_proxy(&mock, &url, "here", 5, "").await;
    let elsewhere = web_proxy(&mock, &url, "elsewhere", 0, "").await;

    let mut agent = Agent::new(&here, "web", token("writer", &[]));
    let held = tokio::spawn(async move {
        agent
            .call_stateless("write_file", write("/workspace/held.txt"))
            .await
    });
    let esc = common::eventually(Duration::from_secs(10), || async {
        pending(&elsewhere).await.into_iter().next()
    })
    .await;
    assert_eq!(
        review(&elsewhere, esc["id"].as_str().unwrap(), "approve").await,
        StatusCode::OK
    );
    let answer = held.await.unwrap();
    // Had the decision not reached it within the 5 s hold, the call would be answered -31002.
    assert!(
        answer.message().get("result").is_some(),
        "{}",
        answer.message()
    );
    assert_eq!(mock.state.tool_calls().len(), 1);

    let mut agent = Agent::new(&elsewhere, "web", token("writer", &[]));
    let id = pending_id(
        &agent
            .call_stateless("write_file", write("/workspace/once.txt"))
            .await,
    );
    assert_eq!(review(&here, &id, "approve").await, StatusCode::OK);
    let mut calls = Vec::new();
    for proxy in [&here, &elsewhere, &here, &elsewhere] {
        let mut agent = Agent::new(proxy, "web", token("writer", &[]));
        calls.push(async move {
            agent
                .call_stateless("write_file", write("/workspace/once.txt"))
                .await
        });
    }
    let answers = futures_util::future::join_all(calls).await;
    let passed = answers
        .iter()
        .filter(|a| a.message().get("result").is_some())
        .count();
    assert_eq!(
        passed,
        1,
        "{:?}",
        answers.iter().map(|a| a.message()).collect::<Vec<_>>()
    );
    assert_eq!(mock.state.tool_calls().len(), 2);
    here.stop().await;
    elsewhere.stop().await;
}

/// What DLP flags in a call never reaches the escalations table: the reviewer sees it redacted, and no column
/// of the stored row holds it (nor the call's arguments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_dlp_flags_is_stored_with_an_escalation() {
    const EMAIL: &str = "alice.secret@example.com";
    const CONTENT: &str = "the-arguments-themselves";
    let mock = upstream::start(upstream::State::default()).await;
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("audit.db").display());
    let proxy = web_proxy(&mock, &url, "toolgate", 0, "").await;
    let mut agent = Agent::new(&proxy, "web", token("writer", &[]));
    let path = format!("/workspace/to {EMAIL}/notes.txt");
    let id = pending_id(
        &agent
            .call_stateless("write_file", json!({ "path": path, "content": CONTENT }))
            .await,
    );
    let listed = pending(&proxy).await;
    let shown = listed[0].to_string();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(!shown.contains(EMAIL), "{shown}");
    assert!(
        listed[0]["target"].as_str().unwrap().contains("[REDACTED:"),
        "{shown}"
    );
    proxy.stop().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id || agent_key || fingerprint || status || agent_id || COALESCE(tenant_id, '') || tool_name \
         || mcp_server || action || COALESCE(target, '') || policy_id || reason FROM escalations",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].0.contains(EMAIL) && !rows[0].0.contains(CONTENT),
        "{}",
        rows[0].0
    );
}
