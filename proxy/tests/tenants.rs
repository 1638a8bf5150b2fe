//! Tenant admin tokens (`[[admin.tenant_tokens]]`) through the real proxy: each sees and changes its own tenant's
//! events, exports, stats, chain verification, escalations, agents, runs and alerts only (another tenant's objects are
//! 404, never a hint), gets 403 on what belongs to no tenant (tool approvals, SIEM, policy), while `admin.token` keeps
//! seeing everything, the agents without a tenant included. The isolation cases run on SQLite and, when
//! `TOOLGATE_TEST_POSTGRES_URL` is set, on PostgreSQL, whose tenant filters are SQL of their own.

mod common;
// The live feed's raw SSE client; this file uses a part of it.
#[allow(dead_code)]
#[path = "live_feed/sse.rs"]
mod sse;

use std::time::Duration;

use common::instances::PgSchema;
use common::{send, start, Agent, Options, Proxy, ADMIN, SECRET};
use hyper::Method;
use serde_json::{json, Value};

/// Runs `case` on a fresh SQLite database (`None`: the harness's own) and, when configured, on a fresh
/// PostgreSQL schema (its URL).
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(None).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(schema) = super::PgSchema::create("toolgate_tenants").await else {
                    return;
                };
                super::$case(Some(schema.url.clone())).await;
                schema.drop_now().await;
            }
        }
    };
}

const T1: &str = "tenant-one-admin-token-0123";
const T2: &str = "tenant-two-admin-token-4567";

fn agent_token(sub: &str, tenant: Option<&str>) -> String {
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(SECRET.into()),
        ..Default::default()
    };
    toolgate::auth::mint_hs256(&settings, sub, tenant, &[], Duration::from_secs(3600)).unwrap()
}

async fn admin(proxy: &Proxy, token: &str, method: Method, path: &str) -> common::Answer {
    let auth = format!("Bearer {token}");
    send(
        method,
        &proxy.url(path),
        &[("authorization", auth.as_str())],
        "",
    )
    .await
}

async fn events(proxy: &Proxy, token: &str) -> Vec<Value> {
    let answer = admin(proxy, token, Method::GET, "/api/v1/audit/events?limit=1000").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.json()["events"].as_array().unwrap().clone()
}

fn tenants_of(items: &[Value]) -> Vec<Value> {
    let mut seen: Vec<Value> = items.iter().map(|e| e["tenant_id"].clone()).collect();
    seen.sort_by_key(|v| v.to_string());
    seen.dedup();
    seen
}

/// toolgate with the tenant tokens of `t1` (from a file) and `t2` (from a file ending in a newline), on
/// `database_url` (`None`: a fresh SQLite file).
async fn two_tenants(database_url: Option<String>) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (t1_file, t2_file) = (dir.path().join("t1.token"), dir.path().join("t2.token"));
    std::fs::write(&t1_file, T1).unwrap();
    std::fs::write(&t2_file, format!("{T2}\n")).unwrap();
    // The tokens are read when the configuration is loaded; the folder may go after.
    start(Options {
        extra_toml: format!(
            "[[admin.tenant_tokens]]\ntenant = \"t1\"\ntoken_file = \"{}\"\n\
             [[admin.tenant_tokens]]\ntenant = \"t2\"\ntoken_file = \"{}\"\n",
            t1_file.display(),
            t2_file.display()
        ),
        database_url,
        ..Default::default()
    })
    .await
}

/// The same agent id in two tenants, and one agent of no tenant; each echoes and escalates a write.
async fn three_agents_call(proxy: &Proxy) {
    for (sub, tenant) in [
        ("worker", Some("t1")),
        ("worker", Some("t2")),
        ("loner", None),
    ] {
        let mut agent = Agent::new(proxy, "demo", agent_token(sub, tenant));
        let echo = agent.call_stateless("echo", json!({"text": "hi"})).await;
        assert_eq!(echo.status, 200);
        let write = agent
            .call_stateless("write_file", json!({"path": "notes/a.txt", "content": "x"}))
            .await;
        assert_eq!(write.error_code(), Some(-31002), "{:?}", write.message());
    }
}

