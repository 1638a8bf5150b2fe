//! Every way an MCP request is refused, and the one place each becomes an HTTP response.
//!
//! Stages return a [`Refusal`] instead of building responses, so the status codes, JSON-RPC codes and messages
//! of the MCP surface are decided here and nowhere else (docs/mcp.md, "Answers").

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::policy::Decision;

use super::forward::ForwardError;
use crate::auth::AuthError;
use crate::mcp::jsonrpc::{self, RpcError};
use crate::mcp::session::SessionError;
use crate::response::{json_response, jsonrpc_reply, Body};

/// Why a request got no upstream answer. `id` is the JSON-RPC id to echo (`None` for a notification).
#[derive(Debug)]
pub enum Refusal {
    /// jwt: 401 with an RFC 6750 / RFC 9728 challenge.
    Unauthenticated {
        error: AuthError,
        metadata_url: String,
    },
    /// The kill switch: 403 before the session is looked up.
    AgentDisabled {
        agent_id: String,
    },
    UnknownUpstream {
        name: String,
    },
    UnsupportedMediaType,
    NotAcceptable,
    BodyTooLarge {
        limit: usize,
    },
    BodyUnreadable,
    /// The body did not arrive within `server.body_read_timeout_seconds` of the head.
    BodyTimeout {
        within: std::time::Duration,
    },
    /// The body is not one acceptable JSON-RPC message.
    Malformed(RpcError),
    Session {
        id: Option<Value>,
        error: SessionError,
    },
    /// A header that would reach the upstream does not say what the body says, or carries data (400, `-32001`).
    BadHeader {
        id: Option<Value>,
        bad: super::headers::BadHeader,
    },
    /// The params do not say what the method needs (`-32602`); audited as a deny.
    InvalidParams {
        id: Option<Value>,
        message: String,
    },
    /// The policy said no (`-31001`), or a reviewer did.
    Denied {
        id: Option<Value>,
        decision: Decision,
    },
    /// Still waiting for a reviewer after the hold time (`-31002`).
    EscalationPending {
        id: Option<Value>,
        escalation_id: String,
        decision: Decision,
    },
    Upstream {
        id: Option<Value>,
        error: ForwardError,
    },
    /// Fail closed: the decision could not be recorded, so nothing was forwarded (`-31005`).
    AuditUnavailable {
        id: Option<Value>,
    },
    /// `result_decision` blocked the answer (`-31006`).
    ResultBlocked {
        id: Option<Value>,
        policy_id: String,
        reason: String,
    },
}

