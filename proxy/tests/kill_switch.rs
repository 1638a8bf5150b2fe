//! The kill switch and the agents list on the real server: disabling through the admin API refuses the agent
//! (403, before its session is looked up, on every request path) and ends its sessions; the switch is stored
//! (a restart keeps it, another instance on the same database follows it within a second); the listing counts
//! calls, denials and escalations; ids holding secrets are never stored or shown in clear; the same `sub` in two
//! tenants is two agents; `agents.disabled` in the configuration still works; a disable that lands while an
//! `initialize` is at the upstream leaves no session behind.

mod common;

use std::time::Duration;

use common::{send, start, Agent, Options, Proxy, ADMIN, SECRET};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use toolgate::auth::AgentKey;

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

/// A token for `sub` in `tenant` (none: no tenant claim), valid for an hour.
fn token_in(tenant: Option<&str>, sub: &str) -> String {
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(SECRET.into()),
        ..Default::default()
    };
    toolgate::auth::mint_hs256(&settings, sub, tenant, &[], Duration::from_secs(3600)).unwrap()
}

async fn admin(proxy: &Proxy, method: Method, path: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(method, &proxy.url(path), &[("authorization", &auth)], "").await
}

async fn listing(proxy: &Proxy, query: &str) -> Vec<Value> {
    let answer = admin(proxy, Method::GET, &format!("/api/v1/agents{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["next_cursor"], Value::Null);
    body["agents"].as_array().unwrap().clone()
}

fn listed<'a>(agents: &'a [Value], tenant: Option<&str>, agent_id: &str) -> Option<&'a Value> {
    agents
        .iter()
        .find(|a| a["agent_id"] == agent_id && a["tenant_id"].as_str() == tenant)
}

/// The committed audit events of `event_type`, oldest first.
async fn events(proxy: &Proxy, event_type: &str) -> Vec<Value> {
    let mut events: Vec<Value> = common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == event_type)
        .collect();
    events.reverse();
    events
}

async fn echo(agent: &mut Agent) -> common::Answer {
    agent.call("echo", json!({ "text": "hi" })).await
}

async fn echo_stateless(agent: &mut Agent) -> common::Answer {
    agent.call_stateless("echo", json!({ "text": "hi" })).await
}

