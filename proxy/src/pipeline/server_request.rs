//! Requests an upstream sends to the agent through toolgate (`sampling/createMessage`, `elicitation/create`,
//! `roots/list`, or any other): judged like the agent's own requests, with `request.direction =
//! server_to_client`: dlp -> policy -> [escalate] -> audit (write-ahead) -> deliver to the agent. A refused one
//! never reaches the agent: toolgate answers the upstream with the JSON-RPC error instead.

use std::sync::Arc;

use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::{json, Value};
use toolgate_engine::canonical::input_hash;
use toolgate_engine::input::Direction;
use toolgate_engine::policy::{Decision, Verdict};

use super::record::Record;
use super::refusal::Refusal;
use super::{Caller, InputBase};
use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::session::Session;
use crate::mcp::stdio::{Owner, Unroutable, UnroutableReason};
use crate::mcp::upstream::Upstream;
use crate::telemetry::Stage;

/// What judging a server request needs, owned, so a stream's pump task can judge requests as they arrive.
#[derive(Clone)]
pub(super) struct ServerRequests {
    pub app: Arc<App>,
    pub identity: AgentIdentity,
    pub session: Option<Arc<Session>>,
    pub upstream_name: String,
    pub protocol_version: Option<String>,
    pub trace_id: String,
    /// The run of the agent's request these server requests arrive within: theirs too.
    pub run_id: Option<Arc<str>>,
    /// The agent's request headers: an answer toolgate gives the upstream in the agent's place travels in the
    /// same session.
    pub headers: HeaderMap,
}

impl ServerRequests {
    pub(super) fn of(app: &Arc<App>, caller: &Caller<'_>, headers: &HeaderMap) -> ServerRequests {
        ServerRequests {
            app: app.clone(),
            identity: caller.identity.clone(),
            session: caller.session.clone(),
            upstream_name: caller.upstream_name.to_owned(),
            protocol_version: caller.protocol_version.clone(),
            trace_id: caller.trace_id.clone(),
            run_id: caller.run_id.clone(),
            headers: answer_headers(headers),
        }
    }

    /// Judges one server request that arrived on a stream; true when it may be delivered to the agent. A
    /// refused request is answered to the upstream here.
    pub(super) async fn judge(&self, message: &Value) -> bool {
        let Some(upstream) = self.app.upstreams.get(&self.upstream_name) else {
            return false;
        };
        match self.decide(message).await {
            Ok(()) => true,
            Err(refusal) => {
                self.answer_upstream(upstream, refusal).await;
                false
            }
        }
    }

    /// dlp -> policy -> [escalate] -> audit (write-ahead) for one request the upstream sends the agent, in a
    /// stream or inside a 2026-07-28 `input_required` result. `Ok` when it may reach the agent.
    pub(super) async fn decide(&self, message: &Value) -> Result<(), Refusal> {
        let app = &*self.app;
        let Some(upstream) = app.upstreams.get(&self.upstream_name) else {
            return Err(Refusal::UnknownUpstream {
                name: self.upstream_name.clone(),
            });
        };
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id = message.get("id");
        let caller = Caller {
            identity: &self.identity,
            session: self.session.clone(),
            upstream_name: &self.upstream_name,
            upstream,
            protocol_version: self.protocol_version.clone(),
            trace_id: self.trace_id.clone(),
            direction: Direction::ServerToClient,
            run_id: self.run_id.clone(),
        };
        let params = message.get("params");
        let calls = caller.session.as_ref().map(|s| s.calls()).unwrap_or(0);
        let base = InputBase::new(&caller, method, calls);
        let findings = crate::telemetry::stage(&app.metrics, Stage::Dlp)
            .in_scope(|| super::stages::dlp(app, &caller, message));
        let input = super::PolicyInput {
            params,
            ..base.input(&findings)
        };
        let (decision, revision) = crate::telemetry::stage(&app.metrics, Stage::Policy)
            .in_scope(|| super::stages::policy(app, &caller, method, input.to_value()));
        let subject = super::subject::Subject::Params;
        super::stages::observe_decision(app, &caller, method, &subject, &decision);
        let record = Record {
            app,
            caller: &caller,
            method,
            tool_name: None,
            action: None,
            target: None,
            input_hash: input_hash(params.unwrap_or(&Value::Null)),
            findings: &findings,
            findings_json: serde_json::to_value(&findings).unwrap_or(json!([])),
            revision: &revision,
            // A server's request is not the agent's own call: no baseline judges it.
            behavioral_score: super::record::score_text(input.behavior.score),
        };
        let allowed = match decision.verdict() {
            Verdict::Allow => Ok((decision, json!({}))),
            Verdict::Deny => {
                let _ = record.append("policy_deny", &decision, json!({})).await;
                Err(Refusal::Denied {
                    id: id.cloned(),
                    decision,
                })
            }
            Verdict::Escalate => {
                super::escalate::hold(&record, id, &decision, params.unwrap_or(&Value::Null))
                    .await
                    .map(|a| (a.decision, a.extra))
            }
        };
        let (decision, extra) = allowed?;
        // audit (write-ahead): the agent sees the request only once its decision is durable.
        record
            .append("request", &decision, extra)
            .await
            .map(|_| ())
            .map_err(|_| Refusal::AuditUnavailable { id: id.cloned() })
    }

