//! One tool call: jwt -> session -> dlp -> policy -> forward -> audit.
//!
//! The first two stages run in [`crate::mcp::endpoint`] for every MCP request (they decide who is calling and
//! in which session); [`tools_call`] runs the rest, top to bottom. Stages do not call each other, and each is
//! timed once. A deny is a [`Decision`], not an error; an error in any stage is a deny with the error recorded.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::canonical::input_hash;
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::{Finding, Severity};
use toolgate_engine::input::{
    classify, AgentInfo, PolicyInput, RequestInfo, SessionInfo, ToolClass,
};
use toolgate_engine::policy::{Decision, Verdict};

use crate::app::App;
use crate::audit::Durable;
use crate::auth::AgentIdentity;
use crate::escalation::{Escalation, Lookup, Review};
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::session::Session;
use crate::mcp::upstream::Upstream;
use crate::server::{jsonrpc_reply, Body};

/// The stages of the pipeline, in order. `as usize` indexes [`crate::telemetry::Metrics::stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Jwt = 0,
    Session = 1,
    Dlp = 2,
    Policy = 3,
    Forward = 4,
    Audit = 5,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Jwt,
        Stage::Session,
        Stage::Dlp,
        Stage::Policy,
        Stage::Forward,
        Stage::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Jwt => "jwt",
            Stage::Session => "session",
            Stage::Dlp => "dlp",
            Stage::Policy => "policy",
            Stage::Forward => "forward",
            Stage::Audit => "audit",
        }
    }
}

/// Who is calling, where, and in which session: what the jwt and session stages established.
pub struct Caller<'a> {
    pub identity: &'a AgentIdentity,
    pub session: Option<Arc<Session>>,
    pub upstream_name: &'a str,
    pub upstream: &'a Upstream,
    pub protocol_version: Option<String>,
    pub trace_id: String,
}

/// Proof that the policy allowed this call. Only [`tools_call`] makes one, from an allow [`Decision`], and
/// forwarding a tool call requires it together with the [`Durable`] acknowledgement of its audit event.
pub struct Allowed<'a>(&'a Decision);

/// A tool call that reached the upstream: what to send back, and how the outcome is recorded.
pub enum Forwarded {
    /// A streamable-HTTP answer, streamed back as it comes (JSON or SSE).
    Http(Response<hyper::body::Incoming>),
    /// A complete JSON-RPC answer (stdio upstreams).
    Json(Value),
}

