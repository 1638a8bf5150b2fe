//! Prometheus metrics, OTLP traces and JSON logs.
//!
//! Every name here is part of the external contract (INTERFACE.md, "Metrics", "Traces (OTLP)" and "Logs").

pub mod logs;
pub mod metrics;
pub mod traces;

pub use metrics::Metrics;
pub use traces::stage;

/// Now as RFC 3339 UTC with microseconds (`2026-11-22T20:15:00.123456Z`): the one timestamp format of logs and
/// audit events, fixed-width so that string order is time order.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats an instant as RFC 3339 UTC with exactly six fractional digits.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}
