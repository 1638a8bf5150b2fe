//! The alerts store and keeper logic against real databases (SQLite always, PostgreSQL when configured).

use super::*;
use crate::audit::test_db::{on_both, run, Kind, TestDb};
use crate::audit::{AuditMetrics, AuditSettings, EventFilter};
use model::Kind as AlertKind;

async fn instance(
    db: &TestDb,
    chain: &str,
) -> (Alerts, AuditLog, prometheus::IntGaugeVec, IntCounter) {
    let settings = AuditSettings {
        database_url: db.url.clone(),
        chain_id: Some(chain.to_owned()),
        signing_key_file: Some(db.dir.path().join(format!("{chain}.key"))),
        ..AuditSettings::default()
    };
    let audit = AuditLog::open(&settings, AuditMetrics::unregistered())
        .await
        .unwrap();
    let metrics = AlertMetrics::unregistered();
    let gauge = metrics.open.clone();
    let failures = IntCounter::new("f", "f").unwrap();
    let alerts = Alerts::load(db.store().await, audit.clone(), metrics, failures.clone())
        .await
        .unwrap();
    (alerts, audit, gauge, failures)
}

fn key(agent: &str) -> StoredKey {
    StoredKey::of(Some("t1"), agent)
}

async fn audit_write_failures_open_an_alert_kept_out_of_the_log(db: TestDb) {
    let (alerts, audit, gauge, failures) = instance(&db, "a1").await;
    alerts.watch_audit_writer();
    alerts.store_raised().await.unwrap();
    assert!(alerts
        .list(&ListQuery::default())
        .await
        .unwrap()
        .0
        .is_empty());
    failures.inc_by(3);
    alerts.watch_audit_writer();
    // Counted before it is stored: the gauge does not wait for the database.
    assert_eq!(gauge.with_label_values(&["critical"]).get(), 1);
    alerts.store_raised().await.unwrap();
    let (listed, _) = alerts.list(&ListQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, "audit_write_failure");
    assert_eq!(listed[0].severity, "critical");
    assert_eq!(listed[0].agent_id, None);
    assert!(
        listed[0].detail.starts_with("3 audit event(s)"),
        "{}",
        listed[0].detail
    );
    assert_eq!(gauge.with_label_values(&["critical"]).get(), 1);
    let events = audit.store().query(&EventFilter::default()).await.unwrap();
    assert!(events.iter().all(|e| e.event_type != "alert"));
}
on_both!(audit_write_failures_open_an_alert_kept_out_of_the_log);

async fn the_listing_filters_and_pages(db: TestDb) {
    let (alerts, _audit, _, _) = instance(&db, "a2").await;
    for agent in ["a", "b", "c"] {
        alerts.raise(
            AlertKind::NewTool,
            Severity::Low,
            Some(&key(agent)),
            "first call",
        );
        alerts.raise(
            AlertKind::DenySpike,
            Severity::High,
            Some(&key(agent)),
            "denied",
        );
    }
    alerts.store_raised().await.unwrap();
    let page = |kind, agent: Option<&str>, cursor, limit| ListQuery {
        status: Some(Status::Open),
        kind,
        agent_id: agent.map(str::to_owned),
        tenant_id: None,
        cursor,
        limit,
    };
    let (all, next) = alerts.list(&page(None, None, None, None)).await.unwrap();
    assert_eq!((all.len(), next), (6, None));
    let (spikes, _) = alerts
        .list(&page(Some(AlertKind::DenySpike), None, None, None))
        .await
        .unwrap();
    assert_eq!(spikes.len(), 3);
    assert!(spikes.iter().all(|a| a.kind == "deny_spike"));
    let (of_b, _) = alerts
        .list(&page(None, Some("b"), None, None))
        .await
        .unwrap();
    assert_eq!(of_b.len(), 2);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (rows, next) = alerts
            .list(&page(None, None, cursor, Some(4)))
            .await
            .unwrap();
        seen.extend(rows.into_iter().map(|a| a.id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut ids: Vec<_> = all.iter().map(|a| a.id.clone()).collect();
    assert_eq!(seen, ids);
    ids.dedup();
    assert_eq!(ids.len(), 6);
    assert!(matches!(
        alerts
            .list(&page(None, None, Some("garbage".into()), None))
            .await,
        Err(AlertError::BadCursor)
    ));
    let (resolved, _) = alerts
        .list(&ListQuery {
            status: Some(Status::Resolved),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(resolved.is_empty());
}
on_both!(the_listing_filters_and_pages);

async fn a_failing_siem_sink_opens_siem_delivery_failure(db: TestDb) {
    let (alerts, audit, gauge, _) = instance(&db, "a3").await;
    let alerts = Arc::new(alerts);
    // Kept for the test: the keeper ends with its bus.
    let bus = crate::shared_state::Bus::new();
    start(&alerts, &bus);
    let event = |status: &str| EventDraft {
        event_type: "siem_delivery".into(),
        dlp_findings: json!([]),
        extra: json!({ "status": status, "reason": "http_status", "sinks": ["splunk"] }),
        ..EventDraft::default()
    };
    audit.append(event("recovered")).await.unwrap();
    audit.append(event("failed")).await.unwrap();
    // The watcher raises it as the event is committed; the keeper stores it within a tick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let listed = loop {
        let (listed, _) = alerts.list(&ListQuery::default()).await.unwrap();
        if !listed.is_empty() || std::time::Instant::now() > deadline {
            break listed;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].kind, "siem_delivery_failure");
    assert_eq!(listed[0].severity, "high");
    assert_eq!(listed[0].agent_id, None);
    assert!(listed[0].detail.contains("splunk"), "{}", listed[0].detail);
    assert_eq!(gauge.with_label_values(&["high"]).get(), 1);
}
on_both!(a_failing_siem_sink_opens_siem_delivery_failure);
