//! The Prometheus metrics of the contract, registered once in one registry and rendered for `GET /metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets that resolve microseconds (policy, DLP, JWT, session) up to the milliseconds of forwarding.
const STAGE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const POLICY_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.005,
    0.01,
    0.05,
];
const AUDIT_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0,
];

/// The label an agent id is folded into once `max_agents` distinct ids have been seen.
pub const OTHER_AGENT: &str = "other";

/// Most bytes of a label value made by [`label_value`], cap marker included.
pub const LABEL_LIMIT: usize = 128;

/// A label value made from something outside toolgate's configuration (an agent id from a JWT): what DLP flags
/// redacted, control characters replaced by U+FFFD (the text exposition escapes only `\`, `"` and line feed;
/// a raw carriage return or terminal escape would reach every scraper), at most [`LABEL_LIMIT`] bytes
/// (`crate::redaction::cap`). The one gate for such values.
pub fn label_value(raw: &str) -> String {
    let redacted = crate::redaction::redact(raw.to_owned());
    let printable = if redacted.chars().any(char::is_control) {
        redacted
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect()
    } else {
        redacted
    };
    crate::redaction::cap(printable, LABEL_LIMIT)
}

/// All metrics of the contract. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub tool_calls: IntCounterVec,
    pub policy_decision_duration: HistogramVec,
    pub stage_duration: HistogramVec,
    pub audit_write_duration: Histogram,
    pub audit_write_failures: IntCounter,
    pub policy_errors: IntCounter,
    pub policy_reloads: IntCounterVec,
    pub dlp_findings: IntCounterVec,
    pub escalations_pending: IntGauge,
    /// `toolgate_alerts_open_total{severity}` and `toolgate_alerts_opened_total{kind,severity}`.
    pub alerts: super::alerts::AlertMetrics,
    pub upstream_requests: IntCounterVec,
    /// Every judged request, any method (`toolgate_requests_total{method, policy_result}`).
    pub requests: IntCounterVec,
    /// Every judged upstream answer (`toolgate_results_total{mcp_server, result}`).
    pub results: IntCounterVec,
    /// Tool definitions seen, by status (`pinned`, `changed`, `new`); set by `crate::tools` from its cache.
    pub tool_definitions: IntGaugeVec,
    /// The listener's connections: open, refused, timed out; TLS handshakes and certificate reloads.
    pub listener: ListenerMetrics,
    /// Agent runs ended and their durations (`crate::runs`).
    pub runs: super::runs::RunMetrics,
    /// SIEM delivery (`super::siem`).
    pub siem: super::SiemMetrics,
    /// `stage_duration` resolved once per stage, so timing a stage costs no label lookup.
    stages: Vec<Histogram>,
    /// Agent ids that have their own label value, each with that value ([`label_value`]), so an id is
    /// sanitised once. A std mutex: held only for a map lookup, never across an await.
    agents: Mutex<HashMap<String, Arc<str>>>,
    other_agent: Arc<str>,
    max_agents: usize,
}