on_both!(each_tenant_admin_sees_its_own_tenant_only);
async fn each_tenant_admin_sees_its_own_tenant_only(database_url: Option<String>) {
    let proxy = two_tenants(database_url).await;
    three_agents_call(&proxy).await;

    // Events: each tenant its own; the all-tenant admin every tenant and the tenant-less agent.
    let all = events(&proxy, ADMIN).await;
    assert_eq!(tenants_of(&all), [json!("t1"), json!("t2"), json!(null)]);
    let t1 = events(&proxy, T1).await;
    assert!(!t1.is_empty());
    assert_eq!(tenants_of(&t1), [json!("t1")]);
    assert_eq!(tenants_of(&events(&proxy, T2).await), [json!("t2")]);
    // Another tenant's event by id, a filter naming another tenant's agent: nothing.
    let theirs = all.iter().find(|e| e["tenant_id"] == "t2").unwrap();
    let path = format!("/api/v1/audit/events/{}", theirs["id"].as_str().unwrap());
    assert_eq!(admin(&proxy, T1, Method::GET, &path).await.status, 404);
    assert_eq!(admin(&proxy, T2, Method::GET, &path).await.status, 200);
    let loner = admin(
        &proxy,
        T1,
        Method::GET,
        "/api/v1/audit/events?agent_id=loner",
    )
    .await;
    assert_eq!(loner.json()["events"], json!([]));

    // Export and stats count the tenant's events only.
    let export = admin(
        &proxy,
        T1,
        Method::GET,
        "/api/v1/audit/export?format=ndjson",
    )
    .await;
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = String::from_utf8_lossy(&export.body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), t1.len());
    assert_eq!(tenants_of(&lines), [json!("t1")]);
    let json_export = admin(&proxy, T1, Method::GET, "/api/v1/audit/export?format=json").await;
    assert_eq!(json_export.status, 200);
    let array = json_export.json();
    let array = array.as_array().unwrap();
    assert_eq!(array.len(), t1.len());
    assert_eq!(tenants_of(array), [json!("t1")]);
    // CSV: every t1 event is a row, and no id of another tenant's or of the tenant-less agent's events is.
    let csv = admin(&proxy, T1, Method::GET, "/api/v1/audit/export?format=csv").await;
    assert_eq!(csv.status, 200);
    let csv = String::from_utf8_lossy(&csv.body).into_owned();
    for event in &all {
        let id = event["id"].as_str().unwrap();
        assert_eq!(csv.contains(id), event["tenant_id"] == "t1", "{event}");
    }
    let manifest = admin(
        &proxy,
        T1,
        Method::GET,
        "/api/v1/audit/export?manifest=true",
    )
    .await;
    assert_eq!(manifest.status, 403);
    let stats = admin(&proxy, T1, Method::GET, "/api/v1/audit/stats")
        .await
        .json();
    let total: i64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .sum();
    assert_eq!(total, t1.len() as i64);
    let all_stats = admin(&proxy, ADMIN, Method::GET, "/api/v1/audit/stats")
        .await
        .json();
    let all_total: i64 = all_stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .sum();
    assert!(all_total > total, "{all_total} vs {total}");

    // Escalations: listed per tenant; deciding another tenant's is 404 and changes nothing.
    let list = |token: &'static str| {
        let proxy = &proxy;
        async move {
            let answer = admin(
                proxy,
                token,
                Method::GET,
                "/api/v1/escalations?status=pending",
            )
            .await;
            answer.json()["escalations"].as_array().unwrap().clone()
        }
    };
    let all_pending = list(ADMIN).await;
    assert_eq!(all_pending.len(), 3);
    let mine = list(T1).await;
    assert_eq!(tenants_of(&mine), [json!("t1")]);
    assert_eq!(mine.len(), 1);
    let other = list(T2).await[0]["id"].as_str().unwrap().to_owned();
    let stolen = admin(
        &proxy,
        T1,
        Method::POST,
        &format!("/api/v1/escalations/{other}/approve"),
    )
    .await;
    assert_eq!(stolen.status, 404);
    let denied = admin(
        &proxy,
        T1,
        Method::POST,
        &format!("/api/v1/escalations/{other}/deny"),
    )
    .await;
    assert_eq!(denied.status, 404);
    let loners = all_pending
        .iter()
        .find(|e| e["tenant_id"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for verb in ["approve", "deny"] {
        let path = format!("/api/v1/escalations/{loners}/{verb}");
        assert_eq!(admin(&proxy, T1, Method::POST, &path).await.status, 404);
    }
    assert_eq!(list(T2).await.len(), 1, "still pending");
    assert_eq!(list(ADMIN).await.len(), 3, "none decided");
    let own = mine[0]["id"].as_str().unwrap().to_owned();
    let approved = admin(
        &proxy,
        T1,
        Method::POST,
        &format!("/api/v1/escalations/{own}/approve"),
    )
    .await;
    assert_eq!(approved.status, 200, "{:?}", approved.body);
    assert_eq!(approved.json()["decided_by"], "admin:t1");

    // Agents: listed per tenant; the kill switch acts in the admin's tenant, never another named one.
    let agents = admin(&proxy, T1, Method::GET, "/api/v1/agents")
        .await
        .json();
    assert_eq!(
        tenants_of(agents["agents"].as_array().unwrap()),
        [json!("t1")]
    );
    let elsewhere = admin(
        &proxy,
        T1,
        Method::POST,
        "/api/v1/agents/worker/disable?tenant=t2",
    )
    .await;
    assert_eq!(elsewhere.status, 404);
    let loner = admin(&proxy, T1, Method::POST, "/api/v1/agents/loner/disable").await;
    assert_eq!(loner.status, 404);
    let disabled = admin(&proxy, T1, Method::POST, "/api/v1/agents/worker/disable").await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.json()["tenant_id"], "t1");
    let t1_worker = Agent::new(&proxy, "demo", agent_token("worker", Some("t1")))
        .call_stateless("echo", json!({"text": "hi"}))
        .await;
    assert_eq!(t1_worker.status, 403);
    let t2_worker = Agent::new(&proxy, "demo", agent_token("worker", Some("t2")))
        .call_stateless("echo", json!({"text": "hi"}))
        .await;
    assert_eq!(t2_worker.status, 200, "t2's worker is untouched");
    // Switched off by the all-tenant admin, t2's worker stays off whatever t1's admin enables.
    let off = admin(
        &proxy,
        ADMIN,
        Method::POST,
        "/api/v1/agents/worker/disable?tenant=t2",
    )
    .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    let revive = admin(
        &proxy,
        T1,
        Method::POST,
        "/api/v1/agents/worker/enable?tenant=t2",
    )
    .await;
    assert_eq!(revive.status, 404);
    let own = admin(&proxy, T1, Method::POST, "/api/v1/agents/worker/enable").await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    assert_eq!(own.json()["tenant_id"], "t1");
    for (tenant, status) in [("t1", 200), ("t2", 403)] {
        let answer = Agent::new(&proxy, "demo", agent_token("worker", Some(tenant)))
            .call_stateless("echo", json!({"text": "hi"}))
            .await;
        assert_eq!(answer.status, status, "{tenant}");
    }

    // Runs: each tenant lists and reads its own; another tenant's run by id is 404.
    let mut runs = Vec::new();
    for tenant in [Some("t1"), Some("t2"), None] {
        let auth = format!("Bearer {}", agent_token("runner", tenant));
        let started = send(
            Method::POST,
            &proxy.url("/api/v1/runs"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            json!({"objective": "tidy up"}).to_string(),
        )
        .await;
        assert_eq!(started.status, 200, "{:?}", started.body);
        runs.push(started.json()["run_id"].as_str().unwrap().to_owned());
    }
    let listed = admin(&proxy, T1, Method::GET, "/api/v1/runs").await.json();
    let listed = listed["runs"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["run_id"], runs[0].as_str());
    let theirs = admin(
        &proxy,
        T1,
        Method::GET,
        &format!("/api/v1/runs/{}", runs[1]),
    )
    .await;
    assert_eq!(theirs.status, 404);
    let own = admin(
        &proxy,
        T1,
        Method::GET,
        &format!("/api/v1/runs/{}", runs[0]),
    )
    .await;
    assert_eq!(own.status, 200);
    let loners = format!("/api/v1/runs/{}", runs[2]);
    assert_eq!(admin(&proxy, T1, Method::GET, &loners).await.status, 404);
    assert_eq!(admin(&proxy, ADMIN, Method::GET, &loners).await.status, 200);
    let every = admin(&proxy, ADMIN, Method::GET, "/api/v1/runs")
        .await
        .json();
    assert_eq!(every["runs"].as_array().unwrap().len(), 3);

    // Alerts: a call carrying an AWS key (a critical DLP finding) opens `dlp_critical` for its agent in each
    // tenant; each tenant lists its own, and acknowledging another tenant's is 404.
    for tenant in [Some("t1"), Some("t2"), None] {
        let mut agent = Agent::new(&proxy, "demo", agent_token("leaker", tenant));
        let key = ["AKIA", "QYLPMN5HFIQR7XYZ"].concat();
        agent.call_stateless("echo", json!({"text": key})).await;
    }
    let alerts = |token: &'static str| {
        let proxy = &proxy;
        async move {
            let answer = admin(proxy, token, Method::GET, "/api/v1/alerts").await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            answer.json()["alerts"].as_array().unwrap().clone()
        }
    };
    let all_alerts = common::eventually(Duration::from_secs(10), || async {
        let all = alerts(ADMIN).await;
        let leakers = all.iter().filter(|a| a["agent_id"] == "leaker").count();
        (leakers >= 3).then_some(all)
    })
    .await;
    let mine = alerts(T1).await;
    assert!(!mine.is_empty());
    assert_eq!(tenants_of(&mine), [json!("t1")]);
    let of = |tenant: Value| {
        let alert = all_alerts
            .iter()
            .find(|a| a["agent_id"] == "leaker" && a["tenant_id"] == tenant)
            .unwrap_or_else(|| panic!("no alert of {tenant}: {all_alerts:?}"));
        alert["id"].as_str().unwrap().to_owned()
    };
    let (theirs, loners) = (of(json!("t2")), of(Value::Null));
    for verb in ["ack", "resolve"] {
        for id in [&theirs, &loners] {
            let path = format!("/api/v1/alerts/{id}/{verb}");
            assert_eq!(
                admin(&proxy, T1, Method::POST, &path).await.status,
                404,
                "{path}"
            );
        }
    }
    let open = |alerts: &[Value], id: &str| {
        alerts
            .iter()
            .any(|a| a["id"] == id && a["status"] == "open")
    };
    let after = alerts(ADMIN).await;
    assert!(open(&after, &theirs) && open(&after, &loners), "{after:?}");
    let path = format!("/api/v1/alerts/{theirs}/resolve");
    assert_eq!(admin(&proxy, T2, Method::POST, &path).await.status, 200);

    // What belongs to no tenant: 403 with a reason, for tenant tokens only, whatever the method.
    for (method, path) in [
        (Method::GET, "/api/v1/tools"),
        (Method::POST, "/api/v1/tools/demo/echo/approve"),
        (Method::GET, "/api/v1/policy"),
        (Method::POST, "/api/v1/policy/reload"),
        (Method::GET, "/api/v1/siem"),
        (Method::POST, "/api/v1/siem/main/test"),
    ] {
        let answer = admin(&proxy, T2, method.clone(), path).await;
        assert_eq!(answer.status, 403, "{path}");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .contains("admin.token"),
            "{path}"
        );
    }
    assert_eq!(
        admin(&proxy, ADMIN, Method::GET, "/api/v1/tools")
            .await
            .status,
        200
    );
    // A near-miss of a tenant token is no token at all.
    let near = admin(
        &proxy,
        &T1[..T1.len() - 1],
        Method::GET,
        "/api/v1/audit/events",
    )
    .await;
    assert_eq!(near.status, 401);
    // Every change a tenant admin made is recorded.
    let actions: Vec<Value> = events(&proxy, ADMIN)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "admin_action")
        .collect();
    let by_tenants: Vec<&Value> = actions
        .iter()
        .filter(|e| e["requester_id"] != "admin")
        .collect();
    assert!(by_tenants.len() >= 4, "{actions:?}");
    // Each under its tenant admin's name, and about an object of that tenant; a refused change is none.
    assert!(
        by_tenants.iter().all(|e| e["tenant_id"]
            .as_str()
            .is_some_and(|t| e["requester_id"] == format!("admin:{t}").as_str())),
        "{actions:?}"
    );
    assert!(
        by_tenants
            .iter()
            .all(|e| !["policy_reload", "tool_approval", "siem_test"]
                .contains(&e["extra"]["action"].as_str().unwrap_or(""))),
        "{actions:?}"
    );
    proxy.stop().await;
}

