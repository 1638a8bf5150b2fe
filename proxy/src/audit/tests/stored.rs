//! The writer stores only redacted, capped events ([`super::super::StoredDraft`]): a secret in any field never
//! reaches a row, a 4 MiB field becomes a row of a few KiB, and the chain over what is stored verifies.

use super::*;

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

on_both!(a_huge_tool_name_is_stored_capped_and_verifies);
async fn a_huge_tool_name_is_stored_capped_and_verifies(db: TestDb) {
    let log = open(&db, "huge").await;
    let name = "n".repeat(4 << 20);
    log.append(EventDraft {
        tool_name: Some(name.clone()),
        policy_reason: Some(format!("refused {name}")),
        ..draft("a1", "x", "deny")
    })
    .await
    .unwrap();
    log.append(draft("a1", "echo", "allow")).await.unwrap();

    let events = all_events(log.store()).await;
    let row = serde_json::to_string(&events[0]).unwrap();
    assert!(row.len() < 4 * 1024, "a {}-byte row", row.len());
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(name.as_bytes()));
    assert!(events[0]
        .tool_name
        .as_deref()
        .unwrap()
        .ends_with(&format!("…[sha256:{digest} len:4194304]")));
    let verified = log.store().verify(None, None).await.unwrap();
    assert!(verified.chain_intact, "{verified:?}");
    assert_eq!(verified.events_verified, 2);
    log.close().await;
}

on_both!(no_field_stores_a_secret);
async fn no_field_stores_a_secret(db: TestDb) {
    let log = open(&db, "secret").await;
    log.enqueue(EventDraft {
        agent_id: Some(format!("sub {AWS}")),
        tool_name: Some(AWS.into()),
        target: Some(format!("/tmp/{AWS}")),
        policy_reason: Some(format!("refused /tmp/{AWS}")),
        error: Some(format!("upstream JSON-RPC error \"{AWS}\"")),
        extra: json!({ "protocol_version": format!("2025-11-25 {AWS}") }),
        ..draft("a1", "x", "deny")
    })
    .await
    .unwrap();
    log.close().await;
    let log = open(&db, "secret").await;
    let events = all_events(log.store()).await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(AWS), "{text}");
    assert_eq!(
        events[0].target.as_deref(),
        Some("/tmp/[REDACTED:aws_access_key]")
    );
    assert!(log.store().verify(None, None).await.unwrap().chain_intact);
    log.close().await;
}