impl Refusal {
    /// The JSON-RPC error a refusal answers with, as a message: for answers written in place of an upstream's
    /// (an `input_required` result, a stream event), built by the same `into_response`.
    pub fn into_message(self) -> serde_json::Value {
        let response = self.into_response();
        let (_, body) = response.into_parts();
        // Every refusal body is a small in-memory JSON buffer; reading it cannot block.
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(body))
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            jsonrpc::error_response(None, jsonrpc::INTERNAL_ERROR, "refused", None)
        })
    }

    pub fn into_response(self) -> Response<Body> {
        match self {
            Refusal::Unauthenticated {
                error,
                metadata_url,
            } => {
                let challenge = match error {
                    AuthError::MissingToken => {
                        format!("Bearer resource_metadata=\"{metadata_url}\"")
                    }
                    _ => format!(
                        "Bearer error=\"{}\", error_description=\"{}\", resource_metadata=\"{metadata_url}\"",
                        error.oauth_error(),
                        error.description()
                    ),
                };
                let mut resp = json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({ "error": error.oauth_error(), "message": error.description() }),
                );
                resp.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
                );
                resp
            }
            Refusal::AgentDisabled { agent_id } => rpc(
                StatusCode::FORBIDDEN,
                None,
                jsonrpc::POLICY_DENIED,
                format!("agent {agent_id} is disabled"),
                None,
            ),
            Refusal::UnknownUpstream { name } => json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "unknown_upstream", "message": format!("no upstream named {name:?}") }),
            ),
            Refusal::UnsupportedMediaType => rpc(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                jsonrpc::INVALID_REQUEST,
                "Content-Type must be application/json".into(),
                None,
            ),
            Refusal::NotAcceptable => rpc(
                StatusCode::NOT_ACCEPTABLE,
                None,
                jsonrpc::INVALID_REQUEST,
                "Accept must list application/json and text/event-stream".into(),
                None,
            ),
            Refusal::BodyTooLarge { limit } => rpc(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                jsonrpc::INVALID_REQUEST,
                format!("body larger than {limit} bytes"),
                None,
            ),
            Refusal::BodyTimeout { within } => rpc(
                StatusCode::REQUEST_TIMEOUT,
                None,
                jsonrpc::INVALID_REQUEST,
                format!(
                    "the request body did not arrive within {} s",
                    within.as_secs()
                ),
                None,
            ),
            Refusal::BodyUnreadable => rpc(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::PARSE_ERROR,
                "could not read the request body".into(),
                None,
            ),
            Refusal::Malformed(e) => {
                rpc(StatusCode::BAD_REQUEST, None, e.code(), e.to_string(), None)
            }
            Refusal::Session { id, error } => {
                let status = match error {
                    SessionError::NotFound | SessionError::Foreign => StatusCode::NOT_FOUND,
                    SessionError::BadHeader => StatusCode::BAD_REQUEST,
                    SessionError::Full | SessionError::Unavailable => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    // The upstream reused a session id bound to another agent: its fault, nothing is bound.
                    SessionError::Taken => StatusCode::BAD_GATEWAY,
                };
                rpc(
                    status,
                    id,
                    jsonrpc::INVALID_REQUEST,
                    error.to_string(),
                    None,
                )
            }
            Refusal::BadHeader { id, bad } => rpc(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::HEADER_MISMATCH,
                bad.message(),
                Some(json!({ "header": bad.header })),
            ),
            Refusal::InvalidParams { id, message } => rpc(
                ok_or_rejected(&id),
                id,
                jsonrpc::INVALID_PARAMS,
                message,
                None,
            ),
            Refusal::Denied { id, decision } => rpc(
                ok_or_forbidden(&id),
                id,
                jsonrpc::POLICY_DENIED,
                format!(
                    "denied by policy {}: {}",
                    decision.policy_id(),
                    decision.reason()
                ),
                Some(json!({ "policy_id": decision.policy_id() })),
            ),
            Refusal::EscalationPending {
                id,
                escalation_id,
                decision,
            } => rpc(
                ok_or_forbidden(&id),
                id,
                jsonrpc::ESCALATION_PENDING,
                format!("escalation pending {escalation_id}: {}", decision.reason()),
                Some(json!({ "escalation_id": escalation_id, "policy_id": decision.policy_id() })),
            ),
            Refusal::Upstream { id, error } => match id {
                Some(id) => rpc(
                    StatusCode::OK,
                    Some(id),
                    error.code(),
                    error.to_string(),
                    None,
                ),
                None => json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({ "error": "upstream_unavailable", "message": error.to_string() }),
                ),
            },
            Refusal::AuditUnavailable { id } => rpc(
                if id.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                id,
                jsonrpc::AUDIT_UNAVAILABLE,
                "audit log unavailable: the request was refused (fail closed)".into(),
                None,
            ),
            Refusal::ResultBlocked {
                id,
                policy_id,
                reason,
            } => rpc(
                StatusCode::OK,
                id,
                jsonrpc::RESULT_BLOCKED,
                format!("result blocked by policy {policy_id}: {reason}"),
                Some(json!({ "policy_id": policy_id })),
            ),
        }
    }
}

/// A request's refusal is a JSON-RPC error in a 200 (MCP's rule for policy outcomes); a notification has no
/// id to answer, so its refusal is an HTTP error.
fn ok_or_forbidden(id: &Option<Value>) -> StatusCode {
    if id.is_some() {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    }
}

fn ok_or_rejected(id: &Option<Value>) -> StatusCode {
    if id.is_some() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn rpc(
    status: StatusCode,
    id: Option<Value>,
    code: i64,
    message: String,
    data: Option<Value>,
) -> Response<Body> {
    jsonrpc_reply(
        status,
        jsonrpc::error_response(id.as_ref(), code, message, data),
    )
}