/// Runs dlp -> policy -> [hold] -> audit -> forward -> audit for one `tools/call`.
pub async fn tools_call(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Response<Body> {
    let id = message.id().cloned().unwrap_or(Value::Null);
    // Borrowed, not cloned: the arguments may be megabytes.
    let params = message.params().unwrap_or(&Value::Null);
    let Some(tool_name) = params.get("name").and_then(Value::as_str) else {
        return jsonrpc_reply(
            StatusCode::OK,
            jsonrpc::error_response(
                Some(&id),
                jsonrpc::INVALID_PARAMS,
                "tools/call needs params.name (a string)",
                None,
            ),
        );
    };
    let empty = Value::Object(Default::default());
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return jsonrpc_reply(
                StatusCode::OK,
                jsonrpc::error_response(
                    Some(&id),
                    jsonrpc::INVALID_PARAMS,
                    "tools/call params.arguments must be an object",
                    None,
                ),
            );
        }
    };
    let calls_before = caller.session.as_ref().map(|s| s.count_call()).unwrap_or(0);
    crate::telemetry::traces::annotate(&[("gen_ai.tool.name", tool_name)]);

    // dlp: findings over the arguments; the values themselves never leave the scanner.
    let findings =
        crate::telemetry::stage(&app.metrics, Stage::Dlp).in_scope(|| app.scanner.scan(arguments));
    for f in &findings {
        app.metrics
            .dlp_findings
            .with_label_values(&[&f.kind, f.severity.as_str()])
            .inc();
    }
    if !findings.is_empty() {
        let types: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        tracing::info!(agent = %caller.identity.id, tool = tool_name, findings = ?types, "DLP findings");
    }

    // policy: the Rego decision on an input built straight from the parsed request.
    let workdir = app.workdir(caller.upstream_name);
    let class = classify(tool_name, arguments, workdir);
    let (decision, revision) = crate::telemetry::stage(&app.metrics, Stage::Policy).in_scope(|| {
        let started = Instant::now();
        let agent = agent_info(caller.identity);
        let session = session_info(caller.session.as_deref(), calls_before);
        let request = RequestInfo {
            method: "tools/call".into(),
            upstream: caller.upstream_name.into(),
            protocol_version: caller.protocol_version.clone(),
        };
        let now = crate::telemetry::now_rfc3339();
        let input = PolicyInput {
            agent: &agent,
            session: &session,
            request: &request,
            tool_name,
            arguments: Some(arguments),
            class: &class,
            findings: &findings,
            behavior_score: 0.0,
            now: &now,
        };
        // The revision is taken from the evaluator that decided, so the audit event names the policy set that
        // made this decision even while a reload swaps in another.
        let (decision, revision) = app.with_evaluator(|ev| (ev.decide(input.to_value()), ev.revision().to_owned()));
        let decision = decision.unwrap_or_else(|e| {
            app.metrics.policy_errors.inc();
            tracing::error!(agent = %caller.identity.id, tool = tool_name, error = %e, "policy evaluation failed");
            Decision::from_error(&e)
        });
        app.metrics
            .policy_decision_duration
            .with_label_values(&[caller.upstream_name])
            .observe(started.elapsed().as_secs_f64());
        (decision, revision)
    });
    crate::telemetry::traces::annotate(&[
        ("toolgate.policy_result", decision.verdict().as_str()),
        ("toolgate.policy_id", decision.policy_id()),
    ]);
    tracing::info!(
        agent = %caller.identity.id,
        tool = tool_name,
        action = class.action.as_str(),
        target = class.target.as_deref().unwrap_or(""),
        result = decision.verdict().as_str(),
        policy_id = decision.policy_id(),
        "policy decision"
    );
    app.metrics
        .tool_calls
        .with_label_values(&[
            app.metrics.agent_label(&caller.identity.id),
            decision.verdict().as_str(),
            caller.upstream_name,
        ])
        .inc();

    let record = CallRecord {
        app,
        caller,
        tool_name,
        input_hash: input_hash(arguments),
        class: &class,
        findings: &findings,
        findings_json: serde_json::to_value(&findings).unwrap_or(Value::Array(vec![])),
        revision: &revision,
    };
    match decision.verdict() {
        Verdict::Deny => {
            // The deny stands whether or not it could be recorded; a failed write is counted by the writer.
            let _ = record.append("policy_deny", &decision, json!({})).await;
            deny_reply(&id, &decision)
        }
        Verdict::Escalate => escalate(&record, &id, &decision, headers, raw, message).await,
        Verdict::Allow => {
            forward_allowed(&record, &id, &decision, json!({}), headers, raw, message).await
        }
    }
}