on_both!(a_tenant_admin_verifies_every_chain_and_is_told_of_its_own_rows_only);
/// A tenant's admin verifies the chains: every row is recomputed (another tenant's tampered row breaks the log
/// for everyone), but it is told how many of its own events were verified, and where the log breaks without the
/// id or the hashes of a row that is not its own.
async fn a_tenant_admin_verifies_every_chain_and_is_told_of_its_own_rows_only(
    database_url: Option<String>,
) {
    let proxy = two_tenants(database_url.clone()).await;
    three_agents_call(&proxy).await;
    let verify = |token: &'static str, query: &'static str| {
        let proxy = &proxy;
        async move {
            let answer = admin(
                proxy,
                token,
                Method::GET,
                &format!("/api/v1/audit/verify{query}"),
            )
            .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            answer
        }
    };
    // The outcome events of the last calls may still be on their way: compare once the log is still.
    let (t1, t2, all) = common::eventually(Duration::from_secs(10), || async {
        let before = events(&proxy, ADMIN).await.len();
        let counts = (
            verify(T1, "").await.json(),
            verify(T2, "").await.json(),
            verify(ADMIN, "").await.json(),
        );
        (events(&proxy, ADMIN).await.len() == before).then_some(counts)
    })
    .await;
    let everything = events(&proxy, ADMIN).await;
    let count = |tenant: &str| {
        everything
            .iter()
            .filter(|e| e["tenant_id"] == tenant)
            .count() as u64
    };
    assert!(count("t1") >= 2 && count("t2") >= 2);
    for (answer, expected) in [
        (&t1, count("t1")),
        (&t2, count("t2")),
        (&all, everything.len() as u64),
    ] {
        assert_eq!(answer["chain_intact"], true, "{answer}");
        assert_eq!(answer["first_bad_row"], Value::Null, "{answer}");
        assert_eq!(answer["events_verified"], expected, "{answer}");
        assert!(answer["duration_ms"].is_u64(), "{answer}");
    }
    // Naming another tenant in the query changes nothing: the token decides.
    assert_eq!(
        verify(T1, "?tenant=t2").await.json()["events_verified"],
        t1["events_verified"]
    );

    // An attacker with SQL access rewrites one of t2's rows.
    let victim = everything
        .iter()
        .find(|e| e["tenant_id"] == "t2" && e["event_type"] == "tool_call")
        .unwrap();
    let victim_id = victim["id"].as_str().unwrap();
    let tamper = format!("UPDATE audit_events SET target = 'tampered' WHERE id = '{victim_id}'");
    match &database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(&tamper).execute(&pool).await.unwrap();
            pool.close().await;
        }
        None => {
            let db = format!("sqlite://{}", proxy.dir.path().join("audit.db").display());
            let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
            sqlx::query(&tamper).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let whole = verify(ADMIN, "").await.json();
    assert_eq!(whole["chain_intact"], false, "{whole}");
    assert_eq!(whole["first_bad_row"]["id"], victim_id, "{whole}");
    // t2 owns the row: it is told which and why.
    assert_eq!(
        verify(T2, "").await.json()["first_bad_row"],
        whole["first_bad_row"]
    );
    // t1 is told that the log is broken and where, and nothing of the row.
    let masked = verify(T1, "").await;
    let seen = masked.json();
    assert_eq!(seen["chain_intact"], false, "{seen}");
    assert_eq!(seen["events_verified"], t1["events_verified"], "{seen}");
    let bad = &seen["first_bad_row"];
    assert_eq!(
        bad["chain_id"], whole["first_bad_row"]["chain_id"],
        "{seen}"
    );
    assert_eq!(bad["seq"], whole["first_bad_row"]["seq"], "{seen}");
    assert_eq!(bad["id"], "", "{seen}");
    assert!(
        bad["reason"].as_str().unwrap().contains("another tenant"),
        "{seen}"
    );
    let body = String::from_utf8_lossy(&masked.body);
    for secret in [
        victim_id,
        victim["event_hash"].as_str().unwrap(),
        "tampered",
    ] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
    proxy.stop().await;
}

