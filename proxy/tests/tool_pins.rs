//! The tool definition admin API on the real server: listing what `tools/list` answers pinned, approving a
//! changed or new definition (200, 404, 409), the audit events of an approval and the gauge. Pins are made by
//! calling `app.tools.observe` directly, as the proxy's list handling does.

mod common;

use common::{send, start, Options, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::Value;
use toolgate_engine::canonical::sha256_hex;
use toolgate_engine::input::DefinitionStatus;

fn hash(n: u8) -> String {
    sha256_hex(&[n])
}

async fn admin(proxy: &common::Proxy, method: Method, path: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(method, &proxy.url(path), &[("authorization", &auth)], "").await
}

/// The committed audit events of `event_type`, oldest first.
async fn events(proxy: &common::Proxy, event_type: &str) -> Vec<Value> {
    let mut events: Vec<Value> = common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == event_type)
        .collect();
    events.reverse();
    events
}

/// The value of `toolgate_tool_definitions{status}` in a scrape of `/metrics`.
async fn gauge(proxy: &common::Proxy, status: &str) -> Option<i64> {
    let scrape = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let prefix = format!("toolgate_tool_definitions{{status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_is_listed_and_approved_once() {
    let proxy = start(Options::default()).await;
    let tools = &proxy.app.tools;
    let poisoning = vec!["hidden_instruction".to_owned()];
    tools
        .observe("demo", "read_file", &hash(1), &[])
        .await
        .unwrap();
    tools
        .observe("demo", "list_dir", &hash(9), &[])
        .await
        .unwrap();
    let (info, _) = tools
        .observe("demo", "read_file", &hash(2), &poisoning)
        .await
        .unwrap();
    assert_eq!(info.status, DefinitionStatus::Changed);
    assert_eq!(gauge(&proxy, "changed").await, Some(1));
    assert_eq!(gauge(&proxy, "pinned").await, Some(1));

    let unauthorized = send(Method::GET, &proxy.url("/api/v1/tools"), &[], "").await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);

    let all = admin(&proxy, Method::GET, "/api/v1/tools").await;
    assert_eq!(all.status, StatusCode::OK);
    let all = all.json();
    assert_eq!(all["next_cursor"], Value::Null);
    let names: Vec<&str> = all["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read_file", "list_dir"], "changed first");

    let changed = admin(&proxy, Method::GET, "/api/v1/tools?status=changed").await;
    assert_eq!(changed.status, StatusCode::OK);
    let listed = changed.json()["tools"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    let tool = &listed[0];
    assert_eq!(tool["upstream"], "demo");
    assert_eq!(tool["name"], "read_file");
    assert_eq!(tool["status"], "changed");
    assert_eq!(tool["pinned_hash"], hash(1));
    assert_eq!(tool["current_hash"], hash(2));
    assert_eq!(tool["poisoning"], serde_json::json!(["hidden_instruction"]));
    assert_eq!(tool["approved_at"], Value::Null);
    let first_seen = tool["first_seen"].as_str().unwrap();
    assert_eq!(
        first_seen.len(),
        "2026-11-22T20:15:00.123456Z".len(),
        "{first_seen}"
    );
    assert!(tool["last_seen"].as_str().unwrap() >= first_seen);

    let bad = admin(&proxy, Method::GET, "/api/v1/tools?status=bogus").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let approved = admin(&proxy, Method::POST, "/api/v1/tools/demo/read_file/approve").await;
    assert_eq!(approved.status, StatusCode::OK);
    let approved = approved.json();
    assert_eq!(approved["status"], "pinned");
    assert_eq!(approved["pinned_hash"], hash(2));
    assert!(approved["approved_at"].is_string());
    assert_eq!(
        tools.info("demo", "read_file").status,
        DefinitionStatus::Pinned
    );
    assert_eq!(gauge(&proxy, "changed").await, Some(0));
    assert_eq!(gauge(&proxy, "pinned").await, Some(2));

    let again = admin(&proxy, Method::POST, "/api/v1/tools/demo/read_file/approve").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let unknown = admin(
        &proxy,
        Method::POST,
        "/api/v1/tools/demo/never_listed/approve",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let none_left = admin(&proxy, Method::GET, "/api/v1/tools?status=changed").await;
    assert_eq!(none_left.json()["tools"], serde_json::json!([]));

    // One approval, one pair of events: the refused ones record nothing.
    let actions = events(&proxy, "admin_action").await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["requester_id"], "admin");
    assert_eq!(actions[0]["extra"]["action"], "tool_approval");
    assert_eq!(actions[0]["mcp_server"], "demo");
    assert_eq!(actions[0]["tool_name"], "read_file");
    let definitions = events(&proxy, "tool_definition").await;
    assert_eq!(definitions.len(), 1, "{definitions:?}");
    assert_eq!(definitions[0]["extra"]["status"], "approved");
    assert_eq!(definitions[0]["extra"]["hash"], hash(2));
    assert_eq!(definitions[0]["mcp_server"], "demo");
    assert_eq!(definitions[0]["tool_name"], "read_file");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_pinning_holds_new_definitions_until_approved() {
    let proxy = start(Options {
        extra_toml: "[tools]\npinning = \"approve\"\n".into(),
        ..Default::default()
    })
    .await;
    // A name that needs percent-encoding in the path: a space, a slash and a plus.
    let name = "a b/c+d";
    let (info, _) = proxy
        .app
        .tools
        .observe("demo", name, &hash(3), &[])
        .await
        .unwrap();
    assert_eq!(info.status, DefinitionStatus::New);
    assert_eq!(gauge(&proxy, "new").await, Some(1));
    let new = admin(&proxy, Method::GET, "/api/v1/tools?status=new").await;
    assert_eq!(new.json()["tools"][0]["name"], name);
    assert_eq!(new.json()["tools"][0]["pinned_hash"], Value::Null);

    let path = "/api/v1/tools/demo/a%20b%2Fc%2Bd/approve";
    let approved = admin(&proxy, Method::POST, path).await;
    assert_eq!(approved.status, StatusCode::OK, "{:?}", approved.body);
    assert_eq!(approved.json()["name"], name);
    assert_eq!(approved.json()["pinned_hash"], hash(3));
    assert_eq!(gauge(&proxy, "new").await, Some(0));
    assert_eq!(gauge(&proxy, "pinned").await, Some(1));
    assert_eq!(
        admin(&proxy, Method::POST, path).await.status,
        StatusCode::CONFLICT
    );
    let definitions = events(&proxy, "tool_definition").await;
    assert_eq!(definitions.len(), 1, "{definitions:?}");
    assert_eq!(definitions[0]["tool_name"], name);
    proxy.stop().await;
}
