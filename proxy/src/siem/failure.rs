//! What a failing sink raises: each failed attempt is counted (`toolgate_siem_delivery_failures_total{sink,
//! reason}`) and shown by the API; a sink that keeps failing (`failing_after` attempts in a row) records a
//! `siem_delivery` audit event `failed`, logs it and sets `toolgate_siem_sink_failing{sink}`, and its next
//! acknowledged batch records `recovered`. [`raise_delivery_failure`] is the one place where the
//! `siem_delivery_failure` alert is raised. Retention that would prune events a sink still owes raises it too
//! ([`DeliveryHold`]).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use super::attempt::Why;
use super::Sink;
use crate::audit::{AuditError, AuditLog, RetentionHold};
use crate::telemetry::SiemMetrics;

/// One sink's run of failed attempts.
pub(super) struct Failures {
    sink: Arc<Sink>,
    audit: AuditLog,
    metrics: SiemMetrics,
    consecutive: u32,
    /// A `failed` event was recorded and no `recovered` since.
    raised: bool,
}

impl Failures {
    pub(super) fn new(sink: Arc<Sink>, audit: AuditLog, metrics: SiemMetrics) -> Failures {
        Failures {
            sink,
            audit,
            metrics,
            consecutive: 0,
            raised: false,
        }
    }

    pub(super) fn failing(&self) -> bool {
        self.raised
    }

    /// Counts a failed attempt; at `failing_after` in a row, raises the failure (once per run of failures).
    pub(super) async fn attempt_failed(&mut self, why: &Why, status: Option<u16>) {
        self.consecutive += 1;
        let name = self.sink.name();
        self.metrics.failures(name, why.reason).inc();
        {
            let mut health = self.sink.health();
            health.consecutive_failures = self.consecutive;
            health.last_error = Some(json!({
                "reason": why.reason,
                "detail": why.detail,
                "status": status,
                "at": crate::telemetry::format_rfc3339(time::OffsetDateTime::now_utc()),
            }));
        }
        tracing::warn!(sink = %name, reason = why.reason, detail = %why.detail, attempts = self.consecutive, "SIEM delivery attempt failed");
        if !self.raised && self.consecutive >= self.sink.settings.failing_after {
            self.raised = true;
            self.sink.health().state = "failing";
            let failure = DeliveryFailure {
                sinks: vec![name.to_owned()],
                reason: why.reason,
                detail: why.detail.clone(),
                extra: json!({
                    "kind": self.sink.settings.kind.as_str(),
                    "failed_attempts": self.consecutive,
                    "http_status": status,
                }),
            };
            raise_delivery_failure(&self.audit, &self.metrics, failure).await;
        }
    }

    /// A batch was acknowledged: the run of failures ends, and a raised failure is recorded as recovered.
    pub(super) async fn delivered(&mut self) {
        let attempts = std::mem::take(&mut self.consecutive);
        self.sink.health().consecutive_failures = 0;
        if std::mem::take(&mut self.raised) {
            let name = self.sink.name();
            self.metrics.failing(name).set(0);
            tracing::info!(sink = %name, failed_attempts = attempts, "SIEM delivery recovered");
            let extra = json!({
                "status": "recovered",
                "sink": name,
                "sinks": [name],
                "kind": self.sink.settings.kind.as_str(),
                "failed_attempts": attempts,
            });
            append(&self.audit, extra, None).await;
        }
    }
}

/// Why delivery is failing, for [`raise_delivery_failure`].
pub(super) struct DeliveryFailure {
    /// The sinks concerned.
    pub sinks: Vec<String>,
    /// A failure reason of [`super::attempt::REASONS`], or `retention_waiting`.
    pub reason: &'static str,
    pub detail: String,
    /// More of what happened, into the event's `extra`.
    pub extra: serde_json::Value,
}

/// Delivery is failing (a sink keeps failing, or retention waits for undelivered events): records the
/// `siem_delivery` event `failed`, logs it, and marks the sinks failing in `toolgate_siem_sink_failing`. The
/// `siem_delivery_failure` alert of the alerts API is raised here.
pub(super) async fn raise_delivery_failure(
    audit: &AuditLog,
    metrics: &SiemMetrics,
    failure: DeliveryFailure,
) {
    for sink in &failure.sinks {
        metrics.failing(sink).set(1);
    }
    tracing::error!(sinks = ?failure.sinks, reason = failure.reason, detail = %failure.detail, "SIEM delivery failing");
    let mut extra = failure.extra;
    extra["status"] = json!("failed");
    extra["reason"] = json!(failure.reason);
    extra["sinks"] = json!(failure.sinks);
    if let [sink] = failure.sinks.as_slice() {
        extra["sink"] = json!(sink);
    }
    append(audit, extra, Some(failure.detail)).await;
}

/// Appends a `siem_delivery` event (queued: the delivery task does not wait for the commit).
async fn append(audit: &AuditLog, extra: serde_json::Value, error: Option<String>) {
    let draft = EventDraft {
        event_type: "siem_delivery".into(),
        error,
        extra,
        ..EventDraft::default()
    };
    if let Err(e) = audit.enqueue(draft).await {
        tracing::error!(error = %e, "audit write failed");
    }
}