    /// A 2026-07-28 `input_required` result carries the requests the upstream needs the agent to fulfil
    /// (`inputRequests`, keyed by the server): each is judged like a streamed server request. Refused, the
    /// whole answer becomes the refusal's JSON-RPC error (the stateless upstream keeps no pending request to
    /// answer); an unexpected shape is refused too.
    pub(super) async fn input_required(&self, answer: &mut Value) {
        if !is_input_required(answer) {
            return;
        }
        let id = answer.get("id").cloned();
        let requests: Vec<Value> = match answer["result"].get("inputRequests") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map.values().cloned().collect(),
            Some(_) => {
                *answer = Refusal::Upstream {
                    id,
                    error: super::forward::ForwardError::Unavailable(
                        "an input_required result whose inputRequests is not an object".into(),
                    ),
                }
                .into_message();
                return;
            }
        };
        for request in requests {
            // Judged with the answer's id, so a refusal echoes the agent's own request.
            let mut message = request;
            if let Value::Object(map) = &mut message {
                map.insert("id".into(), id.clone().unwrap_or(Value::Null));
            }
            if let Err(refusal) = self.decide(&message).await {
                *answer = refusal.into_message();
                return;
            }
        }
    }

    /// An allowed server request could not be delivered: the agent's stream is gone. The upstream gets
    /// `-31003` in the agent's place.
    pub(super) async fn agent_gone(&self, message: &Value) {
        let Some(upstream) = self.app.upstreams.get(&self.upstream_name) else {
            return;
        };
        let refusal = Refusal::Upstream {
            id: message.get("id").cloned(),
            error: super::forward::ForwardError::Unavailable(
                "the agent's stream is gone: the request was not delivered".into(),
            ),
        };
        self.answer_upstream(upstream, refusal).await;
    }

    /// A request of a stdio child's that could not be routed to one agent, told to this agent's stream.
    pub(super) async fn record_unroutable(&self, notice: &Unroutable) {
        let Some(upstream) = self.app.upstreams.get(&self.upstream_name) else {
            return;
        };
        let caller = Caller {
            identity: &self.identity,
            session: self.session.clone(),
            upstream_name: &self.upstream_name,
            upstream,
            protocol_version: self.protocol_version.clone(),
            trace_id: self.trace_id.clone(),
            direction: Direction::ServerToClient,
            run_id: self.run_id.clone(),
        };
        record_unroutable(&self.app, &caller, notice).await;
    }

    /// Answers a refused server request to the upstream, as the agent would have answered it.
    async fn answer_upstream(&self, upstream: &Upstream, refusal: Refusal) {
        let http = match upstream {
            Upstream::Http(http) => http,
            Upstream::Stdio(child) => {
                // Written back under the child's own id, and only for a request delivered to this agent.
                let owner = owner_of(&self.identity);
                if let Err(e) = child.answer(&owner, refusal.into_message()).await {
                    tracing::warn!(upstream = %self.upstream_name, error = %e, "could not answer a refused server request");
                }
                return;
            }
        };
        let response = refusal.into_response();
        let body = match http_body_util::BodyExt::collect(response.into_body()).await {
            Ok(b) => b.to_bytes(),
            Err(_) => return,
        };
        if let Err(e) = http.send(Method::POST, &self.headers, body).await {
            tracing::warn!(upstream = %self.upstream_name, error = %e, "could not answer a refused server request");
        }
    }
}

/// A 2026-07-28 `input_required` result: the upstream asks the agent for something before it answers.
pub(super) fn is_input_required(answer: &Value) -> bool {
    answer
        .get("result")
        .and_then(|r| r.get("resultType"))
        .and_then(Value::as_str)
        == Some("input_required")
}

/// Judges the requests of an `input_required` answer to `caller`'s request; any other answer costs one look.
pub(super) async fn judge_input_required(
    app: &Arc<App>,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    answer: &mut Value,
) {
    if is_input_required(answer) {
        ServerRequests::of(app, caller, headers)
            .input_required(answer)
            .await;
    }
}

/// The agent identity a stdio child's requests are routed by: tenant and subject (one child serves every agent).
pub(super) fn owner_of(identity: &AgentIdentity) -> Owner {
    let key = serde_json::to_string(&(&identity.tenant_id, &identity.id)).unwrap_or_default();
    Owner::new(&key)
}

/// A request of a stdio child's that toolgate refused to route (the child got `-31001`): recorded in the name of
/// an agent that had a request in flight, as a deny with `extra.direction = server_to_client` and `extra.reason`.
pub(super) async fn record_unroutable(app: &App, caller: &Caller<'_>, notice: &Unroutable) {
    let caller = Caller {
        identity: caller.identity,
        session: caller.session.clone(),
        upstream_name: caller.upstream_name,
        upstream: caller.upstream,
        protocol_version: caller.protocol_version.clone(),
        trace_id: caller.trace_id.clone(),
        direction: Direction::ServerToClient,
        run_id: caller.run_id.clone(),
    };
    let decision = unroutable_decision(notice.reason);
    let mut draft = super::stages::refused_draft(app, &caller, &notice.method);
    draft.policy_id = Some(decision.policy_id().to_owned());
    draft.policy_reason = Some(decision.reason().to_owned());
    if let Value::Object(extra) = &mut draft.extra {
        extra.insert("direction".into(), json!("server_to_client"));
        extra.insert("reason".into(), json!(notice.reason.as_str()));
    }
    tracing::info!(upstream = caller.upstream_name, agent = %caller.identity.id, reason = notice.reason.as_str(), "a server-to-client request was refused: it could not be routed to one agent");
    super::stages::record_refused(app, &caller, &notice.method, draft).await;
}

/// The deny a refused routing is recorded as.
pub(super) fn unroutable_decision(reason: UnroutableReason) -> Decision {
    Decision::routing_refused(
        "toolgate.server_request.unroutable",
        format!("{}: {}", reason.as_str(), reason.describe()),
    )
}

/// The agent's headers an answer in its place may carry: its session and protocol version, never the
/// per-request `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` mirrors of the request it sent.
fn answer_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
    ] {
        for value in headers.get_all(name) {
            kept.append(name, value.clone());
        }
    }
    kept
}
