//! Prometheus metrics, OTLP traces and JSON logs.
//!
//! Every name here is part of the external contract (docs/observability.md).

pub mod alerts;
pub mod logs;
pub mod metrics;
pub mod runs;
pub mod siem;
pub mod traces;

pub use alerts::AlertMetrics;
pub use metrics::{AuditMetrics, Metrics};
pub use siem::SiemMetrics;
pub use traces::stage;

/// The stages of the pipeline, in order. `as usize` indexes [`Metrics::stage`]; each is one span and one
/// `toolgate_stage_duration_seconds{stage}` observation. Owned here, not by the pipeline, because the names are
/// telemetry's contract (docs/observability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Jwt = 0,
    Session = 1,
    Dlp = 2,
    Policy = 3,
    Forward = 4,
    Result = 5,
    Audit = 6,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Jwt,
        Stage::Session,
        Stage::Dlp,
        Stage::Policy,
        Stage::Forward,
        Stage::Result,
        Stage::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Jwt => "jwt",
            Stage::Session => "session",
            Stage::Dlp => "dlp",
            Stage::Policy => "policy",
            Stage::Forward => "forward",
            Stage::Result => "result",
            Stage::Audit => "audit",
        }
    }
}

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

/// The `[telemetry]` section of the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub otlp_endpoint: Option<String>,
    #[serde(default = "default_otlp_protocol")]
    pub otlp_protocol: String,
    /// At most this many distinct `agent_id` label values; the rest are counted as `other`.
    #[serde(default = "default_metrics_max_agents")]
    pub metrics_max_agents: usize,
    /// Seconds between `:keepalive` comments on the SSE feed.
    #[serde(default = "default_sse_keepalive")]
    pub sse_keepalive_seconds: u64,
    /// Debug level for toolgate's modules (`TOOLGATE_DEBUG=true`).
    #[serde(default)]
    pub debug: bool,
    /// Per-module levels as an `EnvFilter` directive list (`TOOLGATE_LOG`).
    #[serde(default)]
    pub log: Option<String>,
    /// `service.name` of the exported spans (`OTEL_SERVICE_NAME`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More resource attributes of the exported spans (`OTEL_RESOURCE_ATTRIBUTES`, `k=v,k=v`).
    #[serde(default)]
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            otlp_protocol: default_otlp_protocol(),
            metrics_max_agents: default_metrics_max_agents(),
            sse_keepalive_seconds: default_sse_keepalive(),
            debug: false,
            log: None,
            service_name: default_service_name(),
            resource_attributes: std::collections::BTreeMap::new(),
        }
    }
}

fn default_otlp_protocol() -> String {
    "grpc".into()
}
fn default_service_name() -> String {
    "toolgate".into()
}
fn default_metrics_max_agents() -> usize {
    1000
}
fn default_sse_keepalive() -> u64 {
    15
}