impl Metrics {
    /// Creates and registers every metric. `max_agents` caps the distinct `agent_id` label values so a flood of
    /// agent ids cannot blow up the series count; later agents are counted as `other`.
    pub fn new(max_agents: usize) -> Metrics {
        let registry = Registry::new();
        let tool_calls = IntCounterVec::new(
            Opts::new(
                "toolgate_tool_calls_total",
                "MCP tool calls judged, by agent, policy result and upstream.",
            ),
            &["agent_id", "policy_result", "mcp_server"],
        )
        .expect("valid metric");
        let policy_decision_duration = HistogramVec::new(
            HistogramOpts::new(
                "toolgate_policy_decision_duration_seconds",
                "Time to evaluate the Rego decision for one call.",
            )
            .buckets(POLICY_BUCKETS.to_vec()),
            &["mcp_server"],
        )
        .expect("valid metric");
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "toolgate_stage_duration_seconds",
                "Time spent in each pipeline stage.",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        let audit_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "toolgate_audit_write_duration_seconds",
                "Time to commit one batch of audit events (group commit).",
            )
            .buckets(AUDIT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let audit_write_failures = IntCounter::new(
            "toolgate_audit_write_failures_total",
            "Audit events whose commit failed (the calls were refused: fail closed).",
        )
        .expect("valid metric");
        let policy_errors = IntCounter::new(
            "toolgate_policy_errors_total",
            "Policy evaluations that failed and were turned into a deny.",
        )
        .expect("valid metric");
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "toolgate_policy_reloads_total",
                "Policy set loads, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let dlp_findings = IntCounterVec::new(
            Opts::new(
                "toolgate_dlp_findings_total",
                "DLP findings in the params of every judged message and in the answers, by type and severity.",
            ),
            &["type", "severity"],
        )
        .expect("valid metric");
        let escalations_pending = IntGauge::new(
            "toolgate_escalations_pending",
            "Escalated calls waiting for a human decision.",
        )
        .expect("valid metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "toolgate_upstream_requests_total",
                "Requests forwarded to upstream MCP servers, by outcome.",
            ),
            &["mcp_server", "status"],
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new(
                "toolgate_requests_total",
                "MCP requests judged by the policy, any method, by method and policy result.",
            ),
            &["method", "policy_result"],
        )
        .expect("valid metric");
        let results = IntCounterVec::new(
            Opts::new(
                "toolgate_results_total",
                "Upstream answers judged on their way back, by upstream and result (pass, redact, block).",
            ),
            &["mcp_server", "result"],
        )
        .expect("valid metric");
        let tool_definitions = IntGaugeVec::new(
            Opts::new(
                "toolgate_tool_definitions",
                "Tool definitions seen in tools/list answers, by status.",
            ),
            &["status"],
        )
        .expect("valid metric");
        for c in [
            Box::new(tool_calls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(results.clone()),
            Box::new(policy_decision_duration.clone()),
            Box::new(stage_duration.clone()),
            Box::new(audit_write_duration.clone()),
            Box::new(audit_write_failures.clone()),
            Box::new(policy_errors.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(dlp_findings.clone()),
            Box::new(escalations_pending.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(tool_definitions.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let listener = ListenerMetrics::new(&registry);
        let runs = super::runs::RunMetrics::new(&registry);
        let alerts = super::alerts::AlertMetrics::new(&registry);
        let siem = super::SiemMetrics::new(&registry);
        // Resolved up front: dashboards see every stage from the first scrape, and timing costs no lookup.
        let stages = super::Stage::ALL
            .iter()
            .map(|s| stage_duration.with_label_values(&[s.as_str()]))
            .collect();
        for result in ["ok", "error"] {
            policy_reloads.with_label_values(&[result]);
        }
        // Every status from the first scrape, at 0 until a definition is seen.
        for status in ["pinned", "changed", "new"] {
            tool_definitions.with_label_values(&[status]);
        }
        Metrics {
            registry,
            tool_calls,
            policy_decision_duration,
            stage_duration,
            audit_write_duration,
            audit_write_failures,
            policy_errors,
            policy_reloads,
            dlp_findings,
            escalations_pending,
            alerts,
            upstream_requests,
            requests,
            results,
            tool_definitions,
            listener,
            runs,
            siem,
            stages,
            agents: Mutex::new(HashMap::new()),
            other_agent: Arc::from(OTHER_AGENT),
            max_agents,
        }
    }

    /// The `method` label of `toolgate_requests_total`: MCP's own methods by name, anything else `other`, so an
    /// agent cannot mint label values (or smuggle data into them) by inventing methods.
    pub fn method_label(method: &str) -> &str {
        const KNOWN: &[&str] = &[
            "initialize",
            "ping",
            "server/discover",
            "tools/call",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "prompts/get",
            "completion/complete",
            "logging/setLevel",
            "tasks/get",
            "tasks/list",
            "tasks/result",
            "tasks/cancel",
            "sampling/createMessage",
            "elicitation/create",
            "roots/list",
        ];
        KNOWN
            .iter()
            .copied()
            .find(|m| *m == method)
            .unwrap_or("other")
    }

    /// Counts DLP findings by type and severity (`toolgate_dlp_findings_total`), wherever they were found.
    pub fn count_dlp_findings(&self, findings: &[toolgate_engine::dlp::Finding]) {
        for f in findings {
            self.dlp_findings
                .with_label_values(&[&f.kind, f.severity.as_str()])
                .inc();
        }
    }

    /// The histogram of one pipeline stage.
    pub fn stage(&self, stage: super::Stage) -> &Histogram {
        &self.stages[stage as usize]
    }

    /// The handles the audit writer updates.
    pub fn audit(&self) -> AuditMetrics {
        AuditMetrics {
            write_duration: self.audit_write_duration.clone(),
            write_failures: self.audit_write_failures.clone(),
        }
    }

    /// The label value for `agent_id`: the id made a safe label value ([`label_value`]) while fewer than
    /// `max_agents` ids have been seen, else `other`.
    pub fn agent_label(&self, agent_id: &str) -> Arc<str> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = agents.get(agent_id) {
            return label.clone();
        }
        if agents.len() < self.max_agents {
            let label: Arc<str> = Arc::from(label_value(agent_id));
            agents.insert(agent_id.to_owned(), label.clone());
            return label;
        }
        self.other_agent.clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_labels_are_capped() {
        let m = Metrics::new(2);
        assert_eq!(&*m.agent_label("a"), "a");
        assert_eq!(&*m.agent_label("b"), "b");
        assert_eq!(&*m.agent_label("c"), OTHER_AGENT);
        assert_eq!(&*m.agent_label("a"), "a", "known agents keep their label");
    }

    #[test]
    fn agent_labels_hold_no_secret_and_no_control_character() {
        let m = Metrics::new(10);
        let label = m.agent_label("x\r\n\"} 1\nfake_metric 9\rAKIAIOSFODNN7EXAMPLE\u{1b}");
        m.tool_calls
            .with_label_values(&[&label, "allow", "demo"])
            .inc();
        let text = m.render();
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "a label value cannot start a line of its own: {text}"
        );
        assert!(m.agent_label(&"y".repeat(5000)).len() <= LABEL_LIMIT);
    }

    #[test]
    fn renders_every_contract_metric() {
        let m = Metrics::new(10);
        m.tool_calls
            .with_label_values(&["a", "allow", "demo"])
            .inc();
        m.dlp_findings.with_label_values(&["email", "medium"]).inc();
        m.alerts.open.with_label_values(&["high"]).set(0);
        m.alerts
            .opened
            .with_label_values(&["deny_spike", "high"])
            .inc();
        m.upstream_requests.with_label_values(&["demo", "ok"]).inc();
        m.policy_decision_duration
            .with_label_values(&["demo"])
            .observe(0.000_004);
        let text = m.render();
        for name in [
            "toolgate_tool_calls_total",
            "toolgate_policy_decision_duration_seconds",
            "toolgate_stage_duration_seconds",
            "toolgate_audit_write_duration_seconds",
            "toolgate_audit_write_failures_total",
            "toolgate_policy_errors_total",
            "toolgate_policy_reloads_total",
            "toolgate_dlp_findings_total",
            "toolgate_escalations_pending",
            "toolgate_alerts_open_total",
            "toolgate_alerts_opened_total",
            "toolgate_upstream_requests_total",
            "toolgate_tool_definitions",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
        assert!(text.contains(
            r#"toolgate_tool_calls_total{agent_id="a",mcp_server="demo",policy_result="allow"} 1"#
        ));
        assert!(text.contains(r#"toolgate_stage_duration_seconds_count{stage="policy"} 0"#));
        assert!(text.contains(r#"toolgate_tool_definitions{status="changed"} 0"#));
    }
}

/// The listener's metrics (`server::limits`, `server::connection`, `server::tls`). No label carries a client
/// address: the reasons are a fixed set.
pub struct ListenerMetrics {
    /// `toolgate_connections_open`
    pub connections_open: IntGauge,
    /// `toolgate_connections_refused_total{reason="max_connections"|"per_ip"}`
    pub connections_refused: IntCounterVec,
    /// `toolgate_connections_timed_out_total{reason="header_timeout"|"idle_timeout"}`
    pub connections_timed_out: IntCounterVec,
    /// `toolgate_tls_handshake_failures_total`
    pub tls_handshake_failures: IntCounter,
    /// `toolgate_tls_certificate_reloads_total{result="ok"|"error"}`
    pub tls_reloads: IntCounterVec,
    /// `toolgate_requests_rate_limited_total{limit="auth_failures"|"public_verify"}`
    pub rate_limited: IntCounterVec,
}

impl ListenerMetrics {
    fn new(registry: &Registry) -> ListenerMetrics {
        let m = ListenerMetrics {
            connections_open: IntGauge::new(
                "toolgate_connections_open",
                "Client connections open on the listener.",
            )
            .expect("valid metric"),
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "toolgate_connections_refused_total",
                    "Connections refused at accept, by reason (max_connections, per_ip).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            connections_timed_out: IntCounterVec::new(
                Opts::new(
                    "toolgate_connections_timed_out_total",
                    "Connections closed for idling, by reason (header_timeout, idle_timeout).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            tls_handshake_failures: IntCounter::new(
                "toolgate_tls_handshake_failures_total",
                "TLS handshakes on the listener that failed.",
            )
            .expect("valid metric"),
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "toolgate_tls_certificate_reloads_total",
                    "Listener certificate (and client CA) reloads after a file change, by result (ok, error).",
                ),
                &["result"],
            )
            .expect("valid metric"),
            rate_limited: IntCounterVec::new(
                Opts::new(
                    "toolgate_requests_rate_limited_total",
                    "Requests answered 429 by a per-client limit (auth_failures: after too many 401s; public_verify).",
                ),
                &["limit"],
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.connections_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.connections_refused.clone()),
            Box::new(m.connections_timed_out.clone()),
            Box::new(m.tls_handshake_failures.clone()),
            Box::new(m.tls_reloads.clone()),
            Box::new(m.rate_limited.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Every reason from the first scrape, at 0 until it happens.
        for reason in ["max_connections", "per_ip"] {
            m.connections_refused.with_label_values(&[reason]);
        }
        for reason in ["header_timeout", "idle_timeout"] {
            m.connections_timed_out.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            m.tls_reloads.with_label_values(&[result]);
        }
        for limit in ["auth_failures", "public_verify"] {
            m.rate_limited.with_label_values(&[limit]);
        }
        m
    }
}

/// Metric handles the writer updates; created and registered here, handed to the audit writer.
#[derive(Clone)]
pub struct AuditMetrics {
    /// Seconds per batch commit (`toolgate_audit_write_duration_seconds`).
    pub write_duration: prometheus::Histogram,
    /// Events whose commit failed (`toolgate_audit_write_failures_total`).
    pub write_failures: prometheus::IntCounter,
}

impl AuditMetrics {
    /// Handles registered nowhere, for tests and the CLI.
    pub fn unregistered() -> AuditMetrics {
        AuditMetrics {
            write_duration: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
                "toolgate_audit_write_duration_seconds",
                "Seconds per audit batch commit",
            ))
            .expect("constant histogram options are valid"),
            write_failures: prometheus::IntCounter::new(
                "toolgate_audit_write_failures_total",
                "Audit events whose commit failed",
            )
            .expect("constant counter options are valid"),
        }
    }
}
