//! `initialize` opens a session bound to the agent (tenant and `sub`); session start and end are audit events, and
//! so is a presented session id that is unknown or another agent's.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::chain::EventDraft;

use super::forward::{self, Forwarded};
use super::refusal::Refusal;
use super::route::Unjudged;
use super::{count_upstream, Caller};
use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::http::HttpUpstream;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::session::{new_session_id, Session, SessionError};
use crate::mcp::upstream::Upstream;
use crate::mcp::{
    ProtocolVersion, NEWEST_STATEFUL as STDIO_VERSION, PROTOCOL_HEADER, SESSION_HEADER,
};
use crate::response::{jsonrpc_reply, Body};

/// Over HTTP the upstream mints the session id; a stdio child is shared by all agents, so toolgate answers from
/// the child's own initialize result and mints the id itself.
pub(super) async fn initialize(
    app: &App,
    caller: &Caller<'_>,
    proof: Unjudged,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Result<Response<Body>, Refusal> {
    let id = message.id().cloned();
    let requested = message
        .params()
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match caller.upstream {
        Upstream::Http(_) => {
            // An initialize opens a new session: a session id sent with it (perhaps another agent's) must not
            // reach the upstream, which could take it as a re-initialisation of that session.
            let mut headers = headers.clone();
            headers.remove(SESSION_HEADER);
            let resp = match forward::unjudged(app, caller, proof, &headers, raw, message).await {
                Ok(Forwarded::Http(resp)) => resp,
                Ok(Forwarded::Json(_)) => unreachable!("an HTTP upstream answers over HTTP"),
                Err(error) => {
                    app.metrics
                        .upstream_requests
                        .with_label_values(&[caller.upstream_name, error.status_label()])
                        .inc();
                    return Err(Refusal::Upstream { id, error });
                }
            };
            count_upstream(app, caller.upstream_name, resp.status());
            if resp.status().is_success() {
                if let Some(sid) = resp
                    .headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    // Kept only if it is a version toolgate knows: the upstream's header and the agent's
                    // request are both text from outside, and the version is stored and audited.
                    let negotiated = resp
                        .headers()
                        .get(PROTOCOL_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(ProtocolVersion::known)
                        .or_else(|| requested.as_deref().and_then(ProtocolVersion::known));
                    open(app, caller, sid.to_owned(), negotiated)
                        .await
                        .map_err(|e| e.refusal(id.clone(), caller.identity))?;
                }
            }
            Ok(crate::response::stream_response(resp))
        }
        Upstream::Stdio(child) => {
            let Some(rpc_id) = id.clone() else {
                return Err(Refusal::InvalidParams {
                    id: None,
                    message: "initialize must be a request".into(),
                });
            };
            let mut result = child.initialize_result();
            let version = requested
                .as_deref()
                .and_then(ProtocolVersion::known)
                .unwrap_or(STDIO_VERSION);
            result["protocolVersion"] = Value::String(version.as_str().to_owned());
            let sid = new_session_id();
            open(app, caller, sid.clone(), Some(version))
                .await
                .map_err(|e| e.refusal(id.clone(), caller.identity))?;
            let mut resp = jsonrpc_reply(StatusCode::OK, jsonrpc::result_response(&rpc_id, result));
            resp.headers_mut().insert(
                SESSION_HEADER,
                HeaderValue::from_str(&sid).expect("hex is a valid header"),
            );
            resp.headers_mut()
                .insert(PROTOCOL_HEADER, HeaderValue::from_static(version.as_str()));
            Ok(resp)
        }
    }
}

/// Why `initialize` opened no session.
enum NotOpened {
    Session(SessionError),
    /// The agent was disabled while the upstream answered: the session was opened and ended again.
    AgentDisabled,
}

impl NotOpened {
    /// The answer to the agent: a disable that landed during `initialize` reads as one that landed before it.
    fn refusal(self, id: Option<Value>, identity: &AgentIdentity) -> Refusal {
        match self {
            NotOpened::Session(error) => Refusal::Session { id, error },
            NotOpened::AgentDisabled => Refusal::AgentDisabled {
                agent_id: identity.id.clone(),
            },
        }
    }
}

/// Binds the session, then looks at the kill switch again. A disable swaps the disabled set before it ends the
/// agent's sessions, so whichever comes second sees the other: either the disable's `end_sessions` finds this
/// session, or this check finds the agent disabled. Checking before the insert would leave a window in which a
/// disable lands, finds nothing to end, and the session is bound after it.
async fn open(
    app: &App,
    caller: &Caller<'_>,
    sid: String,
    version: Option<ProtocolVersion>,
) -> Result<(), NotOpened> {
    let session = Session::new(
        sid.clone(),
        caller.upstream_name.to_owned(),
        caller.identity.key(),
        version,
    );
    let opened = app
        .sessions
        .open(session)
        .await
        .map_err(NotOpened::Session)?;
    for evicted in &opened.evicted {
        // The agent was at `session.max_sessions_per_agent`: its longest-idle session made room.
        record(
            app,
            &caller.trace_id,
            "session_end",
            evicted,
            json!({ "reason": "agent_session_limit", "calls": evicted.calls() }),
        )
        .await;
    }
    let session = opened.session;
    record(
        app,
        &caller.trace_id,
        "session_start",
        &session,
        json!({ "protocol_version": version.map(ProtocolVersion::as_str) }),
    )
    .await;
    let stored =
        crate::agents::StoredKey::of(caller.identity.tenant_id.as_deref(), &caller.identity.id);
    if !app.agents.is_disabled(&stored) {
        return Ok(());
    }
    // `NotFound`: the disable's own `end_sessions` ended it first and recorded that end.
    if let Ok(ended) = app
        .sessions
        .remove(caller.upstream_name, &sid, &caller.identity.key())
        .await
    {
        record(
            app,
            &caller.trace_id,
            "session_end",
            &ended,
            json!({ "reason": "agent_disabled", "calls": ended.calls() }),
        )
        .await;
    }
    if let Upstream::Http(http) = caller.upstream {
        end_upstream_session(http, &sid, version).await;
    }
    tracing::warn!(
        agent = %crate::redaction::loggable(&caller.identity.id),
        "agent disabled while its session opened: the session was ended"
    );
    Err(NotOpened::AgentDisabled)
}

/// Ends the upstream's session as an agent's `DELETE` would, so it does not outlive toolgate's. Best effort: an
/// upstream that does not answer keeps a session no agent can reach through toolgate.
async fn end_upstream_session(http: &HttpUpstream, sid: &str, version: Option<ProtocolVersion>) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(sid) {
        headers.insert(SESSION_HEADER, value);
    }
    if let Some(version) = version {
        headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(version.as_str()));
    }
    if let Err(e) = http.send(Method::DELETE, &headers, Bytes::new()).await {
        tracing::warn!(upstream = %http.name, error = %e, "could not end the upstream session of a disabled agent");
    }
}

