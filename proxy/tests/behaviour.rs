//! Behaviour on the real server: denied calls open `deny_spike` (listed by the admin API, an `alert` audit event,
//! counted in the gauge), acknowledge and resolve answer as the contract says, a changed prompt hash opens
//! `prompt_drift` until an admin re-pins, every event carries a computed `behavioral_score`, and a tool name or
//! target holding a secret never reaches the alerts API or the behaviour tables.

mod common;
// The live feed's raw client; this test uses only part of it.
#[path = "live_feed/sse.rs"]
#[allow(dead_code)]
mod sse;

use std::time::Duration;

use common::{eventually, send, start, token, Agent, Options, Proxy, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sse::{Ask, Feed};

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

async fn admin(proxy: &Proxy, method: Method, path: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(method, &proxy.url(path), &[("authorization", &auth)], "").await
}

async fn open_alerts(proxy: &Proxy) -> Vec<Value> {
    let answer = admin(proxy, Method::GET, "/api/v1/alerts?status=open").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body = answer.json();
    assert!(body.get("next_cursor").is_some());
    body["alerts"].as_array().unwrap().clone()
}

async fn alert_of(proxy: &Proxy, kind: &str) -> Value {
    eventually(Duration::from_secs(2), || async {
        open_alerts(proxy)
            .await
            .into_iter()
            .find(|a| a["kind"] == kind)
    })
    .await
}

async fn events(proxy: &Proxy, event_type: &str) -> Vec<Value> {
    common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

fn metrics_line(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_calls_open_deny_spike_listed_audited_counted_and_acknowledged() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("mallory", &["dev"]));
    agent.initialize().await;
    for _ in 0..12 {
        let answer = agent
            .call("run_shell", json!({ "command": "cat /etc/shadow" }))
            .await;
        assert_eq!(answer.error_code(), Some(-31001), "{answer:?}");
    }
    let alert = alert_of(&proxy, "deny_spike").await;
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["agent_id"], "mallory");
    assert_eq!(alert["status"], "open");
    assert!(alert["detail"].as_str().unwrap().contains("calls denied"));
    let id = alert["id"].as_str().unwrap().to_owned();

    // An `alert` audit event, and the gauge.
    let audited = eventually(Duration::from_secs(2), || async {
        events(&proxy, "alert")
            .await
            .into_iter()
            .find(|e| e["extra"]["alert_id"] == id.as_str())
    })
    .await;
    assert_eq!(audited["extra"]["kind"], "deny_spike");
    assert_eq!(audited["agent_id"], "mallory");
    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert_eq!(
        metrics_line(&text, "toolgate_alerts_open_total{severity=\"high\"}").as_deref(),
        Some("toolgate_alerts_open_total{severity=\"high\"} 1"),
        "{text}"
    );
    // Counted once by kind (the dashboard's "alerts opened by kind"); every kind is there from the first scrape.
    assert_eq!(
        metrics_line(
            &text,
            "toolgate_alerts_opened_total{kind=\"deny_spike\",severity=\"high\"}"
        )
        .as_deref(),
        Some("toolgate_alerts_opened_total{kind=\"deny_spike\",severity=\"high\"} 1"),
        "{text}"
    );
    assert_eq!(
        metrics_line(
            &text,
            "toolgate_alerts_opened_total{kind=\"rate_anomaly\",severity=\"medium\"}"
        )
        .as_deref(),
        Some("toolgate_alerts_opened_total{kind=\"rate_anomaly\",severity=\"medium\"} 0"),
        "{text}"
    );

    // The denied calls carried computed scores: the first (new tool, new target) differs from the later ones
    // (a deny rate, no longer new).
    let denies = events(&proxy, "policy_deny").await;
    let scores: std::collections::BTreeSet<&str> = denies
        .iter()
        .map(|e| e["behavioral_score"].as_str().unwrap())
        .collect();
    assert!(scores.len() > 1, "{scores:?}");

    // Acknowledge: 200 with the changed alert; again: 409; unknown: 404; filters and bad input: 400.
    let acked = admin(&proxy, Method::POST, &format!("/api/v1/alerts/{id}/ack")).await;
    assert_eq!(acked.status, StatusCode::OK, "{acked:?}");
    assert_eq!(acked.json()["status"], "acknowledged");
    assert_eq!(acked.json()["acknowledged_by"], "admin");
    let again = admin(&proxy, Method::POST, &format!("/api/v1/alerts/{id}/ack")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["error"], "already_acknowledged");
    let unknown = admin(&proxy, Method::POST, "/api/v1/alerts/nope/resolve").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(open_alerts(&proxy)
        .await
        .iter()
        .all(|a| a["id"] != id.as_str()));
    let bad = admin(&proxy, Method::GET, "/api/v1/alerts?status=sleeping").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["message"].as_str().unwrap().contains("status"));
    let bad = admin(&proxy, Method::GET, "/api/v1/alerts?kind=nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let listed = admin(
        &proxy,
        Method::GET,
        "/api/v1/alerts?kind=deny_spike&agent_id=mallory",
    )
    .await;
    assert_eq!(listed.json()["alerts"].as_array().unwrap().len(), 1);
    let resolved = admin(
        &proxy,
        Method::POST,
        &format!("/api/v1/alerts/{id}/resolve"),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK);
    assert_eq!(resolved.json()["status"], "resolved");
    let final_state = admin(
        &proxy,
        Method::POST,
        &format!("/api/v1/alerts/{id}/resolve"),
    )
    .await;
    assert_eq!(final_state.status, StatusCode::CONFLICT);
    let actions: Vec<String> = events(&proxy, "admin_action")
        .await
        .iter()
        .map(|e| e["extra"]["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(actions.contains(&"alert_ack".to_owned()), "{actions:?}");
    assert!(actions.contains(&"alert_resolve".to_owned()), "{actions:?}");
    eventually(Duration::from_secs(2), || async {
        let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        (metrics_line(&text, "toolgate_alerts_open_total{severity=\"high\"}").as_deref()
            == Some("toolgate_alerts_open_total{severity=\"high\"} 0"))
        .then_some(())
    })
    .await;
    proxy.stop().await;
}

async fn call_with_prompt(agent: &Agent, id: i64, hash: &str) -> common::Answer {
    let auth = format!("Bearer {}", agent.token);
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": "hi" } }
    });
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("toolgate-prompt-hash", hash),
    ];
    if let Some(s) = &agent.session {
        headers.push(("mcp-session-id", s.as_str()));
    }
    send(Method::POST, &agent.url, &headers, body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_prompt_hash_opens_prompt_drift_until_an_admin_repins() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("pia", &["dev"]));
    agent.initialize().await;
    let first = "0123456789abcdef0123456789abcdef";
    let second = "fedcba9876543210fedcba9876543210";
    assert_eq!(call_with_prompt(&agent, 1, first).await.error_code(), None);
    assert_eq!(call_with_prompt(&agent, 2, first).await.error_code(), None);
    assert!(open_alerts(&proxy)
        .await
        .iter()
        .all(|a| a["kind"] != "prompt_drift"));
    // Not a hash: refused with a clear message, never pinned.
    let refused = call_with_prompt(&agent, 3, "not a hash").await;
    assert_eq!(refused.error_code(), Some(-32602), "{refused:?}");
    assert!(refused.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hex digits"));
    // Another hash: drift.
    assert_eq!(call_with_prompt(&agent, 4, second).await.error_code(), None);
    let alert = alert_of(&proxy, "prompt_drift").await;
    assert_eq!(alert["agent_id"], "pia");
    assert_eq!(alert["severity"], "high");
    let repin = admin(&proxy, Method::POST, "/api/v1/agents/pia/prompt/repin").await;
    assert_eq!(repin.status, StatusCode::OK, "{repin:?}");
    assert_eq!(repin.json()["previous_prompt_hash"], first);
    let again = admin(&proxy, Method::POST, "/api/v1/agents/pia/prompt/repin").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let id = alert["id"].as_str().unwrap();
    let resolved = admin(
        &proxy,
        Method::POST,
        &format!("/api/v1/alerts/{id}/resolve"),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK);
    // The next declared hash is the new pin: no drift.
    assert_eq!(call_with_prompt(&agent, 5, second).await.error_code(), None);
    // Whatever that call raised is stored before the listing is read.
    proxy.app.alerts.store_raised().await.unwrap();
    assert!(open_alerts(&proxy)
        .await
        .iter()
        .all(|a| a["kind"] != "prompt_drift"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_tool_names_and_targets_reach_no_alert_and_no_table() {
    let proxy = start(Options {
        extra_toml: "[behavior]\nnew_tool_after_calls = 1\nsnapshot_seconds = 1\n".into(),
        ..Options::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "demo", token("eve", &["dev"]));
    agent.initialize().await;
    agent.call("echo", json!({ "text": "hi" })).await;
    let tool = format!("upload_{AWS}");
    agent
        .call(&tool, json!({ "path": format!("/workspace/{AWS}.txt") }))
        .await;
    let alert = alert_of(&proxy, "new_tool").await;
    let answer = admin(&proxy, Method::GET, "/api/v1/alerts").await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(!text.contains(AWS), "{text}");
    assert!(
        alert["detail"].as_str().unwrap().contains("REDACTED"),
        "{alert}"
    );
    // The snapshot is written within a second or two; nothing of the secret is in it either.
    let store = proxy.app.audit.store().clone();
    eventually(Duration::from_secs(5), || async {
        let rows = store.baselines().await.ok()?;
        (!rows.is_empty()).then_some(())
    })
    .await;
    for row in store.baselines().await.unwrap() {
        assert!(
            !row.text.contains(AWS) && !row.agent_id.contains(AWS),
            "{row:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_finding_opens_dlp_critical_shown_on_the_live_feed_as_alert() {
    let proxy = start(Options::default()).await;
    let mut feed = Feed::served(
        proxy.addr,
        Ask {
            query: "event_type=alert",
            ..Ask::default()
        },
    )
    .await;
    let mut agent = Agent::new(&proxy, "demo", token("leaky", &["dev"]));
    agent.initialize().await;
    let answer = agent
        .call("echo", json!({ "text": format!("key {AWS}") }))
        .await;
    assert_eq!(answer.error_code(), Some(-31001), "{answer:?}");
    let event = tokio::time::timeout(Duration::from_secs(3), feed.next())
        .await
        .expect("the alert is on the feed within a second or so")
        .expect("the feed is open");
    assert_eq!(event.event, "alert");
    assert_eq!(event.data["extra"]["kind"], "dlp_critical");
    assert_eq!(event.data["extra"]["severity"], "critical");
    assert_eq!(event.data["agent_id"], "leaky");
    assert!(!event.data.to_string().contains(AWS));
    let alert = alert_of(&proxy, "dlp_critical").await;
    assert_eq!(alert["id"], event.data["extra"]["alert_id"]);
    proxy.stop().await;
}

/// The key the demo server's seeded `/workspace/deploy.env` holds (fake: it unlocks nothing).
const DEMO_AWS_KEY: &str = "AKIAZ7EXAMPLE4DEMO7Q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_finding_in_a_result_opens_dlp_critical_and_the_call_carries_its_score() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("reader", &["dev"]));
    agent.initialize().await;
    // Clean arguments: the finding can only come from the upstream's answer.
    let answer = agent
        .call("read_file", json!({ "path": "/workspace/deploy.env" }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(text.contains("AWS_REGION"), "the file was read: {text}");
    assert!(!text.contains(DEMO_AWS_KEY), "{text}");
    let alert = alert_of(&proxy, "dlp_critical").await;
    assert_eq!(alert["agent_id"], "reader");
    assert_eq!(alert["severity"], "critical");
    let detail = alert["detail"].as_str().unwrap();
    assert!(
        detail.contains("a result from demo") && detail.contains("aws_access_key"),
        "{detail}"
    );

    // The call's decision and outcome events carry its computed score: the agent's first call, of a tool and
    // at a target it never named, scores 0.25 + 0.15.
    let call = eventually(Duration::from_secs(2), || async {
        events(&proxy, "tool_call").await.into_iter().next()
    })
    .await;
    let result = eventually(Duration::from_secs(2), || async {
        events(&proxy, "tool_result").await.into_iter().next()
    })
    .await;
    assert_eq!(call["tool_name"], "read_file");
    assert_eq!(call["behavioral_score"], "0.4000", "{call}");
    assert_eq!(result["behavioral_score"], "0.4000", "{result}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tool_definition_opens_tool_definition_changed() {
    let state = common::upstream::State::default();
    let v1 = json!({ "name": "echo", "description": "Echoes text.", "inputSchema": { "type": "object" } });
    *state.tools.lock().unwrap() = Some(vec![v1]);
    let (proxy, mock) = common::with_http_upstream(state, None).await;
    let mut agent = Agent::new(&proxy, "web", token("lister", &[]));
    agent.initialize().await;
    agent.request("tools/list", json!({})).await;
    proxy.app.alerts.store_raised().await.unwrap();
    assert!(open_alerts(&proxy)
        .await
        .iter()
        .all(|a| a["kind"] != "tool_definition_changed"));
    let v2 = json!({ "name": "echo", "description": "Echoes text, now in capitals.", "inputSchema": { "type": "object" } });
    *mock.state.tools.lock().unwrap() = Some(vec![v2]);
    agent.request("tools/list", json!({})).await;
    let alert = alert_of(&proxy, "tool_definition_changed").await;
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["agent_id"], "lister");
    let detail = alert["detail"].as_str().unwrap();
    assert!(detail.contains("tool echo of upstream web"), "{detail}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_sees_the_declared_prompt_hash_and_the_behaviour() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("main.rego"),
        r#"package toolgate

import rego.v1

default decision := {"result": "deny", "policy_id": "t.no_prompt", "reason": "no declared prompt"}

decision := {"result": "allow", "policy_id": "t.prompt", "reason": concat("", ["prompt ", input.agent.prompt_hash, " new tool ", sprintf("%v", [input.behavior.new_tool])])} if {
	is_string(input.agent.prompt_hash)
	is_number(input.behavior.score)
	is_number(input.behavior.zscore)
}
"#,
    )
    .unwrap();
    let proxy = start(Options {
        policy_dir: Some(policies.path().to_owned()),
        ..Options::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "demo", token("declarer", &[]));
    agent.initialize().await;
    let hash = "00112233445566778899aabbccddeeff";
    assert_eq!(call_with_prompt(&agent, 1, hash).await.error_code(), None);
    assert_eq!(call_with_prompt(&agent, 2, hash).await.error_code(), None);
    let undeclared = agent.call("echo", json!({ "text": "hi" })).await;
    assert_eq!(undeclared.error_code(), Some(-31001));
    let mut reasons: Vec<String> = events(&proxy, "tool_call")
        .await
        .iter()
        .map(|e| e["policy_reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            format!("prompt {hash} new tool false"),
            format!("prompt {hash} new tool true")
        ]
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_repin_another_tenants_agent() {
    let dir = tempfile::tempdir().unwrap();
    let t1_file = dir.path().join("t1.token");
    std::fs::write(&t1_file, "tenant-one-admin-token-behaviour\n").unwrap();
    let proxy = start(Options {
        extra_toml: format!(
            "[[admin.tenant_tokens]]\ntenant = \"t1\"\ntoken_file = \"{}\"\n",
            t1_file.display()
        ),
        ..Options::default()
    })
    .await;
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(common::SECRET.into()),
        ..Default::default()
    };
    let t2_token = toolgate::auth::mint_hs256(
        &settings,
        "pinned",
        Some("t2"),
        &[],
        Duration::from_secs(3600),
    )
    .unwrap();
    let mut agent = Agent::new(&proxy, "demo", t2_token);
    agent.initialize().await;
    let hash = "abcdefabcdefabcdefabcdefabcdefab";
    assert_eq!(call_with_prompt(&agent, 1, hash).await.error_code(), None);
    let t1 = |path: &str| {
        let path = path.to_owned();
        let proxy = &proxy;
        async move {
            send(
                Method::POST,
                &proxy.url(&path),
                &[("authorization", "Bearer tenant-one-admin-token-behaviour")],
                "",
            )
            .await
        }
    };
    assert_eq!(
        t1("/api/v1/agents/pinned/prompt/repin").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t1("/api/v1/agents/pinned/prompt/repin?tenant=t2")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The pin stands: the all-tenant admin removes it.
    let repin = admin(&proxy, Method::POST, "/api/v1/agents/pinned/prompt/repin").await;
    assert_eq!(repin.status, StatusCode::OK, "{repin:?}");
    assert_eq!(repin.json()["tenant_id"], "t2");
    assert_eq!(repin.json()["previous_prompt_hash"], hash);
    proxy.stop().await;
}
