//! One pipeline for every message an agent sends through toolgate:
//!
//! ```text
//! jwt -> [kill switch] -> message -> session -> run -> route
//!   judged:   dlp -> policy -> [escalate] -> audit (write-ahead) -> forward -> result -> audit (outcome)
//!   plumbing: dlp (a critical finding refuses) -> plumbing_decision -> forward
//!   list:     forward -> visible per item (tool definitions pinned) -> audit (list)
//! ```
//!
//! [`run`] reads top to bottom in that order; each stage is a function of its own module, stages do not call each
//! other, and each is timed once (a span and a `toolgate_stage_duration_seconds{stage}` observation). A deny is a
//! `Decision`, not an error; every refusal becomes a response in one place ([`refusal::Refusal::into_response`]).
//! The forward stage demands proofs (`forward::Allowed` + [`crate::audit::Durable`], or the router's
//! `Unjudged`), so nothing reaches an upstream unjudged or unrecorded.

mod escalate;
mod forward;
pub mod headers;
mod intake;
mod lists;
mod plumbing;
mod record;
pub mod refusal;
mod result;
pub mod route;
mod run;
mod server_request;
pub mod sessions;
pub mod stages;
mod stdio_stream;
mod subject;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::canonical::input_hash;
use toolgate_engine::dlp::Finding;
use toolgate_engine::input::{
    AgentInfo, BehaviorInfo, Direction, PolicyInput, RequestInfo, SessionInfo,
};
use toolgate_engine::policy::Verdict;

use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::jsonrpc::Message;
use crate::mcp::session::Session;
use crate::mcp::upstream::Upstream;
use crate::response::{jsonrpc_reply, Body};
use crate::telemetry::Stage;

pub use forward::{ForwardError, Forwarded};
use record::Record;
use refusal::Refusal;
use route::Route;
use subject::Subject;

/// Who is calling, where, and in which session: what the jwt and session stages established.
pub struct Caller<'a> {
    pub identity: &'a AgentIdentity,
    pub session: Option<Arc<Session>>,
    pub upstream_name: &'a str,
    pub upstream: &'a Upstream,
    pub protocol_version: Option<String>,
    pub trace_id: String,
    pub direction: Direction,
    /// The agent run the message belongs to (`workflow_id` of its events, `agent.run_id` of the input).
    pub run_id: Option<Arc<str>>,
}

