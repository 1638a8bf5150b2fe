//! Agent runs on the real server: an agent starts a run with its token, its MCP calls carrying the run id
//! belong to it (`workflow_id` in their audit events, counted in `calls`), it finishes the run, and the admin
//! reads it; `run_start`/`run_finish` events and the run metrics follow. Bad input is refused clearly, another
//! agent's run does not exist for it, and a secret written into a run reaches no table, answer or event.

mod common;

use std::time::{Duration, Instant};

use common::{send, start, token_with, Agent, Answer, Options, Proxy, ADMIN, SECRET};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

fn agent_token(sub: &str) -> String {
    token_with(
        json!({ "sub": sub, "tenant": "tenant-1", "requester": "carol", "exp": common::now() + 3600 }),
        SECRET,
    )
}

async fn post(proxy: &Proxy, path: &str, token: &str, body: &str) -> Answer {
    let auth = format!("Bearer {token}");
    send(
        Method::POST,
        &proxy.url(path),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_owned(),
    )
    .await
}

async fn admin_get(proxy: &Proxy, path: &str) -> Answer {
    let auth = format!("Bearer {ADMIN}");
    send(
        Method::GET,
        &proxy.url(path),
        &[("authorization", &auth)],
        "",
    )
    .await
}

async fn start_run(proxy: &Proxy, token: &str, body: Value) -> String {
    let answer = post(proxy, "/api/v1/runs", token, &body.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.json()["run_id"].as_str().unwrap().to_owned()
}

/// A `tools/call` of `echo` in the agent's session, naming `run_id` in the header.
async fn echo_in_run(agent: &Agent, id: i64, run_id: &str) -> Answer {
    let auth = format!("Bearer {}", agent.token);
    let session = agent.session.clone().unwrap();
    let message = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "hi" } } });
    send(
        Method::POST,
        &agent.url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &session),
            ("toolgate-run-id", run_id),
        ],
        message.to_string(),
    )
    .await
}

/// The committed audit events, oldest first.
async fn all_events(proxy: &Proxy) -> Vec<Value> {
    let mut events = common::audit_events(&proxy.app, 1000).await;
    events.reverse();
    events
}