/// An escalated call: recorded as pending, held up to the hold time for a reviewer, then forwarded, denied,
/// or answered `-31002` with the escalation id. A reviewer's answer to an identical earlier call that no held
/// call received is applied to this one instead; a retry of a pending escalation joins it.
async fn escalate(
    record: &CallRecord<'_>,
    id: &Value,
    decision: &Decision,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Response<Body> {
    let app = record.app;
    let fingerprint = format!(
        "{}\n{}\n{}\n{}",
        record.caller.identity.id, record.caller.upstream_name, record.tool_name, record.input_hash
    );
    let ttl = std::time::Duration::from_secs(app.config.escalation.answer_ttl_seconds);
    let (escalation_id, joined) = match app.escalations.lookup(&fingerprint, ttl) {
        Lookup::Answered {
            id: escalation_id,
            review,
        } => {
            let extra = json!({ "escalation_id": escalation_id });
            return answer(record, id, decision, review, extra, headers, raw, message).await;
        }
        Lookup::Pending { id: escalation_id } => (escalation_id, true),
        Lookup::None => (uuid::Uuid::now_v7().to_string(), false),
    };
    let extra = json!({ "escalation_id": escalation_id });
    if record
        .append("policy_escalate", decision, extra.clone())
        .await
        .is_err()
    {
        return audit_unavailable(id);
    }
    let waiter = if joined {
        app.escalations.join(&escalation_id)
    } else {
        Some(app.escalations.open(
            Escalation {
                id: escalation_id.clone(),
                status: "pending",
                created_at: crate::telemetry::now_rfc3339(),
                agent_id: record.caller.identity.id.clone(),
                tool_name: record.tool_name.to_owned(),
                mcp_server: record.caller.upstream_name.to_owned(),
                action: record.class.action.as_str().to_owned(),
                target: record.class.target.clone(),
                policy_id: decision.policy_id().to_owned(),
                reason: decision.reason().to_owned(),
                delivered: None,
            },
            fingerprint,
        ))
    };
    let hold = std::time::Duration::from_secs(app.config.escalation.hold_seconds);
    let review = match waiter {
        Some(mut waiter) => match tokio::time::timeout(hold, &mut waiter).await {
            Ok(review) => review.ok(),
            // Closed before the last look, so a decision made just now is either taken here or kept for the
            // retry by the reviewer's side, never lost in between.
            Err(_) => {
                waiter.close();
                waiter.try_recv().ok()
            }
        },
        // Decided between the lookup and the join: the answer waits for the next retry.
        None => None,
    };
    match review {
        Some(review) => answer(record, id, decision, review, extra, headers, raw, message).await,
        None => jsonrpc_reply(
            StatusCode::OK,
            jsonrpc::error_response(
                Some(id),
                jsonrpc::ESCALATION_PENDING,
                format!("escalation pending {escalation_id}: {}", decision.reason()),
                Some(json!({ "escalation_id": escalation_id, "policy_id": decision.policy_id() })),
            ),
        ),
    }
}

/// Carries out a reviewer's answer to an escalated call: forward it as approved, or deny it.
#[allow(clippy::too_many_arguments)]
async fn answer(
    record: &CallRecord<'_>,
    id: &Value,
    decision: &Decision,
    review: Review,
    extra: Value,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Response<Body> {
    match review {
        Review::Approved => {
            let approved =
                Decision::approved(decision).expect("answer() is only called for escalations");
            forward_allowed(record, id, &approved, extra, headers, raw, message).await
        }
        Review::Denied => {
            let denied = Decision::reviewer_denied(decision)
                .expect("answer() is only called for escalations");
            let _ = record.append("policy_deny", &denied, extra).await;
            deny_reply(id, &denied)
        }
    }
}

/// audit (write-ahead) -> forward -> audit (outcome) for an allowed call.
async fn forward_allowed(
    record: &CallRecord<'_>,
    id: &Value,
    decision: &Decision,
    extra: Value,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Response<Body> {
    let allowed = Allowed(decision);
    // Write-ahead: nothing reaches the upstream before its decision is durable.
    let durable = match record.append("tool_call", decision, extra).await {
        Ok(d) => d,
        Err(_) => return audit_unavailable(id),
    };
    let started = Instant::now();
    let forwarded = crate::telemetry::stage(&record.app.metrics, Stage::Forward)
        .run(forward(
            record.app,
            record.caller,
            allowed,
            &durable,
            headers,
            raw,
            message,
        ))
        .await;
    let latency_us = started.elapsed().as_micros() as i64;
    let upstream = record.caller.upstream_name;
    let (response, code, error) = match forwarded {
        Ok(Forwarded::Http(resp)) => {
            let status = resp.status();
            let outcome = if status.is_success() {
                "ok"
            } else {
                "http_error"
            };
            record
                .app
                .metrics
                .upstream_requests
                .with_label_values(&[upstream, outcome])
                .inc();
            let error = (!status.is_success())
                .then(|| format!("upstream answered HTTP {}", status.as_u16()));
            (
                crate::server::stream_response(resp),
                Some(status.as_u16() as i64),
                error,
            )
        }
        Ok(Forwarded::Json(value)) => {
            record
                .app
                .metrics
                .upstream_requests
                .with_label_values(&[upstream, "ok"])
                .inc();
            let error = value.get("error").map(|e| {
                format!(
                    "upstream JSON-RPC error {}",
                    e.get("code").unwrap_or(&Value::Null)
                )
            });
            (jsonrpc_reply(StatusCode::OK, value), Some(200), error)
        }
        Err(e) => {
            record
                .app
                .metrics
                .upstream_requests
                .with_label_values(&[upstream, e.status_label()])
                .inc();
            tracing::warn!(upstream, error = %e, "upstream request failed");
            let reply = jsonrpc_reply(
                StatusCode::OK,
                jsonrpc::error_response(Some(id), e.code(), e.to_string(), None),
            );
            (reply, None, Some(e.to_string()))
        }
    };
    // The outcome is queued to the same single writer, in order, but not awaited: the agent's answer (often a
    // stream) should not wait on a second commit. See docs/audit.md.
    let mut draft = record.draft(
        "tool_result",
        decision,
        json!({ "decision_event": durable.id() }),
    );
    draft.response_code = code;
    draft.latency_us = Some(latency_us);
    draft.error = error;
    let audit = record.app.audit.clone();
    tokio::spawn(async move {
        let _ = audit.append(draft).await;
    });
    response
}

/// Why a forward failed; each is a JSON-RPC error to the agent and an audited outcome.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("upstream timed out: {0}")]
    Timeout(String),
}

impl ForwardError {
    pub fn code(&self) -> i64 {
        match self {
            ForwardError::Unavailable(_) => jsonrpc::UPSTREAM_UNAVAILABLE,
            ForwardError::Timeout(_) => jsonrpc::UPSTREAM_TIMEOUT,
        }
    }
    pub fn status_label(&self) -> &'static str {
        match self {
            ForwardError::Unavailable(_) => "unavailable",
            ForwardError::Timeout(_) => "timeout",
        }
    }
}

/// Sends an allowed, recorded call to its upstream.
async fn forward(
    app: &App,
    caller: &Caller<'_>,
    allowed: Allowed<'_>,
    durable: &Durable,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Result<Forwarded, ForwardError> {
    tracing::debug!(
        policy_id = allowed.0.policy_id(),
        audit_seq = durable.seq(),
        "forwarding an allowed call"
    );
    send_upstream(app, caller, headers, raw, message).await
}

/// Sends one request to the upstream: the agent's exact bytes over HTTP; the parsed message to a stdio child.
pub async fn send_upstream(
    app: &App,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Result<Forwarded, ForwardError> {
    use crate::mcp::http::HttpUpstreamError;
    use crate::mcp::stdio::StdioError;
    match caller.upstream {
        Upstream::Http(http) => match http.send(Method::POST, headers, raw).await {
            Ok(resp) => Ok(Forwarded::Http(resp)),
            Err(HttpUpstreamError::Timeout(..)) => {
                Err(ForwardError::Timeout(caller.upstream_name.to_owned()))
            }
            Err(e) => Err(ForwardError::Unavailable(e.to_string())),
        },
        Upstream::Stdio(child) => {
            let timeout = app
                .upstream_settings(caller.upstream_name)
                .map(|u| u.timeout())
                .unwrap_or(std::time::Duration::from_secs(30));
            // A stdio child has no headers: the trace context travels in `params._meta.traceparent`.
            let mut request = message.value.clone();
            crate::telemetry::traces::inject_meta(&mut request);
            match child.request(request, timeout).await {
                Ok(v) => Ok(Forwarded::Json(v)),
                Err(StdioError::Timeout) => {
                    Err(ForwardError::Timeout(caller.upstream_name.to_owned()))
                }
                Err(e) => Err(ForwardError::Unavailable(format!(
                    "{}: {e}",
                    caller.upstream_name
                ))),
            }
        }
    }
}

/// Builds and appends the audit events of one call.
struct CallRecord<'a> {
    app: &'a App,
    caller: &'a Caller<'a>,
    tool_name: &'a str,
    /// SHA-256 of the JCS arguments, computed once: the decision and the outcome event both carry it, and the
    /// arguments may be megabytes.
    input_hash: String,
    class: &'a ToolClass,
    findings: &'a [Finding],
    /// The findings as the JSON the events carry, serialised once.
    findings_json: Value,
    /// The policy revision that made the decision.
    revision: &'a str,
}

impl CallRecord<'_> {
    fn draft(&self, event_type: &str, decision: &Decision, extra: Value) -> EventDraft {
        let caller = self.caller;
        let mut extra = extra;
        if let Value::Object(map) = &mut extra {
            map.insert(
                "policy_revision".into(),
                Value::String(self.revision.to_owned()),
            );
            if let Some(v) = &caller.protocol_version {
                map.insert("protocol_version".into(), Value::String(v.clone()));
            }
        }
        EventDraft {
            event_type: event_type.to_owned(),
            agent_id: Some(caller.identity.id.clone()),
            session_id: caller.session.as_ref().map(|s| s.id.clone()),
            tenant_id: caller.identity.tenant_id.clone(),
            tool_name: Some(self.tool_name.to_owned()),
            mcp_server: Some(caller.upstream_name.to_owned()),
            action: Some(self.class.action.as_str().to_owned()),
            target: self.class.target.clone(),
            input_hash: Some(self.input_hash.clone()),
            policy_result: Some(decision.verdict().as_str().to_owned()),
            policy_id: Some(decision.policy_id().to_owned()),
            policy_reason: Some(decision.reason().to_owned()),
            behavioral_score: Some("0.0".into()),
            dlp_findings: self.findings_json.clone(),
            dlp_action: Some(dlp_action(self.findings, decision).to_owned()),
            trace_id: Some(caller.trace_id.clone()),
            extra,
            ..EventDraft::default()
        }
    }

    async fn append(
        &self,
        event_type: &str,
        decision: &Decision,
        extra: Value,
    ) -> Result<Durable, crate::audit::AuditError> {
        let result = crate::telemetry::stage(&self.app.metrics, Stage::Audit)
            .run(
                self.app
                    .audit
                    .append(self.draft(event_type, decision, extra)),
            )
            .await;
        if let Err(e) = &result {
            tracing::error!(agent = %self.caller.identity.id, tool = self.tool_name, error = %e, "audit write failed");
        }
        result
    }
}

/// What the DLP findings led to: `none` without findings, else the verdict they were part of.
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

pub fn agent_info(identity: &AgentIdentity) -> AgentInfo {
    AgentInfo {
        id: identity.id.clone(),
        tenant_id: identity.tenant_id.clone(),
        roles: identity.roles.clone(),
        claims: identity.claims.clone(),
    }
}

pub fn session_info(session: Option<&Session>, calls: u64) -> SessionInfo {
    SessionInfo {
        id: session.map(|s| s.id.clone()),
        calls,
        started_at: session.map(|s| s.started_at.clone()),
    }
}

fn deny_reply(id: &Value, decision: &Decision) -> Response<Body> {
    jsonrpc_reply(
        StatusCode::OK,
        jsonrpc::error_response(
            Some(id),
            jsonrpc::POLICY_DENIED,
            format!(
                "denied by policy {}: {}",
                decision.policy_id(),
                decision.reason()
            ),
            Some(json!({ "policy_id": decision.policy_id() })),
        ),
    )
}

fn audit_unavailable(id: &Value) -> Response<Body> {
    jsonrpc_reply(
        StatusCode::OK,
        jsonrpc::error_response(
            Some(id),
            jsonrpc::AUDIT_UNAVAILABLE,
            "audit log unavailable: the call was refused (fail closed)",
            None,
        ),
    )
}
