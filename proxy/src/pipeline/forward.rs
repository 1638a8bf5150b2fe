//! forward: the only code that sends an agent's request to its upstream.
//!
//! Two doors, each demanding its proof: [`judged`] takes [`Allowed`] (made only from an allow [`Decision`]) and
//! the [`Durable`] acknowledgement of the decision's audit event, so nothing judged reaches an upstream unallowed
//! or unrecorded; [`unjudged`] takes [`Unjudged`], made only by [`super::route::Route`] for protocol plumbing
//! and list requests, which the contract answers without a decision. Both are private to the pipeline.

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Response};
use serde_json::Value;
use toolgate_engine::policy::{Decision, Verdict};

use super::route::Unjudged;
use super::Caller;
use crate::app::App;
use crate::audit::Durable;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::stdio::{Exchange, Inbound, Requester};
use crate::mcp::upstream::Upstream;

/// Proof that the policy allowed a request: only made from a [`Decision`] whose verdict is allow.
pub(super) struct Allowed<'a>(&'a Decision);

impl<'a> Allowed<'a> {
    /// `None` for a deny or an escalation: an escalation becomes allowed only through a reviewer's approval,
    /// which is a new allow `Decision` made by the engine.
    pub(super) fn new(decision: &'a Decision) -> Option<Allowed<'a>> {
        (decision.verdict() == Verdict::Allow).then_some(Allowed(decision))
    }

    pub(super) fn decision(&self) -> &Decision {
        self.0
    }
}

/// The upstream's answer to a judged request.
pub(super) enum Answered {
    Now(Forwarded),
    /// A stdio child sent a request routed to this agent before its answer: the rest of the exchange (that
    /// request first) streams to the agent.
    Streaming(StdioStream),
}

/// A stdio exchange that carries a message of the child's for the agent (a request or a notification) before
/// its answer.
pub(super) struct StdioStream {
    pub first: Inbound,
    pub exchange: Exchange,
}

/// An upstream's answer.
pub enum Forwarded {
    /// A streamable-HTTP answer, not yet read (JSON or SSE).
    Http(Response<hyper::body::Incoming>),
    /// A complete JSON-RPC answer (stdio upstreams).
    Json(Value),
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

/// Sends an allowed request whose decision is durable.
pub(super) async fn judged(
    app: &App,
    caller: &Caller<'_>,
    allowed: Allowed<'_>,
    durable: &Durable,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Result<Answered, ForwardError> {
    tracing::debug!(
        policy_id = allowed.decision().policy_id(),
        audit_seq = durable.seq(),
        "forwarding an allowed request"
    );
    send(app, caller, headers, raw, message, true).await
}

/// Sends a message the contract forwards without a decision.
pub(super) async fn unjudged(
    app: &App,
    caller: &Caller<'_>,
    _proof: Unjudged,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
) -> Result<Forwarded, ForwardError> {
    match send(app, caller, headers, raw, message, false).await? {
        Answered::Now(forwarded) => Ok(forwarded),
        // `delivers = false`: the child's requests are never routed to this exchange.
        Answered::Streaming(_) => Err(ForwardError::Unavailable(
            "a request of the upstream's reached an exchange that cannot deliver it".into(),
        )),
    }
}

/// The agent's exact bytes over HTTP; the parsed message to a stdio child (which needs its own request ids).
/// `delivers`: whether the answer may become a stream that carries the child's requests to the agent.
async fn send(
    app: &App,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    raw: Bytes,
    message: &Message,
    delivers: bool,
) -> Result<Answered, ForwardError> {
    use crate::mcp::http::HttpUpstreamError;
    use crate::mcp::stdio::StdioError;
    match caller.upstream {
        Upstream::Http(http) => match http.send(Method::POST, headers, raw).await {
            Ok(resp) => Ok(Answered::Now(Forwarded::Http(resp))),
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
            if message.id().is_none() {
                return child
                    .notify(request)
                    .await
                    .map(|()| Answered::Now(Forwarded::Json(Value::Null)))
                    .map_err(|e| {
                        ForwardError::Unavailable(format!("{}: {e}", caller.upstream_name))
                    });
            }
            let stdio_error = |e: StdioError| match e {
                StdioError::Timeout => ForwardError::Timeout(caller.upstream_name.to_owned()),
                e => ForwardError::Unavailable(format!("{}: {e}", caller.upstream_name)),
            };
            let requester = Requester {
                owner: super::server_request::owner_of(caller.identity),
                delivers,
            };
            let mut exchange = child
                .exchange(request, Some(requester), timeout)
                .await
                .map_err(stdio_error)?;
            loop {
                match exchange.next().await.map_err(stdio_error)? {
                    Inbound::Response(answer) => return Ok(Answered::Now(Forwarded::Json(answer))),
                    first @ (Inbound::Request(_) | Inbound::Notification(_)) => {
                        return Ok(Answered::Streaming(StdioStream { first, exchange }))
                    }
                    Inbound::Unroutable(notice) => {
                        super::server_request::record_unroutable(app, caller, &notice).await
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_engine::policy::PolicyError;

    #[test]
    fn only_an_allow_decision_makes_allowed() {
        let deny = Decision::from_error(&PolicyError::Undefined);
        assert!(Allowed::new(&deny).is_none());
        let listed = Decision::list_answered("tools/list");
        assert!(Allowed::new(&listed).is_some());
    }
}