fn micros(timestamp: &str) -> i64 {
    let at = time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (at.unix_timestamp_nanos() / 1000) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_from_start_to_finish_carries_its_calls() {
    let proxy = start(Options::default()).await;
    let token = agent_token("alice");
    let began = Instant::now();
    let run_id = start_run(
        &proxy,
        &token,
        json!({ "objective": "summarise the report", "plan": ["read", "write"], "dry_run": false }),
    )
    .await;
    let mut alice = Agent::new(&proxy, "demo", token.clone());
    alice.initialize().await;
    for id in 100..103 {
        let answer = echo_in_run(&alice, id, &run_id).await;
        assert_eq!(answer.error_code(), None, "{answer:?}");
    }
    // The same run named in `_meta`.
    let via_meta = alice
        .request(
            "tools/call",
            json!({ "name": "echo", "arguments": { "text": "meta" }, "_meta": { "io.toolgate/run_id": run_id } }),
        )
        .await;
    assert_eq!(via_meta.error_code(), None, "{via_meta:?}");
    // A call naming no run belongs to none.
    assert_eq!(
        alice
            .call("echo", json!({ "text": "free" }))
            .await
            .error_code(),
        None
    );

    let running = admin_get(&proxy, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(running.status, StatusCode::OK, "{running:?}");
    assert_eq!(running.json()["status"], "running");
    assert_eq!(running.json()["calls"], 4);

    let finished = post(
        &proxy,
        &format!("/api/v1/runs/{run_id}/finish"),
        &token,
        &json!({ "status": "succeeded", "artifacts": ["summary.md"] }).to_string(),
    )
    .await;
    let elapsed = began.elapsed();
    assert_eq!(finished.status, StatusCode::OK, "{finished:?}");
    let run = finished.json();
    for key in [
        "run_id",
        "agent_id",
        "objective",
        "status",
        "started_at",
        "finished_at",
        "duration_ms",
        "plan",
        "artifacts",
        "error",
        "requester_id",
        "dry_run",
        "calls",
    ] {
        assert!(run.get(key).is_some(), "{key} missing: {run}");
    }
    assert_eq!(run["run_id"], run_id.as_str());
    assert_eq!(run["agent_id"], "alice");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["calls"], 4);
    assert_eq!(run["requester_id"], "carol");
    assert_eq!(run["dry_run"], false);
    assert_eq!(run["plan"], json!(["read", "write"]));
    assert_eq!(run["artifacts"], json!(["summary.md"]));
    assert_eq!(run["error"], Value::Null);
    let duration = run["duration_ms"].as_i64().unwrap();
    let (started, ended) = (
        micros(run["started_at"].as_str().unwrap()),
        micros(run["finished_at"].as_str().unwrap()),
    );
    assert_eq!(duration, (ended - started) / 1000);
    assert!(
        duration as u128 <= elapsed.as_millis(),
        "{duration} > {elapsed:?}"
    );

    // The admin's view is the same run.
    let listed = admin_get(&proxy, "/api/v1/runs?agent_id=alice&status=succeeded").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["runs"][0], run);
    assert_eq!(listed.json()["next_cursor"], Value::Null);
    let none = admin_get(&proxy, "/api/v1/runs?status=running").await;
    assert_eq!(none.json()["runs"], json!([]));

    // Its calls' events carry it as `workflow_id`; the call naming no run has none.
    let events = all_events(&proxy).await;
    let in_run: Vec<&Value> = events
        .iter()
        .filter(|e| e["workflow_id"] == run_id.as_str())
        .collect();
    let types: Vec<&str> = in_run
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "tool_call").count(),
        4,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "tool_result").count(),
        4,
        "{types:?}"
    );
    assert_eq!(types.first(), Some(&"run_start"));
    assert_eq!(types.last(), Some(&"run_finish"));
    let free: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_call" && e["workflow_id"].is_null())
        .collect();
    assert_eq!(free.len(), 1);
    let start_event = in_run[0];
    let finish_event = in_run.last().unwrap();
    assert_eq!(start_event["agent_id"], "alice");
    assert_eq!(start_event["tenant_id"], "tenant-1");
    assert_eq!(start_event["requester_id"], "carol");
    assert_eq!(finish_event["extra"]["status"], "succeeded");
    assert_eq!(finish_event["extra"]["duration_ms"], duration);
    assert_eq!(finish_event["extra"]["dry_run"], false);
    // The events' own timestamps agree with the duration (each is taken just after its moment).
    let between = (micros(finish_event["timestamp"].as_str().unwrap())
        - micros(start_event["timestamp"].as_str().unwrap()))
        / 1000;
    assert!((between - duration).abs() < 1000, "{between} vs {duration}");

    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"toolgate_agent_runs_total{agent_id="alice",status="succeeded"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"toolgate_agent_run_duration_seconds_count{agent_id="alice"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_requests_are_refused_clearly() {
    let proxy = start(Options::default()).await;
    let (alice, bob) = (agent_token("alice"), agent_token("bob"));
    let run_id = start_run(&proxy, &alice, json!({ "objective": "o" })).await;

    for (body, why) in [
        ("{not json".to_owned(), "bad JSON"),
        (json!({ "plan": [] }).to_string(), "no objective"),
        (
            json!({ "objective": "o", "dry_run": "no" }).to_string(),
            "dry_run not a boolean",
        ),
        (
            json!({ "objective": "x".repeat(2049) }).to_string(),
            "objective over its cap",
        ),
    ] {
        let answer = post(&proxy, "/api/v1/runs", &alice, &body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{why}: {answer:?}");
        assert_eq!(answer.json()["error"], "bad_request", "{why}");
        assert!(answer.json()["message"].is_string(), "{why}");
    }
    let finish = format!("/api/v1/runs/{run_id}/finish");
    for (body, why) in [
        (json!({ "status": "done" }).to_string(), "unknown status"),
        (
            json!({ "status": "failed", "error": "e".repeat(2049) }).to_string(),
            "error over 2,048",
        ),
        ("[]".to_owned(), "not an object"),
    ] {
        let answer = post(&proxy, &finish, &alice, &body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{why}: {answer:?}");
    }
    let unsupported = send(
        Method::POST,
        &proxy.url("/api/v1/runs"),
        &[("authorization", &format!("Bearer {alice}"))],
        "{}",
    )
    .await;
    assert_eq!(unsupported.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Unknown, and another agent's: the same 404.
    let unknown = post(
        &proxy,
        &format!("/api/v1/runs/{}/finish", uuid::Uuid::new_v4()),
        &alice,
        r#"{"status":"succeeded"}"#,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let theirs = post(&proxy, &finish, &bob, r#"{"status":"succeeded"}"#).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.json(), unknown.json(), "nothing tells the two apart");

    // Finished once; twice is a conflict.
    assert_eq!(
        post(&proxy, &finish, &alice, r#"{"status":"canceled"}"#)
            .await
            .status,
        StatusCode::OK
    );
    let twice = post(&proxy, &finish, &alice, r#"{"status":"succeeded"}"#).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.json()["error"], "run_ended");

    // POSTs take an agent token, GETs the admin's.
    let admin_post = post(&proxy, "/api/v1/runs", ADMIN, r#"{"objective":"o"}"#).await;
    assert_eq!(admin_post.status, StatusCode::UNAUTHORIZED);
    let challenge = admin_post.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("resource_metadata=\"http://127.0.0.1:")
            && challenge.contains("/.well-known/oauth-protected-resource/api/v1/runs\""),
        "{challenge}"
    );
    let metadata = send(
        Method::GET,
        &proxy.url("/.well-known/oauth-protected-resource/api/v1/runs"),
        &[],
        "",
    )
    .await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert!(metadata.json()["resource"]
        .as_str()
        .unwrap()
        .ends_with("/api/v1/runs"));
    let agent_get = send(
        Method::GET,
        &proxy.url("/api/v1/runs"),
        &[("authorization", &format!("Bearer {alice}"))],
        "",
    )
    .await;
    assert_eq!(agent_get.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        admin_get(&proxy, "/api/v1/runs?status=done").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin_get(&proxy, "/api/v1/runs?cursor=zzz").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin_get(&proxy, "/api/v1/runs/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // A disabled agent can neither start nor finish a run.
    let open = start_run(&proxy, &alice, json!({ "objective": "o" })).await;
    let auth = format!("Bearer {ADMIN}");
    let disable = send(
        Method::POST,
        &proxy.url("/api/v1/agents/alice/disable"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(disable.status, StatusCode::OK, "{disable:?}");
    assert_eq!(
        post(&proxy, "/api/v1/runs", &alice, r#"{"objective":"o"}"#)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let refused = post(
        &proxy,
        &format!("/api/v1/runs/{open}/finish"),
        &alice,
        r#"{"status":"succeeded"}"#,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["error"], "agent_disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_naming_a_run_it_may_not_use_is_refused_and_recorded() {
    let proxy = start(Options::default()).await;
    let (alice_token, bob_token) = (agent_token("alice"), agent_token("bob"));
    let alices = start_run(&proxy, &alice_token, json!({ "objective": "o" })).await;
    let mut bob = Agent::new(&proxy, "demo", bob_token.clone());
    bob.initialize().await;
    let ended = start_run(&proxy, &bob_token, json!({ "objective": "o" })).await;
    assert_eq!(
        post(
            &proxy,
            &format!("/api/v1/runs/{ended}/finish"),
            &bob_token,
            r#"{"status":"succeeded"}"#
        )
        .await
        .status,
        StatusCode::OK
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    for (i, run_id) in [
        alices.as_str(),
        ended.as_str(),
        unknown.as_str(),
        "not-a-run",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = echo_in_run(&bob, 200 + i as i64, run_id).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.error_code(), Some(-31001), "{run_id}: {answer:?}");
        let message = answer.message()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("denied by policy toolgate.run: unknown_run"),
            "{message}"
        );
    }
    // Header and `_meta` naming two runs: refused too.
    let mut both = Agent::new(&proxy, "demo", alice_token.clone());
    both.initialize().await;
    let auth = format!("Bearer {alice_token}");
    let session = both.session.clone().unwrap();
    let message = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": "echo", "arguments": {}, "_meta": { "io.toolgate/run_id": unknown } } });
    let answer = send(
        Method::POST,
        &both.url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &session),
            ("toolgate-run-id", &alices),
        ],
        message.to_string(),
    )
    .await;
    assert_eq!(answer.error_code(), Some(-31001), "{answer:?}");

    // Nothing was attached to alice's run; each refusal is a policy_deny naming no run.
    let run = admin_get(&proxy, &format!("/api/v1/runs/{alices}"))
        .await
        .json();
    assert_eq!(run["calls"], 0);
    let events = all_events(&proxy).await;
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "policy_deny" && e["policy_id"] == "toolgate.run")
        .collect();
    assert_eq!(refusals.len(), 5);
    assert!(refusals.iter().all(|e| e["workflow_id"].is_null()));
    assert!(events
        .iter()
        .filter(|e| e["workflow_id"] == alices.as_str())
        .all(|e| e["event_type"] == "run_start"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_written_into_a_run_reaches_no_table_answer_or_event() {
    let proxy = start(Options::default()).await;
    let token = agent_token("alice");
    let run_id = start_run(
        &proxy,
        &token,
        json!({ "objective": format!("deploy with {AWS}"), "plan": { "steps": [format!("export KEY={AWS}")] } }),
    )
    .await;
    let finished = post(
        &proxy,
        &format!("/api/v1/runs/{run_id}/finish"),
        &token,
        &json!({ "status": "failed", "error": format!("rejected key {AWS}"), "artifacts": [{ "log": AWS }] }).to_string(),
    )
    .await;
    assert_eq!(finished.status, StatusCode::OK);
    let body = String::from_utf8_lossy(&finished.body).into_owned();
    assert!(!body.contains(AWS), "{body}");
    let run = finished.json();
    assert_eq!(run["objective"], "deploy with [REDACTED:aws_access_key]");
    assert_eq!(run["error"], "rejected key [REDACTED:aws_access_key]");
    let paths: Vec<&str> = run["dlp_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/objective", "/plan/steps/0", "/artifacts/0/log", "/error"]
    );
    for f in run["dlp_findings"].as_array().unwrap() {
        assert_eq!(f["type"], "aws_access_key");
    }

    let listed = admin_get(&proxy, "/api/v1/runs").await;
    assert!(!String::from_utf8_lossy(&listed.body).contains(AWS));
    let events = all_events(&proxy).await;
    let run_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["workflow_id"] == run_id.as_str())
        .collect();
    assert_eq!(run_events.len(), 2);
    for e in &run_events {
        assert!(!e.to_string().contains(AWS), "{e}");
    }
    assert_eq!(run_events[0]["extra"]["dlp_findings_count"], 2);
    assert_eq!(run_events[1]["extra"]["dlp_findings_count"], 4);

    // The table itself, read with SQL.
    proxy.app.audit.close().await;
    let db = proxy.dir.path().join("audit.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT run_id, objective, plan, artifacts, error, dlp_findings FROM agent_runs",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let text = format!("{rows:?}");
    assert!(!text.contains(AWS), "{text}");
    assert!(text.contains("aws_access_key"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_run_times_out_with_no_request() {
    let proxy = start(Options {
        extra_toml: "[runs]\ntimeout_seconds = 1\n".into(),
        ..Options::default()
    })
    .await;
    let token = agent_token("alice");
    let run_id = start_run(&proxy, &token, json!({ "objective": "forgotten" })).await;
    let run = common::eventually(Duration::from_secs(5), || async {
        let run = admin_get(&proxy, &format!("/api/v1/runs/{run_id}"))
            .await
            .json();
        (run["status"] != "running").then_some(run)
    })
    .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"], "timed out");
    let duration = run["duration_ms"].as_i64().unwrap();
    assert!(
        (1000..2000).contains(&duration),
        "within a second of its deadline: {duration}"
    );
    let finish = all_events(&proxy)
        .await
        .into_iter()
        .find(|e| e["event_type"] == "run_finish")
        .unwrap();
    assert_eq!(finish["workflow_id"], run_id.as_str());
    assert_eq!(finish["error"], "timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_sees_the_run_of_a_call() {
    // A policy that allows only calls made inside a run, and says which run in its reason.
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("runs_only.rego"),
        r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "test.runs_only", "reason": "outside any run"}

decision := {"result": "allow", "policy_id": "test.runs_only", "reason": concat(" ", ["in", input.agent.run_id])} if {
	is_string(input.agent.run_id)
}
"#,
    )
    .unwrap();
    let proxy = start(Options {
        policy_dir: Some(policies.path().to_owned()),
        ..Options::default()
    })
    .await;
    let token = agent_token("alice");
    let run_id = start_run(&proxy, &token, json!({ "objective": "o" })).await;
    let mut alice = Agent::new(&proxy, "demo", token);
    alice.initialize().await;
    let outside = alice.call("echo", json!({ "text": "x" })).await;
    assert_eq!(outside.error_code(), Some(-31001), "{outside:?}");
    let inside = echo_in_run(&alice, 50, &run_id).await;
    assert_eq!(inside.error_code(), None, "{inside:?}");
    let allowed = all_events(&proxy)
        .await
        .into_iter()
        .find(|e| e["event_type"] == "tool_call")
        .unwrap();
    assert_eq!(allowed["policy_reason"], format!("in {run_id}"));
    assert_eq!(allowed["workflow_id"], run_id.as_str());
}
