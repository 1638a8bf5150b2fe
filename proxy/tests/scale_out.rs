//! Several toolgate instances, each a real `toolgate serve` process, on one PostgreSQL database (skipped without
//! `TOOLGATE_TEST_POSTGRES_URL`), in front of one streamable-HTTP upstream, as a deployment behind a load
//! balancer is: a session opened on one instance is served by another and ended on a third; an escalation
//! raised on one is approved on another and its retry passes on a third; the kill switch reaches every
//! instance within one second of the disable; an instance killed with SIGKILL under load leaves the others serving and loses no
//! acknowledged call's audit event; a tool definition approved on one is pinned on the others within a second; a
//! policy reload asked of one reloads the others within a second; a tenant's admin on one instance decides its own
//! tenant's escalations raised on another, and no other tenant's.
//! Each test has its own schema (and so its own chains), dropped at its end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use common::instances::{config, serve_ready, Instance, PgSchema};
use common::{send, token, upstream, Agent, Answer, ADMIN};

// The admin's side across instances: policy reloads, tenant admins.
#[path = "scale_out/admin.rs"]
mod admin_across;

/// Held by each test for its whole run: the tests here start several processes each, and one loads two of
/// them with hundreds of calls; run side by side on a 2-core machine, they would starve each other past the
/// one-second bounds the others check.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The upstream table of every instance: the mock as `web`.
fn web(mock: &upstream::MockUpstream) -> String {
    format!(
        "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
        mock.addr
    )
}

/// `count` instances named `i0`, `i1`, … on `schema`, each with its own chain, and `extra` in its config.
fn instances(dir: &std::path::Path, schema: &PgSchema, count: usize, extra: &str) -> Vec<Instance> {
    (0..count)
        .map(|i| {
            let name = format!("i{i}");
            serve_ready(&config(dir, &name, &schema.url, &name, extra))
        })
        .collect()
}

async fn admin(instance: &Instance, method: Method, path: &str) -> Answer {
    let auth = format!("Bearer {ADMIN}");
    send(method, &instance.url(path), &[("authorization", &auth)], "").await
}

/// `DELETE` of a session, as the agent.
async fn end(instance: &Instance, agent_token: &str, session: &str) -> Answer {
    let auth = format!("Bearer {agent_token}");
    send(
        Method::DELETE,
        &instance.url("/mcp/web"),
        &[("authorization", &auth), ("mcp-session-id", session)],
        "",
    )
    .await
}

/// `tools/call` of `echo` by a fresh client: in `session` (2025 era), or stateless without one.
async fn echo(url: &str, agent_token: &str, session: Option<&str>) -> Answer {
    let mut agent = Agent::at(url.to_owned(), agent_token.to_owned());
    match session {
        Some(sid) => {
            agent.session = Some(sid.to_owned());
            agent.call("echo", json!({ "text": "hi" })).await
        }
        None => agent.call_stateless("echo", json!({ "text": "hi" })).await,
    }
}

