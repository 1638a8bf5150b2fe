//! Escalated calls: recorded pending with an id, held for a reviewer, released by the admin API.

mod common;

use std::time::Duration;

use common::{send, start, token, Agent, Options, ADMIN};
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
    let auth = format!("Bearer {ADMIN}");
    send(
        Method::POST,
        &proxy.url(&format!("/api/v1/escalations/{id}/{verb}")),
        &[("authorization", &auth)],
        "",
    )
    .await
    .status
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
