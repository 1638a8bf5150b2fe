//! The alert metrics: `toolgate_alerts_open_total{severity}` (the contract's gauge) and
//! `toolgate_alerts_opened_total{kind,severity}`, the alerts opened by kind that the dashboard's behaviour row
//! shows. Both are set by `crate::alerts`, which pre-registers every kind and severity at 0 so a dashboard sees
//! them from the first scrape.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct AlertMetrics {
    /// Open alerts in the database (every instance reports the same), plus those raised here and not yet stored.
    pub open: IntGaugeVec,
    /// Alerts this instance stored as opened: counted once, by the instance whose insert opened the alert, so
    /// the sum over replicas counts each alert once.
    pub opened: IntCounterVec,
}

impl AlertMetrics {
    pub(super) fn new(registry: &Registry) -> AlertMetrics {
        let m = AlertMetrics::unregistered();
        registry
            .register(Box::new(m.open.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(m.opened.clone()))
            .expect("metric names are unique");
        m
    }

    /// Handles registered nowhere, for tests.
    pub fn unregistered() -> AlertMetrics {
        AlertMetrics {
            open: IntGaugeVec::new(
                Opts::new("toolgate_alerts_open_total", "Open alerts, by severity."),
                &["severity"],
            )
            .expect("valid metric"),
            opened: IntCounterVec::new(
                Opts::new(
                    "toolgate_alerts_opened_total",
                    "Alerts opened (stored by this instance), by kind and severity.",
                ),
                &["kind", "severity"],
            )
            .expect("valid metric"),
        }
    }
}
