//! Outcome events held for the next write-ahead commit (`audit.hold_outcomes_ms`): they share that commit, stay in
//! chain order, are committed alone once the hold ends, and are never lost at close.

use std::time::Duration;

use super::*;

fn holding(db: &TestDb, chain_id: &str, hold_ms: u64) -> AuditSettings {
    AuditSettings {
        hold_outcomes_ms: hold_ms,
        ..settings(db, chain_id)
    }
}

async fn stored(log: &AuditLog) -> Vec<AuditEvent> {
    all_events(log.store()).await
}

on_both!(an_outcome_rides_with_the_next_append);
async fn an_outcome_rides_with_the_next_append(db: TestDb) {
    let metrics = AuditMetrics::unregistered();
    // A hold far longer than the test: only the next append can commit the held event.
    let log = AuditLog::open(&holding(&db, "ride", 60_000), metrics.clone())
        .await
        .unwrap();
    log.enqueue(draft("a1", "outcome", "allow")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metrics.write_duration.get_sample_count(),
        0,
        "an event nobody waits for is held"
    );
    assert!(stored(&log).await.is_empty());

    let acked = log.append(draft("a2", "decision", "allow")).await.unwrap();
    assert_eq!(
        metrics.write_duration.get_sample_count(),
        1,
        "one commit carries the held event and the waited one"
    );
    // Chain order is queue order: the held event first.
    assert_eq!(acked.seq(), 2);
    let events = stored(&log).await;
    let tools: Vec<_> = events.iter().map(|e| e.tool_name.clone()).collect();
    assert_eq!(
        tools,
        vec![Some("outcome".to_owned()), Some("decision".to_owned())]
    );
    assert!(verify(&events).chain_intact);
    log.close().await;
}

on_both!(a_lone_outcome_is_committed_when_the_hold_ends);
async fn a_lone_outcome_is_committed_when_the_hold_ends(db: TestDb) {
    let metrics = AuditMetrics::unregistered();
    let log = AuditLog::open(&holding(&db, "lone", 20), metrics.clone())
        .await
        .unwrap();
    log.enqueue(draft("a1", "outcome", "allow")).await.unwrap();
    // The row is visible as soon as the commit lands; the write duration is observed just after it returns.
    until(
        "a held event is committed without any other traffic",
        || async {
            !stored(&log).await.is_empty() && metrics.write_duration.get_sample_count() > 0
        },
    )
    .await;
    assert_eq!(metrics.write_duration.get_sample_count(), 1);
    assert_eq!(stored(&log).await.len(), 1);
    log.close().await;
}

on_both!(close_commits_held_outcomes);
async fn close_commits_held_outcomes(db: TestDb) {
    let log = AuditLog::open(&holding(&db, "close", 60_000), AuditMetrics::unregistered())
        .await
        .unwrap();
    for i in 0..3 {
        log.enqueue(draft("a1", &format!("outcome-{i}"), "allow"))
            .await
            .unwrap();
    }
    log.close().await;
    let events = stored(&log).await;
    assert_eq!(events.len(), 3, "close commits what it held");
    assert!(verify(&events).chain_intact);
}

on_both!(without_a_hold_each_batch_commits_at_once);
async fn without_a_hold_each_batch_commits_at_once(db: TestDb) {
    let metrics = AuditMetrics::unregistered();
    let log = AuditLog::open(&holding(&db, "nohold", 0), metrics.clone())
        .await
        .unwrap();
    log.enqueue(draft("a1", "outcome", "allow")).await.unwrap();
    until("the batch is committed at once", || async {
        metrics.write_duration.get_sample_count() > 0
    })
    .await;
    assert_eq!(stored(&log).await.len(), 1);
    log.close().await;
}

on_both!(the_store_gives_back_its_statements_once_commits_stop);
/// Once the commits stop, the store gives back what the connections kept (`AuditStore::rest`): their prepared
/// statements, among them the batch inserts of hundreds of rows; the next commit prepares its statement again.
async fn the_store_gives_back_its_statements_once_commits_stop(db: TestDb) {
    let log = open(&db, "rest").await;
    append_all(&log, (0..3).map(|_| draft("a1", "echo", "allow"))).await;
    until("statements still kept", || async {
        log.store().kept_statements().await == 0
    })
    .await;
    append_all(&log, (0..2).map(|_| draft("a1", "echo", "allow"))).await;
    let events = stored(&log).await;
    assert_eq!(events.len(), 5);
    assert!(verify(&events).chain_intact);
    log.close().await;
}