/// `POST /mcp/{upstream}`: one message through the whole pipeline.
pub async fn run(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Response<Body> {
    match judge(app, upstream_name, req, base_url, trace_id).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn judge(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Result<Response<Body>, Refusal> {
    // jwt: who is calling. Before anything else, so an unauthenticated client learns nothing, not even whether
    // the upstream exists, and its body is never read.
    let identity = stages::jwt(app, req.headers(), base_url, upstream_name)?;
    // The kill switch, before the session is looked up: a disabled agent touches nothing of its sessions.
    stages::not_disabled(app, &identity)?;
    let upstream = stages::upstream(app, upstream_name)?;
    // The message: bytes -> one JSON-RPC message, parsed once, for an authenticated agent only.
    let (headers, message, raw) = intake::read(app, req).await?;
    // Forwarded headers say what the body says, or carry nothing DLP flags: checked before anything else uses them.
    if let Err(bad) = headers::check(&app.scanner, &headers, Some(&message.value)) {
        let method = message.method().unwrap_or("response");
        headers::record(app, &identity, upstream_name, &trace_id, method, &bad).await;
        return Err(Refusal::BadHeader {
            id: message.id().cloned(),
            bad,
        });
    }
    // session: the presented session is known and bound to this agent.
    let session =
        stages::session(app, &identity, upstream_name, &headers, &message, &trace_id).await?;
    let mut caller = Caller {
        protocol_version: stages::protocol_version(&message, session.as_deref(), &headers),
        identity: &identity,
        session,
        upstream_name,
        upstream,
        trace_id,
        direction: Direction::ClientToServer,
        run_id: None,
    };
    // run: the agent run the message names, if any; never another agent's (refused and recorded).
    caller.run_id = run::attach(app, &caller, &headers, &message).await?;
    // The contract's routes: plumbing and lists are answered without `decision`; everything else is judged.
    match Route::of(&message) {
        Route::Initialize(proof) => {
            // Plumbing that opens a session: screened like any other before it does.
            plumbing::screen(app, &caller, &message).await?;
            sessions::initialize(app, &caller, proof, &message, &headers, raw).await
        }
        Route::Plumbing(proof) => {
            plumbing::forward(app, &caller, proof, &message, &headers, raw).await
        }
        Route::AgentAnswer(proof) => {
            plumbing::agent_answer(app, &caller, proof, &message, &headers, raw).await
        }
        Route::List(kind, proof) => {
            lists::answer(app, &caller, kind, proof, &message, &headers, raw).await
        }
        Route::Judged => judged(app, &caller, &message, &headers, raw).await,
    }
}

/// dlp -> policy -> [escalate] -> audit -> forward -> result -> audit, for one judged request.
async fn judged(
    app: &Arc<App>,
    caller: &Caller<'_>,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    let method = message.method().unwrap_or_default();
    let id = message.id();
    let params = message.params();
    let workdir = app.workdir(caller.upstream_name);
    let calls_before = caller.session.as_ref().map(|s| s.count_call()).unwrap_or(0);
    let mut base = InputBase::new(caller, method, calls_before);
    // The declared prompt hash must look like a hash before it is pinned or compared.
    let declared = crate::behaviour::declared_prompt_hash(headers, params);
    let subject = match declared
        .map_err(|message| Refusal::InvalidParams {
            id: id.cloned(),
            message,
        })
        .and_then(|hash| {
            base.agent.prompt_hash = hash;
            Subject::of(message, method, workdir, |name| {
                app.tools.info(caller.upstream_name, name)
            })
        }) {
        Ok(s) => s,
        Err(refusal) => {
            stages::record_invalid(app, caller, method, &refusal).await;
            return Err(refusal);
        }
    };
    if let Some(name) = subject.name() {
        crate::telemetry::traces::annotate(&[("gen_ai.tool.name", name)]);
    }

    // dlp: findings over the whole message (arguments, _meta, any other member of params, the id and the
    // method name); the values never leave the scanner.
    let findings = crate::telemetry::stage(&app.metrics, Stage::Dlp)
        .in_scope(|| stages::dlp(app, caller, &message.value));

    // The agent's behaviour against its own baseline, before the policy so that the policy can use it.
    let behavior = stages::behaviour(app, caller, &subject, &base);

    // policy: the Rego decision on an input built straight from the parsed request.
    let input = PolicyInput {
        tool: subject.tool_input(),
        resource: subject.resource_input(),
        prompt: subject.prompt_input(),
        params,
        behavior,
        ..base.input(&findings)
    };
    let doc = input.to_value();
    let (decision, revision) = crate::telemetry::stage(&app.metrics, Stage::Policy)
        .in_scope(|| stages::policy(app, caller, method, doc.clone()));
    stages::observe_decision(app, caller, method, &subject, &decision);

    let record = Record {
        app,
        caller,
        method,
        tool_name: subject.name(),
        action: subject.action(),
        target: subject.target(),
        input_hash: input_hash(subject.hashed(params)),
        findings: &findings,
        findings_json: serde_json::to_value(&findings).unwrap_or(Value::Array(vec![])),
        revision: &revision,
        behavioral_score: record::score_text(behavior.score),
    };
    // A deny ends here, recorded; an escalation is recorded and held for a reviewer.
    let (decision, extra) = match decision.verdict() {
        Verdict::Deny => {
            // The deny stands whether or not it could be recorded; a failed write is counted by the writer.
            let _ = record.append("policy_deny", &decision, json!({})).await;
            return Err(Refusal::Denied {
                id: id.cloned(),
                decision,
            });
        }
        Verdict::Escalate => {
            let approval = escalate::hold(&record, id, &decision, subject.hashed(params)).await?;
            (approval.decision, approval.extra)
        }
        Verdict::Allow => (decision, json!({})),
    };
    let allowed = forward::Allowed::new(&decision)
        .expect("a deny returned and an escalation was approved above");

    // audit (write-ahead): nothing reaches the upstream before its decision is durable.
    let durable = record
        .append(record.allowed_type(), &decision, extra)
        .await
        .map_err(|_| Refusal::AuditUnavailable { id: id.cloned() })?;

    // forward
    let started = Instant::now();
    let forwarded = crate::telemetry::stage(&app.metrics, Stage::Forward)
        .run(forward::judged(
            app, caller, allowed, &durable, headers, raw, message,
        ))
        .await;

    // result: the answer judged on its way back, then its outcome queued behind the decision event.
    let judge = result::ResultJudge {
        doc,
        upstream: caller.upstream_name.to_owned(),
        tenant_id: caller.identity.tenant_id.clone(),
        agent_id: caller.identity.id.clone(),
    };
    let mut outcome = record.outcome_draft(&decision, &durable);
    match forwarded {
        Ok(forward::Answered::Streaming(stream)) => {
            // A stdio child asked the agent something before answering: the rest streams.
            let reply = stdio_stream::StdioReply {
                server: server_request::ServerRequests::of(app, caller, headers),
                judge,
                outcome: result::PendingOutcome {
                    draft: outcome,
                    started,
                },
                request_id: id.cloned(),
            };
            Ok(stdio_stream::respond(app.clone(), reply, stream))
        }
        Ok(forward::Answered::Now(Forwarded::Json(mut answer))) => {
            count_upstream(app, caller.upstream_name, StatusCode::OK);
            server_request::judge_input_required(app, caller, headers, &mut answer).await;
            let judgement = crate::telemetry::stage(&app.metrics, Stage::Result)
                .in_scope(|| judge.judge(app, &mut answer));
            outcome.response_code = Some(200);
            outcome.latency_us = Some(started.elapsed().as_micros() as i64);
            outcome.error = answer.get("error").map(|e| {
                format!(
                    "upstream JSON-RPC error {}",
                    e.get("code").unwrap_or(&Value::Null)
                )
            });
            result::apply_judgement(&mut outcome, &judgement);
            record::enqueue(app, outcome).await;
            if id.is_none() {
                return Ok(accepted());
            }
            Ok(jsonrpc_reply(StatusCode::OK, answer))
        }
        Ok(forward::Answered::Now(Forwarded::Http(resp))) => {
            count_upstream(app, caller.upstream_name, resp.status());
            // Judged whatever the status: an error answer can carry a secret as well as a result can.
            if resp.status().is_success() && is_sse(resp.headers()) {
                let pending = result::PendingOutcome {
                    draft: outcome,
                    started,
                };
                let judges = result::StreamJudges {
                    result: Some(judge),
                    server: server_request::ServerRequests::of(app, caller, headers),
                };
                return Ok(result::stream(
                    app.clone(),
                    judges,
                    id.cloned(),
                    resp,
                    Some(pending),
                ));
            }
            let reply = result::HttpReply {
                resp,
                outcome,
                started,
                request_id: id.cloned(),
            };
            result::json_http(app, caller, headers, &judge, reply).await
        }
        Err(error) => {
            app.metrics
                .upstream_requests
                .with_label_values(&[caller.upstream_name, error.status_label()])
                .inc();
            tracing::warn!(upstream = caller.upstream_name, error = %error, "upstream request failed");
            outcome.latency_us = Some(started.elapsed().as_micros() as i64);
            outcome.error = Some(error.to_string());
            record::enqueue(app, outcome).await;
            Err(Refusal::Upstream {
                id: id.cloned(),
                error,
            })
        }
    }
}

/// A 2025-era session's `GET` stream: every message the upstream sends the agent outside a request is judged
/// (server requests) or scanned and redacted (notifications) as it streams.
pub fn session_stream(
    app: &Arc<App>,
    identity: &AgentIdentity,
    session: Option<Arc<Session>>,
    upstream_name: &str,
    headers: &HeaderMap,
    trace_id: String,
    resp: Response<Incoming>,
) -> Response<Body> {
    if !resp.status().is_success() || !is_sse(resp.headers()) {
        return crate::response::stream_response(resp);
    }
    let Some(upstream) = app.upstreams.get(upstream_name) else {
        return crate::response::stream_response(resp);
    };
    let caller = Caller {
        identity,
        protocol_version: session
            .as_ref()
            .and_then(|s| s.protocol_version.map(|v| v.as_str().to_owned())),
        session,
        upstream_name,
        upstream,
        trace_id,
        direction: Direction::ServerToClient,
        run_id: None,
    };
    let server = server_request::ServerRequests::of(app, &caller, headers);
    let judges = result::StreamJudges {
        result: None,
        server,
    };
    result::stream(app.clone(), judges, None, resp, None)
}

/// The parts of the Rego input every message of one caller shares.
#[derive(Clone)]
pub(crate) struct InputBase {
    agent: AgentInfo,
    session: SessionInfo,
    request: RequestInfo,
    now: String,
}

impl InputBase {
    /// `calls`: the session's requests before this one.
    pub(crate) fn new(caller: &Caller<'_>, method: &str, calls: u64) -> InputBase {
        InputBase {
            agent: AgentInfo {
                run_id: caller.run_id.as_deref().map(str::to_owned),
                ..agent_info(caller.identity)
            },
            session: SessionInfo {
                id: caller.session.as_ref().and_then(|s| s.id.clone()),
                calls,
                started_at: caller.session.as_ref().map(|s| s.started_at.clone()),
            },
            request: RequestInfo {
                method: method.to_owned(),
                direction: caller.direction,
                upstream: caller.upstream_name.to_owned(),
                protocol_version: caller.protocol_version.clone(),
            },
            now: crate::telemetry::now_rfc3339(),
        }
    }

    /// The input with no subject; callers fill in `tool`, `resource`, `prompt` and `params`.
    pub(crate) fn input<'a>(&'a self, findings: &'a [Finding]) -> PolicyInput<'a> {
        PolicyInput {
            agent: &self.agent,
            session: &self.session,
            request: &self.request,
            tool: None,
            resource: None,
            prompt: None,
            params: None,
            findings,
            behavior: BehaviorInfo::default(),
            response: None,
            now: &self.now,
        }
    }
}

pub fn agent_info(identity: &AgentIdentity) -> AgentInfo {
    AgentInfo {
        id: identity.id.clone(),
        tenant_id: identity.tenant_id.clone(),
        roles: identity.roles.clone(),
        claims: identity.claims.clone(),
        prompt_hash: None,
        run_id: None,
    }
}

pub(crate) fn count_upstream(app: &App, upstream: &str, status: StatusCode) {
    let label = if status.is_success() {
        "ok"
    } else {
        "http_error"
    };
    app.metrics
        .upstream_requests
        .with_label_values(&[upstream, label])
        .inc();
}

fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

pub(crate) fn accepted() -> Response<Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(crate::response::empty())
        .expect("valid response")
}
