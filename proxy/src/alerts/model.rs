//! The alert as the contract shapes it: kinds, severities, states, and the view the admin API answers.

use serde::Serialize;

use crate::audit::store::AlertRow;

/// The kinds of the contract (docs/behaviour.md gives each one's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RateAnomaly,
    DenySpike,
    PromptDrift,
    NewTool,
    ToolDefinitionChanged,
    DlpCritical,
    AuditWriteFailure,
    SiemDeliveryFailure,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::RateAnomaly,
        Kind::DenySpike,
        Kind::PromptDrift,
        Kind::NewTool,
        Kind::ToolDefinitionChanged,
        Kind::DlpCritical,
        Kind::AuditWriteFailure,
        Kind::SiemDeliveryFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RateAnomaly => "rate_anomaly",
            Kind::DenySpike => "deny_spike",
            Kind::PromptDrift => "prompt_drift",
            Kind::NewTool => "new_tool",
            Kind::ToolDefinitionChanged => "tool_definition_changed",
            Kind::DlpCritical => "dlp_critical",
            Kind::AuditWriteFailure => "audit_write_failure",
            Kind::SiemDeliveryFailure => "siem_delivery_failure",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The severity an alert of this kind opens with.
    pub fn severity(self) -> Severity {
        match self {
            Kind::NewTool => Severity::Low,
            Kind::RateAnomaly => Severity::Medium,
            Kind::DenySpike
            | Kind::PromptDrift
            | Kind::ToolDefinitionChanged
            | Kind::SiemDeliveryFailure => Severity::High,
            Kind::DlpCritical | Kind::AuditWriteFailure => Severity::Critical,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Open, Status::Acknowledged, Status::Resolved]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// An alert as the admin API answers it: the contract's fields, and who acknowledged or resolved it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub id: String,
    pub kind: String,
    pub severity: String,
    /// `None` for an alert of no agent (the audit writer's, a SIEM sink's).
    pub agent_id: Option<String>,
    pub tenant_id: Option<String>,
    pub status: String,
    pub opened_at: String,
    pub detail: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(r: AlertRow) -> AlertView {
        AlertView {
            id: r.id,
            kind: r.kind,
            severity: r.severity,
            agent_id: (!r.agent_id.is_empty()).then_some(r.agent_id),
            tenant_id: (!r.tenant_id.is_empty()).then_some(r.tenant_id),
            status: r.status,
            opened_at: r.opened_at,
            detail: r.detail,
            acknowledged_at: r.acknowledged_at,
            acknowledged_by: r.acknowledged_by,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
        }
    }
}