fn key(tenant: Option<&str>, sub: &str) -> AgentKey {
    AgentKey {
        tenant_id: tenant.map(str::to_owned),
        agent_id: sub.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_refuses_the_agent_everywhere_and_ends_its_sessions() {
    let proxy = start(Options::default()).await;
    let mut alice = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "alice"));
    let mut bob = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "bob"));
    alice.initialize().await;
    bob.initialize().await;
    assert_eq!(echo(&mut alice).await.error_code(), None);
    let old_session = alice.session.clone().unwrap();
    assert_eq!(
        proxy.app.sessions.count_of(&key(Some("tenant-1"), "alice")),
        1
    );

    let disabled = admin(&proxy, Method::POST, "/api/v1/agents/alice/disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    let agent = disabled.json();
    assert_eq!(agent["agent_id"], "alice");
    assert_eq!(agent["tenant_id"], "tenant-1");
    assert_eq!(agent["disabled"], true);
    assert_eq!(agent["disabled_by"], "admin");
    assert!(agent["disabled_at"].is_string());
    assert_eq!(
        proxy.app.sessions.count_of(&key(Some("tenant-1"), "alice")),
        0,
        "its sessions end at once"
    );

    // Refused on every path, before any session is looked up: a POST in its old session, a stateless call, a
    // new initialize, the GET stream and a DELETE.
    let refused = echo(&mut alice).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is disabled"));
    assert_eq!(
        echo_stateless(&mut alice).await.status,
        StatusCode::FORBIDDEN
    );
    let mut fresh = Agent::new(&proxy, "demo", alice.token.clone());
    let init = fresh
        .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }))
        .await;
    assert_eq!(init.status, StatusCode::FORBIDDEN);
    let auth = format!("Bearer {}", alice.token);
    for method in [Method::GET, Method::DELETE] {
        let answer = send(
            method.clone(),
            &alice.url,
            &[("authorization", &auth), ("mcp-session-id", &old_session)],
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method}");
    }
    // Another agent is untouched.
    assert_eq!(echo(&mut bob).await.error_code(), None);

    let twice = admin(&proxy, Method::POST, "/api/v1/agents/alice/disable").await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.json()["error"], "already_disabled");
    let only_disabled = listing(&proxy, "?disabled=true").await;
    assert_eq!(only_disabled.len(), 1);
    assert_eq!(only_disabled[0]["agent_id"], "alice");

    let enabled = admin(&proxy, Method::POST, "/api/v1/agents/alice/enable").await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(enabled.json()["disabled"], false);
    assert_eq!(enabled.json()["disabled_by"], Value::Null);
    // Its old session is gone for good; a new one works.
    let stale = echo(&mut alice).await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND, "{stale:?}");
    alice.session = None;
    assert_eq!(echo_stateless(&mut alice).await.error_code(), None);
    alice.initialize().await;
    assert_eq!(echo(&mut alice).await.error_code(), None);
    let again = admin(&proxy, Method::POST, "/api/v1/agents/alice/enable").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["error"], "already_enabled");

    // Each change is an admin_action naming the agent and the admin; the ended session is a session_end.
    let actions = events(&proxy, "admin_action").await;
    let names: Vec<&str> = actions
        .iter()
        .map(|e| e["extra"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent_disable", "agent_enable"]);
    for e in &actions {
        assert_eq!(e["agent_id"], "alice");
        assert_eq!(e["tenant_id"], "tenant-1");
        assert_eq!(e["requester_id"], "admin");
    }
    let ended: Vec<Value> = events(&proxy, "session_end")
        .await
        .into_iter()
        .filter(|e| e["extra"]["reason"] == "agent_disabled")
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["session_id"], old_session.as_str());
    assert_eq!(ended[0]["agent_id"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_switch_requests_are_refused_clearly() {
    let proxy = start(Options::default()).await;
    let unknown = admin(&proxy, Method::POST, "/api/v1/agents/nobody/disable").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"], "not_found");
    let unknown = admin(&proxy, Method::POST, "/api/v1/agents/nobody/enable").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = admin(&proxy, Method::GET, "/api/v1/agents?disabled=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = admin(&proxy, Method::GET, "/api/v1/agents?cursor=zzz").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = admin(&proxy, Method::GET, "/api/v1/agents?limit=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = admin(&proxy, Method::POST, "/api/v1/agents/%FF/disable").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let verb = admin(&proxy, Method::POST, "/api/v1/agents/alice/delete").await;
    assert_eq!(verb.status, StatusCode::NOT_FOUND);
    let no_token = send(Method::GET, &proxy.url("/api/v1/agents"), &[], "").await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    assert!(events(&proxy, "admin_action").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_counts_calls_denials_and_escalations() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "counted"));
    agent.initialize().await;
    for _ in 0..3 {
        assert_eq!(echo(&mut agent).await.error_code(), None);
    }
    let denied = agent
        .call("read_file", json!({ "path": "/etc/passwd" }))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    let escalated = agent
        .call(
            "write_file",
            json!({ "path": "/workspace/n.txt", "content": "x" }),
        )
        .await;
    assert_eq!(escalated.error_code(), Some(-31002));
    // Lists and plumbing are not calls.
    agent.request("tools/list", json!({})).await;
    let mut other = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "idle"));
    other.initialize().await;

    // The background flush stores the counts within a second; the listing shows them.
    let counted = common::eventually(Duration::from_secs(5), || async {
        let agents = listing(&proxy, "").await;
        listed(&agents, Some("tenant-1"), "counted")
            .filter(|a| a["calls"] == 5)
            .cloned()
    })
    .await;
    assert_eq!(counted["denials"], 1);
    assert_eq!(counted["escalations"], 1);
    assert_eq!(counted["disabled"], false);
    assert!(counted["first_seen"].as_str().unwrap() <= counted["last_seen"].as_str().unwrap());
    let agents = listing(&proxy, "").await;
    let idle =
        listed(&agents, Some("tenant-1"), "idle").expect("an agent that only connected is seen");
    assert_eq!(
        (idle["calls"].as_i64(), idle["denials"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(agents[0]["agent_id"], "idle", "newest last_seen first");
    assert!(listing(&proxy, "?disabled=true").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_survives_a_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let options = || Options {
        database_url: Some(db.clone()),
        ..Default::default()
    };
    let proxy = start(options()).await;
    let mut alice = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "alice"));
    assert_eq!(echo_stateless(&mut alice).await.error_code(), None);
    let disabled = admin(&proxy, Method::POST, "/api/v1/agents/alice/disable").await;
    assert_eq!(disabled.status, StatusCode::OK);
    proxy.stop().await;

    let proxy = start(options()).await;
    let mut alice = Agent::new(&proxy, "demo", token_in(Some("tenant-1"), "alice"));
    assert_eq!(
        echo_stateless(&mut alice).await.status,
        StatusCode::FORBIDDEN
    );
    let agents = listing(&proxy, "").await;
    assert_eq!(
        listed(&agents, Some("tenant-1"), "alice").unwrap()["disabled"],
        true
    );
    let enabled = admin(&proxy, Method::POST, "/api/v1/agents/alice/enable").await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(echo_stateless(&mut alice).await.error_code(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_on_the_same_database_refuses_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let one = start(Options {
        database_url: Some(db.clone()),
        ..Default::default()
    })
    .await;
    let two = start(Options {
        database_url: Some(db.clone()),
        audit_toml: "chain_id = \"two\"".into(),
        ..Default::default()
    })
    .await;
    let mut on_two = Agent::new(&two, "demo", token_in(Some("tenant-1"), "alice"));
    on_two.initialize().await;
    assert_eq!(echo(&mut on_two).await.error_code(), None);
    // Seen on the other instance only: its counts reach the shared table by its own flush.
    common::eventually(Duration::from_secs(5), || async {
        listed(&listing(&one, "").await, Some("tenant-1"), "alice")
            .filter(|a| a["calls"] == 1)
            .cloned()
    })
    .await;

    let disabled = admin(&one, Method::POST, "/api/v1/agents/alice/disable").await;
    assert_eq!(disabled.status, StatusCode::OK);
    common::eventually(Duration::from_secs(1), || async {
        (echo_stateless(&mut Agent::new(&two, "demo", on_two.token.clone()))
            .await
            .status
            == StatusCode::FORBIDDEN)
            .then_some(())
    })
    .await;
    assert_eq!(
        two.app.sessions.count_of(&key(Some("tenant-1"), "alice")),
        0,
        "the other instance ended its sessions too"
    );

    let enabled = admin(&two, Method::POST, "/api/v1/agents/alice/enable").await;
    assert_eq!(enabled.status, StatusCode::OK);
    let token = on_two.token.clone();
    common::eventually(Duration::from_secs(1), || async {
        let mut on_one = Agent::new(&one, "demo", token.clone());
        (echo_stateless(&mut on_one).await.error_code().is_none()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_agent_id_is_never_stored_or_shown_in_clear() {
    let proxy = start(Options::default()).await;
    let sub = format!("agent-{AWS}");
    let tenant = format!("tenant-{AWS}");
    let mut agent = Agent::new(&proxy, "demo", token_in(Some(&tenant), &sub));
    assert_eq!(echo_stateless(&mut agent).await.error_code(), None);

    let answer = admin(&proxy, Method::GET, "/api/v1/agents").await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(!text.contains("AKIA"), "{text}");
    let agents = answer.json()["agents"].as_array().unwrap().clone();
    let stored = "agent-[REDACTED:aws_access_key]";
    assert!(
        listed(&agents, Some("tenant-[REDACTED:aws_access_key]"), stored).is_some(),
        "{text}"
    );

    // The table itself, read straight from the file.
    let url = format!("sqlite://{}", proxy.dir.path().join("audit.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT tenant_id, agent_id FROM agents")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!format!("{rows:?}").contains("AKIA"), "{rows:?}");

    // The switch takes the stored id (percent-encoded) and stops the agent whose raw id redacts to it.
    let disabled = admin(
        &proxy,
        Method::POST,
        "/api/v1/agents/agent-%5BREDACTED%3Aaws_access_key%5D/disable",
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    assert!(!String::from_utf8_lossy(&disabled.body).contains("AKIA"));
    assert_eq!(
        echo_stateless(&mut agent).await.status,
        StatusCode::FORBIDDEN
    );
    let action = &events(&proxy, "admin_action").await[0];
    assert_eq!(action["agent_id"], stored);
    assert!(!action.to_string().contains("AKIA"), "{action}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sub_in_two_tenants_is_two_agents() {
    let proxy = start(Options::default()).await;
    let mut t1 = Agent::new(&proxy, "demo", token_in(Some("t1"), "alice"));
    let mut t2 = Agent::new(&proxy, "demo", token_in(Some("t2"), "alice"));
    let mut none = Agent::new(&proxy, "demo", token_in(None, "alice"));
    for agent in [&mut t1, &mut t2, &mut none] {
        assert_eq!(echo_stateless(agent).await.error_code(), None);
    }
    let agents = listing(&proxy, "").await;
    assert_eq!(agents.len(), 3, "{agents:?}");
    assert!(listed(&agents, None, "alice").is_some());

    let one = admin(
        &proxy,
        Method::POST,
        "/api/v1/agents/alice/disable?tenant=t2",
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        one.json()["tenant_id"],
        "t2",
        "one agent changed: the bare object"
    );
    assert_eq!(echo_stateless(&mut t2).await.status, StatusCode::FORBIDDEN);
    assert_eq!(echo_stateless(&mut t1).await.error_code(), None);
    assert_eq!(echo_stateless(&mut none).await.error_code(), None);
    let unseen = admin(
        &proxy,
        Method::POST,
        "/api/v1/agents/alice/disable?tenant=t3",
    )
    .await;
    assert_eq!(unseen.status, StatusCode::NOT_FOUND);

    // Without a tenant: every tenant's alice still enabled, answered as a list when several change.
    let rest = admin(&proxy, Method::POST, "/api/v1/agents/alice/disable").await;
    assert_eq!(rest.status, StatusCode::OK);
    let changed = rest.json()["agents"].as_array().unwrap().clone();
    let mut tenants: Vec<Value> = changed.iter().map(|a| a["tenant_id"].clone()).collect();
    tenants.sort_by_key(|t| t.to_string());
    assert_eq!(tenants, [json!("t1"), Value::Null]);
    for agent in [&mut t1, &mut none] {
        assert_eq!(echo_stateless(agent).await.status, StatusCode::FORBIDDEN);
    }
    let back = admin(&proxy, Method::POST, "/api/v1/agents/alice/enable?tenant=").await;
    assert_eq!(
        back.status,
        StatusCode::OK,
        "an empty tenant is the agent of no tenant"
    );
    assert_eq!(back.json()["tenant_id"], Value::Null);
    assert_eq!(echo_stateless(&mut none).await.error_code(), None);
    assert_eq!(echo_stateless(&mut t1).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_disabled_in_the_configuration_stay_disabled() {
    let proxy = start(Options {
        extra_toml: "[agents]\ndisabled = [\"mallory\", \"ghost\"]\n".into(),
        ..Default::default()
    })
    .await;
    let mut mallory = Agent::new(&proxy, "demo", token_in(Some("t1"), "mallory"));
    assert_eq!(
        echo_stateless(&mut mallory).await.status,
        StatusCode::FORBIDDEN
    );
    let agents = listing(&proxy, "?disabled=true").await;
    let seen = listed(&agents, Some("t1"), "mallory").expect("a refused agent is seen");
    assert_eq!(seen["disabled"], true);
    assert_eq!(seen["disabled_by"], "config");
    let ghost = listed(&agents, None, "ghost").expect("never seen, disabled by the configuration");
    assert_eq!(ghost["last_seen"], Value::Null);
    for id in ["mallory", "ghost"] {
        let enable = admin(&proxy, Method::POST, &format!("/api/v1/agents/{id}/enable")).await;
        assert_eq!(enable.status, StatusCode::CONFLICT);
        assert_eq!(enable.json()["error"], "disabled_by_config");
        assert!(enable.json()["message"]
            .as_str()
            .unwrap()
            .contains("agents.disabled"));
        let disable = admin(
            &proxy,
            Method::POST,
            &format!("/api/v1/agents/{id}/disable"),
        )
        .await;
        assert_eq!(disable.status, StatusCode::CONFLICT);
    }
    assert_eq!(
        echo_stateless(&mut mallory).await.status,
        StatusCode::FORBIDDEN
    );
}

/// A disable that lands while the upstream is answering `initialize` (the mock holds the answer until the disable
/// is done, so the order is fixed, not timed): the session the answer would open is ended at once, recorded as
/// ended by the disable, the upstream's session is ended too, and the agent is refused as if it had been
/// disabled before. On SQLite and, when configured, on PostgreSQL (the shared session store).
async fn a_disable_during_initialize_leaves_no_session(database_url: String) {
    let mock = common::upstream::start(common::upstream::State {
        hold_initialize: true,
        unique_sessions: true,
        ..Default::default()
    })
    .await;
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        database_url: Some(database_url),
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "web", token_in(Some("tenant-1"), "racer"));
    let opening = tokio::spawn(async move {
        agent
            .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }))
            .await
    });
    // The initialize passed the kill switch and reached the upstream; the agent is disabled before it answers.
    mock.state.initialize_arrived.notified().await;
    let disabled = admin(&proxy, Method::POST, "/api/v1/agents/racer/disable").await;
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    mock.state.release_initialize.notify_one();
    let answer = opening.await.unwrap();

    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(answer.message()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is disabled"));
    assert_eq!(answer.header("mcp-session-id"), None);
    assert_eq!(
        proxy.app.sessions.count_of(&key(Some("tenant-1"), "racer")),
        0,
        "no session outlives the disable"
    );
    let started = events(&proxy, "session_start").await;
    assert_eq!(started.len(), 1);
    let sid = started[0]["session_id"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("upstream-session-"), "{sid}");
    let ended = events(&proxy, "session_end").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["session_id"], sid.as_str());
    assert_eq!(ended[0]["extra"]["reason"], "agent_disabled");
    assert_eq!(ended[0]["agent_id"], "racer");
    // The upstream was told the session is over.
    let deletes = mock.state.deletes.lock().unwrap().clone();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["mcp-session-id"], sid.as_str());

    // Enabled again, the old session does not come back; a new initialize opens a new one.
    mock.state.release_initialize.notify_one();
    let enabled = admin(&proxy, Method::POST, "/api/v1/agents/racer/enable").await;
    assert_eq!(enabled.status, StatusCode::OK);
    let mut stale = Agent::new(&proxy, "web", token_in(Some("tenant-1"), "racer"));
    stale.session = Some(sid);
    assert_eq!(echo(&mut stale).await.status, StatusCode::NOT_FOUND);
    let mut again = Agent::new(&proxy, "web", token_in(Some("tenant-1"), "racer"));
    again.initialize().await;
    assert_eq!(
        proxy.app.sessions.count_of(&key(Some("tenant-1"), "racer")),
        1
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_during_initialize_leaves_no_session_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("audit.db").display());
    a_disable_during_initialize_leaves_no_session(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_during_initialize_leaves_no_session_postgres() {
    common::on_postgres(a_disable_during_initialize_leaves_no_session).await;
}
