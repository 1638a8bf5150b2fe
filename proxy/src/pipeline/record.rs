//! The audit events of one judged message: the decision event (write-ahead, awaited) and the outcome event
//! (queued in order behind it, not awaited).

use serde_json::{json, Value};
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::{Finding, Severity};
use toolgate_engine::policy::{Decision, Verdict};

use super::Caller;
use crate::app::App;
use crate::audit::{AuditError, Durable};
use crate::telemetry::Stage;

/// What every event of one message shares, computed once (the arguments may be megabytes).
pub(super) struct Record<'a> {
    pub app: &'a App,
    pub caller: &'a Caller<'a>,
    pub method: &'a str,
    pub tool_name: Option<&'a str>,
    pub action: Option<&'a str>,
    pub target: Option<&'a str>,
    /// SHA-256 of the JCS of the tool's arguments (or the params of another method).
    pub input_hash: String,
    pub findings: &'a [Finding],
    /// The findings as the JSON the events carry, serialised once.
    pub findings_json: Value,
    /// The policy revision that judged the message.
    pub revision: &'a str,
    /// The call's `behavior.score`, as every event of it carries it ([`score_text`]).
    pub behavioral_score: String,
}

impl Record<'_> {
    /// The event types of this method: tool calls keep their own names, every other method is `request`/`result`.
    pub(super) fn allowed_type(&self) -> &'static str {
        if self.method == "tools/call" {
            "tool_call"
        } else {
            "request"
        }
    }

    pub(super) fn outcome_type(&self) -> &'static str {
        if self.method == "tools/call" {
            "tool_result"
        } else {
            "result"
        }
    }

    pub(super) fn draft(&self, event_type: &str, decision: &Decision, extra: Value) -> EventDraft {
        let caller = self.caller;
        let mut extra = extra;
        if let Value::Object(map) = &mut extra {
            map.insert(
                "method".into(),
                Value::String(super::stages::audited_method(self.app, self.method)),
            );
            map.insert(
                "policy_revision".into(),
                Value::String(self.revision.to_owned()),
            );
            if caller.direction == toolgate_engine::input::Direction::ServerToClient {
                map.insert("direction".into(), Value::String("server_to_client".into()));
            }
            if let Some(v) = &caller.protocol_version {
                map.insert("protocol_version".into(), Value::String(v.clone()));
            }
        }
        // As made: `AuditLog::append`/`enqueue` redact and cap every field once (`audit::stored`).
        EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(caller.identity.id.clone()),
            session_id: caller.session.as_ref().and_then(|s| s.id.clone()),
            tenant_id: caller.identity.tenant_id.clone(),
            workflow_id: caller.run_id.as_deref().map(str::to_owned),
            tool_name: self.tool_name.map(str::to_owned),
            mcp_server: Some(caller.upstream_name.to_owned()),
            action: self.action.map(str::to_owned),
            target: self.target.map(str::to_owned),
            input_hash: Some(self.input_hash.clone()),
            policy_result: Some(decision.verdict().as_str().to_owned()),
            policy_id: Some(decision.policy_id().to_owned()),
            policy_reason: Some(decision.reason().to_owned()),
            behavioral_score: Some(self.behavioral_score.clone()),
            dlp_findings: self.findings_json.clone(),
            dlp_action: Some(dlp_action(self.findings, decision).to_owned()),
            trace_id: Some(caller.trace_id.clone()),
            extra,
            ..EventDraft::default()
        }
    }

    /// Appends one decision event and waits until it is durable (the audit stage).
    pub(super) async fn append(
        &self,
        event_type: &str,
        decision: &Decision,
        extra: Value,
    ) -> Result<Durable, AuditError> {
        let result = crate::telemetry::stage(&self.app.metrics, Stage::Audit)
            .run(
                self.app
                    .audit
                    .append(self.draft(event_type, decision, extra)),
            )
            .await;
        if let Err(e) = &result {
            tracing::error!(
                agent = %crate::redaction::loggable(&self.caller.identity.id),
                method = crate::telemetry::Metrics::method_label(self.method),
                error = %e,
                "audit write failed"
            );
        }
        result
    }

    /// The outcome event of a forwarded message, to be completed and queued behind its decision event.
    pub(super) fn outcome_draft(&self, decision: &Decision, durable: &Durable) -> EventDraft {
        self.draft(
            self.outcome_type(),
            decision,
            json!({ "decision_event": durable.id() }),
        )
    }
}

/// Queues an outcome event behind everything appended before it (`AuditLog::enqueue`); a failure is logged
/// here and counted by the writer, and never holds up the answer.
pub(super) async fn enqueue(app: &App, draft: EventDraft) {
    let event_type = draft.event_type.clone();
    if let Err(e) = app.audit.enqueue(draft).await {
        tracing::error!(event_type, error = %e, "audit write failed");
    }
}

/// A score as the audit events' `behavioral_score` spells it: a decimal with four places.
pub(super) fn score_text(score: f64) -> String {
    format!("{:.4}", score.clamp(0.0, 1.0))
}

/// What the request's DLP findings led to: `none` without findings, else the verdict they were part of.
fn dlp_action(findings: &[Finding], decision: &Decision) -> &'static str {
    if findings.is_empty() {
        return "none";
    }
    match decision.verdict() {
        Verdict::Deny => "blocked",
        Verdict::Escalate => "held",
        Verdict::Allow => {
            if findings.iter().any(|f| f.severity >= Severity::High) {
                "allowed_flagged"
            } else {
                "allowed"
            }
        }
    }
}