/// The live feed of a tenant's admin carries its tenant's events alone, whatever filter it asks for;
/// `admin.token`'s feed carries every tenant's and the tenant-less agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admins_live_feed_carries_its_tenant_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t1_file = dir.path().join("t1.token");
    std::fs::write(&t1_file, T1).unwrap();
    let proxy = start(Options {
        extra_toml: format!(
            "[[admin.tenant_tokens]]\ntenant = \"t1\"\ntoken_file = \"{}\"\n",
            t1_file.display()
        ),
        ..Default::default()
    })
    .await;
    let agents = [
        ("worker", Some("t1")),
        ("worker", Some("t2")),
        ("loner", None),
    ];
    let call = |sub: &'static str, tenant: Option<&'static str>| {
        let mut agent = Agent::new(&proxy, "demo", agent_token(sub, tenant));
        async move {
            let echo = agent.call_stateless("echo", json!({"text": "hi"})).await;
            assert_eq!(echo.status, 200);
        }
    };
    // Asking for the tenant-less agent, or for every agent, changes nothing for a tenant's admin.
    let mut mine = sse::Feed::served(
        proxy.addr,
        sse::Ask {
            query: "event_type=tool_call&agent_id=loner,worker",
            token: Some(T1),
            ..Default::default()
        },
    )
    .await;
    let mut everything = sse::Feed::served(
        proxy.addr,
        sse::Ask {
            query: "event_type=tool_call",
            ..Default::default()
        },
    )
    .await;
    for _ in 0..2 {
        for (sub, tenant) in agents {
            call(sub, tenant).await;
        }
    }
    let all = everything.take(6).await;
    assert_eq!(
        tenants_of(&all.iter().map(|e| e.data.clone()).collect::<Vec<_>>()),
        [json!("t1"), json!("t2"), json!(null)]
    );
    // The other tenants' events came between t1's; had any passed, they would be among these.
    let first = mine.take(2).await;
    call("worker", Some("t1")).await;
    let last = mine.take(1).await;
    for event in first.iter().chain(&last) {
        assert_eq!(event.data["tenant_id"], "t1", "{:?}", event.data);
        assert_eq!(event.data["agent_id"], "worker");
    }
    assert!(last[0].seq() > first[1].seq());
    proxy.stop().await;
}