fn has_result(answer: &Answer) -> bool {
    answer.status == StatusCode::OK && answer.message().get("result").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_instance_is_used_on_another_and_ended_on_a_third() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    // Each upstream session has an id of its own, so a session B opened for itself would show.
    let mock = upstream::start(upstream::State {
        unique_sessions: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = instances(dir.path(), &schema, 3, &web(&mock));
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = token("alice", &[]);

    let mut on_a = Agent::at(a.url("/mcp/web"), alice.clone());
    on_a.initialize().await;
    let sid = on_a.session.clone().unwrap();
    // For an HTTP upstream the agent holds the upstream's own session id.
    assert!(sid.starts_with("upstream-session-"), "{sid}");
    assert!(has_result(
        &on_a.call("echo", json!({ "text": "on a" })).await
    ));

    // The same session, through B: served (B reads the binding once, then knows it), and forwarded in the
    // upstream session A opened: every POST that reached the upstream meanwhile carries A's session id.
    let before = mock.state.headers.lock().unwrap().len();
    let mut on_b = Agent::at(b.url("/mcp/web"), alice.clone());
    on_b.session = Some(sid.clone());
    for i in 0..3 {
        let answer = on_b
            .call("echo", json!({ "text": format!("on b {i}") }))
            .await;
        assert!(has_result(&answer), "{:?}", answer.message());
    }
    let forwarded: Vec<Option<String>> = mock.state.headers.lock().unwrap()[before..]
        .iter()
        .map(|h| {
            h.get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    assert!(forwarded.len() >= 3, "{forwarded:?}");
    assert!(
        forwarded.iter().all(|s| s.as_deref() == Some(sid.as_str())),
        "{forwarded:?}"
    );
    // Another agent presenting it on B: as unknown as a session never opened.
    let mut mallory = Agent::at(b.url("/mcp/web"), token("mallory", &[]));
    mallory.session = Some(sid.clone());
    assert_eq!(
        mallory.call("echo", json!({ "text": "x" })).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        end(c, &token("mallory", &[]), &sid).await.status,
        StatusCode::NOT_FOUND
    );

    // Ended on C, which never served it; then A and B, which both hold it in memory, answer 404.
    assert_eq!(end(c, &alice, &sid).await.status, StatusCode::OK);
    for node in [a, b] {
        let url = node.url("/mcp/web");
        common::eventually(Duration::from_secs(1), || async {
            (echo(&url, &alice, Some(&sid)).await.status == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    assert_eq!(end(a, &alice, &sid).await.status, StatusCode::NOT_FOUND);

    // One start where it was opened, one end where it was ended; no instance stores the id.
    let pool = schema.pool().await;
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_type, chain_id FROM audit_events WHERE session_id = $1 \
         AND event_type IN ('session_start', 'session_end') ORDER BY \"timestamp\"",
    )
    .bind(&sid)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            ("session_start".to_owned(), "i0".to_owned()),
            ("session_end".to_owned(), "i2".to_owned())
        ]
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM mcp_sessions WHERE id_hash = $1 OR agent_id = $1 OR upstream = $1",
    )
    .bind(&sid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    drop(nodes);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_raised_on_one_is_approved_on_another_and_retried_on_a_third() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{}[escalation]\nhold_seconds = 5\n", web(&mock));
    let nodes = instances(dir.path(), &schema, 3, &extra);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let write = |path: &str| json!({ "path": path, "content": "reviewed" });

    // Held on A; approved through B's admin API: the held call is answered at once, not at the end of its hold.
    let mut on_a = Agent::at(a.url("/mcp/web"), token("writer", &[]));
    let held = tokio::spawn(async move {
        let answer = on_a
            .call_stateless("write_file", write("/workspace/held.txt"))
            .await;
        (answer, Instant::now())
    });
    let pending = common::eventually(Duration::from_secs(5), || async {
        let listing = admin(b, Method::GET, "/api/v1/escalations?status=pending").await;
        listing.json()["escalations"][0]["id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let approve = format!("/api/v1/escalations/{pending}/approve");
    assert_eq!(
        admin(b, Method::POST, &approve).await.status,
        StatusCode::OK
    );
    let approved_at = Instant::now();
    let (answer, answered_at) = held.await.unwrap();
    assert!(has_result(&answer), "{:?}", answer.message());
    let waited = answered_at.saturating_duration_since(approved_at);
    assert!(
        waited < Duration::from_secs(1),
        "woken {waited:?} after the approval"
    );

    // Raised on A (not held), approved on B, the identical retry passes on C, once.
    let mut on_a = Agent::at(a.url("/mcp/web"), token("writer", &[]));
    // Held for A's 5 s with nobody deciding: answered pending.
    let raised = on_a
        .call_stateless("write_file", write("/workspace/later.txt"))
        .await;
    assert_eq!(raised.error_code(), Some(-31002), "{:?}", raised.message());
    let id = raised.message()["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = format!("/api/v1/escalations/{id}/approve");
    assert_eq!(
        admin(b, Method::POST, &approve).await.status,
        StatusCode::OK
    );
    let mut on_c = Agent::at(c.url("/mcp/web"), token("writer", &[]));
    let retried = on_c
        .call_stateless("write_file", write("/workspace/later.txt"))
        .await;
    assert!(has_result(&retried), "{:?}", retried.message());
    let again = on_c
        .call_stateless("write_file", write("/workspace/later.txt"))
        .await;
    assert_eq!(
        again.error_code(),
        Some(-31002),
        "the approval served one retry"
    );
    drop(nodes);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_reaches_every_instance_within_a_second() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State {
        unique_sessions: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = instances(dir.path(), &schema, 3, &web(&mock));
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let alice = token("alice", &[]);

    // Alice holds a session opened on B, and A has seen her (her counts reach the shared table each second).
    let mut on_b = Agent::at(b.url("/mcp/web"), alice.clone());
    on_b.initialize().await;
    let sid = on_b.session.clone().unwrap();
    assert!(has_result(
        &on_b.call("echo", json!({ "text": "hi" })).await
    ));
    common::eventually(Duration::from_secs(5), || async {
        let listing = admin(a, Method::GET, "/api/v1/agents").await;
        listing.json()["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["agent_id"] == "alice")
            .then_some(())
    })
    .await;

    // One deadline for every instance, counted from before the disable was even sent: B and C are watched at
    // once, so neither gets a second of its own after the other.
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(
        admin(a, Method::POST, "/api/v1/agents/alice/disable")
            .await
            .status,
        StatusCode::OK
    );
    let refused = |node: &Instance| {
        let (url, alice) = (node.url("/mcp/web"), alice.clone());
        async move {
            loop {
                if echo(&url, &alice, None).await.status == StatusCode::FORBIDDEN {
                    return Instant::now();
                }
                assert!(Instant::now() < deadline, "{url} still serves alice");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let (at_b, at_c) = tokio::join!(refused(b), refused(c));
    assert!(at_b <= deadline && at_c <= deadline);
    // Her session ended everywhere, its end recorded once, by its id, by the instance that held it.
    let pool = schema.pool().await;
    let ends = common::eventually(Duration::from_secs(3), || async {
        let ends: Vec<(String, String)> = sqlx::query_as(
            "SELECT chain_id, CAST(extra AS TEXT) FROM audit_events \
             WHERE session_id = $1 AND event_type = 'session_end'",
        )
        .bind(&sid)
        .fetch_all(&pool)
        .await
        .unwrap();
        (!ends.is_empty()).then_some(ends)
    })
    .await;
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].0, "i1");
    assert!(ends[0].1.contains("agent_disabled"), "{ends:?}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mcp_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Enabled again on C: served on A.
    assert_eq!(
        admin(c, Method::POST, "/api/v1/agents/alice/enable")
            .await
            .status,
        StatusCode::OK
    );
    let url = a.url("/mcp/web");
    common::eventually(Duration::from_secs(1), || async {
        has_result(&echo(&url, &alice, None).await).then_some(())
    })
    .await;
    drop(nodes);
    schema.drop_now().await;
}

/// One stateless `tools/call` of `echo` with its own trace id; `None` when the instance did not answer (the
/// connection failed: it was killed).
async fn traced_call(url: String, agent_token: String, n: usize) -> (String, Option<Answer>) {
    let trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let body = json!({
        "jsonrpc": "2.0", "id": n, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": format!("call {n}") },
                    "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                               "io.modelcontextprotocol/clientCapabilities": {} } }
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("authorization", format!("Bearer {agent_token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let answer = async {
        let resp = common::client().request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
            .await
            .ok()?
            .ok()?
            .to_bytes();
        Some(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
    .await;
    (trace, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_loses_no_acknowledged_call() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = instances(dir.path(), &schema, 2, &web(&mock));
    let urls: Vec<String> = nodes.iter().map(|n| n.url("/mcp/web")).collect();
    let agent = token("loader", &[]);

    // A few hundred calls in flight over both instances, round robin; the first instance is killed once a
    // quarter of them were answered, while the rest are still on their way.
    const CALLS: usize = 400;
    let by_victim = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut victim = nodes.remove(0);
    let killer = {
        let (by_victim, finished) = (by_victim.clone(), finished.clone());
        tokio::spawn(async move {
            while by_victim.load(Ordering::Relaxed) < CALLS / 8
                && finished.load(Ordering::Relaxed) < CALLS
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            victim.kill();
        })
    };
    let mut calls = Vec::new();
    for n in 0..CALLS {
        let (url, agent) = (urls[n % 2].clone(), agent.clone());
        let (by_victim, finished) = (by_victim.clone(), finished.clone());
        calls.push(tokio::spawn(async move {
            let (trace, answer) = traced_call(url, agent, n).await;
            if n % 2 == 0 && answer.as_ref().is_some_and(has_result) {
                by_victim.fetch_add(1, Ordering::Relaxed);
            }
            finished.fetch_add(1, Ordering::Relaxed);
            (n % 2, (trace, answer))
        }));
    }
    let mut acknowledged = Vec::new();
    let mut lost = 0;
    let mut acknowledged_by_victim = 0;
    let mut refusals = std::collections::BTreeMap::new();
    for call in calls {
        let (node, (trace, answer)) = call.await.unwrap();
        match answer {
            Some(a) if has_result(&a) => {
                acknowledged.push(trace);
                acknowledged_by_victim += usize::from(node == 0);
            }
            other => {
                lost += 1;
                *refusals
                    .entry((node, other.map(|a| a.status.as_u16())))
                    .or_insert(0) += 1;
            }
        }
    }
    killer.await.unwrap();
    assert!(
        acknowledged_by_victim > 0,
        "the victim served calls before it died"
    );
    assert!(lost > 0, "the kill happened while calls were in flight");
    assert!(
        acknowledged.len() >= CALLS / 2,
        "{} acknowledged",
        acknowledged.len()
    );

    // The survivor keeps serving.
    for n in 0..20 {
        let (_, answer) = traced_call(urls[1].clone(), agent.clone(), CALLS + n).await;
        assert!(has_result(&answer.expect("the survivor answers")));
    }

    // Every acknowledged call's decision was durable before it was forwarded: its `tool_call` is stored.
    let pool = schema.pool().await;
    let stored: Vec<(String, String)> = sqlx::query_as(
        "SELECT trace_id, event_type FROM audit_events WHERE event_type IN ('tool_call', 'tool_result')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let decided: std::collections::HashSet<&str> = stored
        .iter()
        .filter(|(_, t)| t == "tool_call")
        .map(|(trace, _)| trace.as_str())
        .collect();
    let outcomes: std::collections::HashSet<&str> = stored
        .iter()
        .filter(|(_, t)| t == "tool_result")
        .map(|(trace, _)| trace.as_str())
        .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|t| !decided.contains(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged calls without their decision event: {missing:?}"
    );
    let without_outcome = acknowledged
        .iter()
        .filter(|t| !outcomes.contains(t.as_str()))
        .count();
    eprintln!(
        "{} calls acknowledged ({acknowledged_by_victim} by the killed instance), {lost} not ({refusals:?}); {without_outcome} acknowledged calls' outcome events were \
         not yet stored when their instance was killed",
        acknowledged.len()
    );
    // The survivor's chain verifies.
    let verify = admin(&nodes[0], Method::GET, "/api/v1/audit/verify").await;
    assert_eq!(
        verify.json()["chain_intact"],
        Value::Bool(true),
        "{:?}",
        verify.json()
    );
    drop(nodes);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_definition_approved_on_one_instance_is_pinned_on_the_others_within_a_second() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{}[tools]\npinning = \"approve\"\n", web(&mock));
    let nodes = instances(dir.path(), &schema, 2, &extra);
    let (a, b) = (&nodes[0], &nodes[1]);

    // Listed through A: every definition waits for an approval.
    let mut on_a = Agent::at(a.url("/mcp/web"), token("alice", &[]));
    let listed = on_a
        .request(
            "tools/list",
            json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } }),
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let status_on = |node: &Instance| {
        let url = node.url("/api/v1/tools");
        async move {
            let auth = format!("Bearer {ADMIN}");
            let tools = send(Method::GET, &url, &[("authorization", &auth)], "").await;
            tools.json()["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "echo")
                .map(|t| t["status"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(status_on(a).await.as_deref(), Some("new"));
    // B learns of it through the bus, and approves it.
    common::eventually(Duration::from_secs(1), || async {
        (status_on(b).await.as_deref() == Some("new")).then_some(())
    })
    .await;
    assert_eq!(
        admin(b, Method::POST, "/api/v1/tools/web/echo/approve")
            .await
            .status,
        StatusCode::OK
    );
    common::eventually(Duration::from_secs(1), || async {
        (status_on(a).await.as_deref() == Some("pinned")).then_some(())
    })
    .await;
    drop(nodes);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_nobody_decides_expires_within_a_second_of_its_timeout() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(schema) = PgSchema::create("toolgate_scale").await else {
        return;
    };
    let mock = upstream::start(upstream::State::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{}[escalation]\ntimeout_seconds = 1\n", web(&mock));
    let nodes = instances(dir.path(), &schema, 2, &extra);
    let (a, b) = (&nodes[0], &nodes[1]);

    // Raised on A; nobody polls: the keepers sleep until the expiry is due (no request needed to reach it).
    let mut on_a = Agent::at(a.url("/mcp/web"), token("writer", &[]));
    let raised = on_a
        .call_stateless(
            "write_file",
            json!({ "path": "/workspace/x.txt", "content": "never reviewed" }),
        )
        .await;
    assert_eq!(raised.error_code(), Some(-31002), "{:?}", raised.message());
    let id = raised.message()["error"]["data"]["escalation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let raised_at = Instant::now();
    let pool = schema.pool().await;
    let (status, chain) = common::eventually(Duration::from_secs(3), || async {
        let expired: Option<(String,)> = sqlx::query_as(
            "SELECT chain_id FROM audit_events WHERE event_type = 'escalation_expired' \
             AND CAST(extra AS TEXT) LIKE '%' || $1 || '%'",
        )
        .bind(&id)
        .fetch_optional(&pool)
        .await
        .unwrap();
        let status: String = sqlx::query_scalar("SELECT status FROM escalations WHERE id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
        expired.map(|(chain,)| (status, chain))
    })
    .await;
    assert_eq!(status, "expired");
    assert!(chain == "i0" || chain == "i1");
    // Within a second of the timeout (1 s), with a margin for the process round trips of a busy machine.
    assert!(
        raised_at.elapsed() < Duration::from_millis(2500),
        "{:?}",
        raised_at.elapsed()
    );
    let expiries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE event_type = 'escalation_expired'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(expiries, 1, "expired once, by one instance");
    let listing = admin(b, Method::GET, "/api/v1/escalations?status=pending").await;
    assert_eq!(listing.json()["escalations"], json!([]));
    drop(nodes);
    schema.drop_now().await;
}
