//! The SIEM delivery metrics: events delivered, failed attempts by reason, lag in events, and which sinks are
//! failing. The `sink` label is a configured sink name (validated `[A-Za-z0-9._-]`, at most 64 bytes), never
//! anything an agent chose.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every reason a failed attempt is counted under (`crate::siem::attempt::Why::reason`).
pub const FAILURE_REASONS: [&str; 10] = [
    "timeout",
    "refused",
    "connect",
    "io",
    "status_3xx",
    "status_4xx",
    "status_429",
    "status_5xx",
    "bad_response",
    "items",
];

/// Handles the delivery tasks update. Cheap to clone.
#[derive(Clone)]
pub struct SiemMetrics {
    /// `toolgate_siem_events_delivered_total{sink}`
    delivered: IntCounterVec,
    /// `toolgate_siem_delivery_failures_total{sink, reason}`
    failures: IntCounterVec,
    /// `toolgate_siem_lag_events{sink}`
    lag: IntGaugeVec,
    /// `toolgate_siem_sink_failing{sink}`: 1 while a sink is reported failing.
    failing: IntGaugeVec,
}

impl SiemMetrics {
    pub(super) fn new(registry: &Registry) -> SiemMetrics {
        let m = SiemMetrics::unregistered();
        for c in [
            Box::new(m.delivered.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.failures.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.failing.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Handles registered nowhere, for tests.
    pub fn unregistered() -> SiemMetrics {
        SiemMetrics {
            delivered: IntCounterVec::new(
                Opts::new(
                    "toolgate_siem_events_delivered_total",
                    "Audit events a SIEM sink acknowledged, by sink.",
                ),
                &["sink"],
            )
            .expect("valid metric"),
            failures: IntCounterVec::new(
                Opts::new(
                    "toolgate_siem_delivery_failures_total",
                    "Failed SIEM delivery attempts, by sink and reason (timeout, refused, connect, io, status_3xx, status_4xx, status_429, status_5xx, bad_response, items).",
                ),
                &["sink", "reason"],
            )
            .expect("valid metric"),
            lag: IntGaugeVec::new(
                Opts::new(
                    "toolgate_siem_lag_events",
                    "Audit events stored past a SIEM sink's cursor (all chains), by sink.",
                ),
                &["sink"],
            )
            .expect("valid metric"),
            failing: IntGaugeVec::new(
                Opts::new(
                    "toolgate_siem_sink_failing",
                    "1 while a SIEM sink is reported failing (siem_delivery failed without recovered since).",
                ),
                &["sink"],
            )
            .expect("valid metric"),
        }
    }

    /// Makes every series of `sink` exist (at 0) from the first scrape.
    pub fn register_sink(&self, sink: &str) {
        self.delivered(sink);
        self.lag(sink);
        self.failing(sink);
        for reason in FAILURE_REASONS {
            self.failures(sink, reason);
        }
    }

    pub fn delivered(&self, sink: &str) -> IntCounter {
        self.delivered.with_label_values(&[sink])
    }
    pub fn failures(&self, sink: &str, reason: &str) -> IntCounter {
        self.failures.with_label_values(&[sink, reason])
    }
    pub fn lag(&self, sink: &str) -> IntGauge {
        self.lag.with_label_values(&[sink])
    }
    pub fn failing(&self, sink: &str) -> IntGauge {
        self.failing.with_label_values(&[sink])
    }
}
