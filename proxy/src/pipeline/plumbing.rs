//! Protocol plumbing (`ping`, `server/discover`, `notifications/*`) and the agent's answers to server requests:
//! forwarded without `decision`, but scanned first, and refused on a critical DLP finding or by the optional
//! `plumbing_decision`.

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::dlp::Severity;
use toolgate_engine::policy::{Decision, Verdict};

use super::forward::{self, Forwarded};
use super::refusal::Refusal;
use super::route::Unjudged;
use super::{accepted, count_upstream, Caller, InputBase};
use crate::app::App;
use crate::mcp::jsonrpc::{Kind, Message};
use crate::mcp::stdio::StdioError;
use crate::mcp::upstream::Upstream;
use crate::response::{jsonrpc_reply, Body};
use crate::telemetry::Stage;

/// Plumbing from the agent to the upstream.
pub(super) async fn forward(
    app: &App,
    caller: &Caller<'_>,
    proof: Unjudged,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    screen(app, caller, message).await?;
    if let (Upstream::Stdio(_), Kind::Notification { method }) = (caller.upstream, &message.kind) {
        // The child's session is toolgate's own; the agent's lifecycle notifications are not the child's.
        if method == "notifications/initialized" || method.starts_with("notifications/cancelled") {
            return Ok(accepted());
        }
    }
    send(app, caller, proof, message, headers, raw).await
}

/// The agent's answer to a request its upstream sent it (sampling, elicitation, roots), scanned like plumbing.
pub(super) async fn agent_answer(
    app: &App,
    caller: &Caller<'_>,
    proof: Unjudged,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    screen(app, caller, message).await?;
    let Upstream::Stdio(child) = caller.upstream else {
        return send(app, caller, proof, message, headers, raw).await;
    };
    // A stdio child is shared: the answer goes back under the child's own id, and only if toolgate delivered
    // that request to this agent (an agent never answers another agent's request).
    let owner = super::server_request::owner_of(caller.identity);
    match child.answer(&owner, message.value.clone()).await {
        Ok(()) => Ok(accepted()),
        Err(StdioError::NotAwaited | StdioError::Protocol(_)) => {
            let decision = Decision::routing_refused(
                "toolgate.server_request.not_awaited",
                "no request of the upstream awaits this answer from this agent".into(),
            );
            let draft = toolgate_engine::chain::EventDraft {
                policy_id: Some(decision.policy_id().to_owned()),
                policy_reason: Some(decision.reason().to_owned()),
                ..super::stages::refused_draft(app, caller, "response")
            };
            super::stages::record_refused(app, caller, "response", draft).await;
            Err(Refusal::Denied { id: None, decision })
        }
        Err(e) => Err(Refusal::Upstream {
            id: None,
            error: forward::ForwardError::Unavailable(format!("{}: {e}", caller.upstream_name)),
        }),
    }
}

async fn send(
    app: &App,
    caller: &Caller<'_>,
    proof: Unjudged,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    match forward::unjudged(app, caller, proof, headers, raw, message).await {
        Ok(Forwarded::Json(Value::Null)) => Ok(accepted()),
        Ok(Forwarded::Json(v)) => {
            count_upstream(app, caller.upstream_name, StatusCode::OK);
            Ok(jsonrpc_reply(StatusCode::OK, v))
        }
        // An upstream's 400 to `server/discover` passes as is: clients use it to fall back to the older era.
        Ok(Forwarded::Http(resp)) => {
            count_upstream(app, caller.upstream_name, resp.status());
            Ok(crate::response::stream_response(resp))
        }
        Err(error) => {
            app.metrics
                .upstream_requests
                .with_label_values(&[caller.upstream_name, error.status_label()])
                .inc();
            tracing::warn!(upstream = caller.upstream_name, error = %error, "upstream request failed");
            Err(Refusal::Upstream {
                id: message.id().cloned(),
                error,
            })
        }
    }
}

/// dlp over the whole message (params, or the answer's result or error, and every other member), then the
/// plumbing decision: a critical finding refuses the message whatever the policy says; otherwise
/// `plumbing_decision` (allow when the policy has none).
pub(super) async fn screen(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
) -> Result<(), Refusal> {
    screen_with(app, caller, message, true).await
}

/// A list request's screen: dlp, and a critical finding refuses it. Lists are not plumbing, so
/// `plumbing_decision` does not judge them (`visible` judges their items).
pub(super) async fn screen_list(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
) -> Result<(), Refusal> {
    screen_with(app, caller, message, false).await
}

async fn screen_with(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    plumbing_decision: bool,
) -> Result<(), Refusal> {
    let findings = crate::telemetry::stage(&app.metrics, Stage::Dlp)
        .in_scope(|| super::stages::dlp(app, caller, &message.value));
    let method = message.method().unwrap_or("response");
    let decision =
        if let Some(critical) = findings.iter().find(|f| f.severity == Severity::Critical) {
            Decision::plumbing_refused(format!(
                "the message carries {} at {}",
                critical.kind, critical.path
            ))
        } else if !plumbing_decision {
            return Ok(());
        } else {
            let base = InputBase::new(
                caller,
                method,
                caller.session.as_ref().map(|s| s.calls()).unwrap_or(0),
            );
            let input = super::PolicyInput {
                params: message.params(),
                ..base.input(&findings)
            };
            crate::telemetry::stage(&app.metrics, Stage::Policy).in_scope(|| {
                app.with_evaluator(|ev| ev.plumbing_decision(input.to_value()))
                    .unwrap_or_else(|e| {
                        app.metrics.policy_errors.inc();
                        Decision::from_error(&e)
                    })
            })
        };
    if decision.verdict() == Verdict::Allow {
        return Ok(());
    }
    let draft = toolgate_engine::chain::EventDraft {
        policy_id: Some(decision.policy_id().to_owned()),
        policy_reason: Some(decision.reason().to_owned()),
        dlp_findings: serde_json::to_value(&findings).unwrap_or(json!([])),
        dlp_action: Some("blocked".into()),
        ..super::stages::refused_draft(app, caller, method)
    };
    super::stages::record_refused(app, caller, method, draft).await;
    Err(Refusal::Denied {
        id: message.id().cloned().filter(|_| message.method().is_some()),
        decision,
    })
}