/// Keeps retention from pruning what a sink has not delivered: the ceiling of a chain is the slowest sink's
/// cursor in it.
pub(super) struct DeliveryHold {
    sinks: Vec<String>,
    audit: AuditLog,
    metrics: SiemMetrics,
}

impl DeliveryHold {
    pub(super) fn new(sinks: Vec<String>, audit: AuditLog, metrics: SiemMetrics) -> DeliveryHold {
        DeliveryHold {
            sinks,
            audit,
            metrics,
        }
    }
}

impl RetentionHold for DeliveryHold {
    fn ceiling<'a>(&'a self, chain: &'a str) -> BoxFuture<'a, Result<i64, AuditError>> {
        Box::pin(async move { self.audit.store().siem_floor(chain, &self.sinks).await })
    }

    fn held<'a>(&'a self, chain: &'a str, wanted: i64, ceiling: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut slowest = Vec::new();
            for sink in &self.sinks {
                let delivered = self
                    .audit
                    .store()
                    .siem_cursors(sink)
                    .await
                    .ok()
                    .and_then(|c| c.into_iter().find(|c| c.chain_id == chain))
                    .map_or(0, |c| c.delivered_seq);
                if delivered <= ceiling {
                    slowest.push(sink.clone());
                }
            }
            let failure = DeliveryFailure {
                sinks: slowest,
                reason: "retention_waiting",
                detail: format!(
                    "retention would prune chain {chain} through seq {wanted}, but the slowest sink delivered only through seq {ceiling}"
                ),
                extra: json!({
                    "chain_id": chain,
                    "retention_wanted_seq": wanted,
                    "delivered_seq": ceiling,
                }),
            };
            raise_delivery_failure(&self.audit, &self.metrics, failure).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::CursorMove;
    use crate::audit::test_db::{on_both, run, Kind, TestDb};
    use crate::audit::{AuditMetrics, AuditSettings};

    async fn retention_waits_for_the_slowest_sink_and_says_so(db: TestDb) {
        let settings = AuditSettings {
            database_url: db.url.clone(),
            chain_id: Some("ret".into()),
            signing_key_file: Some(db.dir.path().join("key")),
            retention_days: 1,
            ..AuditSettings::default()
        };
        let log = AuditLog::open(&settings, AuditMetrics::unregistered())
            .await
            .unwrap();
        for day in 1..=4 {
            log.append(EventDraft {
                event_type: "tool_call".into(),
                timestamp: format!("2020-01-0{day}T12:00:00.000000Z"),
                ..EventDraft::default()
            })
            .await
            .unwrap();
        }
        log.append(EventDraft {
            event_type: "tool_call".into(),
            ..EventDraft::default()
        })
        .await
        .unwrap();
        let metrics = SiemMetrics::unregistered();
        log.hold_retention(Arc::new(DeliveryHold::new(
            vec!["fast".into(), "slow".into()],
            log.clone(),
            metrics.clone(),
        )));
        let store = log.store().clone();
        for (sink, through) in [("fast", 5), ("slow", 2)] {
            assert!(store
                .siem_take_lease(sink, "ret", 0, i64::MAX / 2)
                .await
                .unwrap());
            let m = CursorMove {
                sink,
                chain: "ret",
                from: 0,
                to: through,
                sent: through,
            };
            assert!(store.siem_advance(&m, "ret").await.unwrap());
        }
        // Without the sinks, retention would prune through seq 4; it stops at the slow sink's seq 2.
        assert_eq!(log.prune().await.unwrap(), Some(2));
        assert_eq!(metrics.failing("slow").get(), 1);
        assert_eq!(metrics.failing("fast").get(), 0);
        let events = store
            .chain_events("ret", 0, i64::MAX, &Default::default(), 100)
            .await
            .unwrap();
        assert_eq!(
            events.first().map(|e| e.seq),
            Some(3),
            "seq 3 and 4 are kept"
        );
        let filter = crate::audit::store::FeedFilter {
            event_types: vec!["siem_delivery".into()],
            ..Default::default()
        };
        let mut held = None;
        for _ in 0..200 {
            held = store
                .chain_events("ret", 0, i64::MAX, &filter, 10)
                .await
                .unwrap()
                .pop();
            if held.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let held = held.expect("a siem_delivery event is recorded");
        assert_eq!(held.extra["status"], "failed");
        assert_eq!(held.extra["reason"], "retention_waiting");
        assert_eq!(held.extra["sinks"], json!(["slow"]));
        assert_eq!(held.extra["retention_wanted_seq"], 4);
        // The slow sink catches up: retention goes on.
        let m = CursorMove {
            sink: "slow",
            chain: "ret",
            from: 2,
            to: 5,
            sent: 3,
        };
        assert!(store.siem_advance(&m, "ret").await.unwrap());
        assert_eq!(log.prune().await.unwrap(), Some(4));
        log.close().await;
    }
    on_both!(retention_waits_for_the_slowest_sink_and_says_so);
}