/// Session start and end are audit events. They are awaited (durable) but a failure does not undo the
/// session: it is counted and logged by the writer.
pub async fn record(app: &App, trace_id: &str, event_type: &str, session: &Session, extra: Value) {
    let draft = EventDraft {
        trace_id: Some(trace_id.to_owned()),
        ..session.audit_event(event_type, extra)
    };
    if let Err(e) = app.audit.append(draft).await {
        tracing::error!(agent = %session.agent.agent_id, error = %e, "audit write failed");
    }
}

/// A presented `Mcp-Session-Id` that is unknown, expired or another agent's is refused (404 either way), as are
/// several of them (400); each is recorded as a `policy_deny`, so an attempt to use another agent's session shows in the audit log. The
/// presented id is stored only when it names a live session (a real id, not agent-chosen text).
pub async fn record_refused(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    trace_id: &str,
    method: &str,
    presented: &str,
    error: &SessionError,
) {
    let (policy_id, reason, session_id) = match error {
        SessionError::Foreign => (
            "toolgate.session.foreign",
            "the session is bound to another agent",
            Some(presented.to_owned()),
        ),
        SessionError::NotFound => (
            "toolgate.session.unknown",
            "unknown or expired session",
            None,
        ),
        SessionError::BadHeader => (
            "toolgate.session.bad_header",
            "several or unreadable Mcp-Session-Id headers",
            None,
        ),
        // Only `initialize` opens sessions; it records its own refusals. A store that does not answer is
        // logged where it failed.
        SessionError::Full | SessionError::Taken | SessionError::Unavailable => return,
    };
    let draft = EventDraft {
        session_id,
        policy_id: Some(policy_id.into()),
        policy_reason: Some(reason.into()),
        ..super::stages::refused_before_session(app, identity, upstream_name, trace_id, method)
    };
    if let Err(e) = app.audit.append(draft).await {
        tracing::error!(agent = %identity.id, error = %e, "audit write failed");
    }
}
