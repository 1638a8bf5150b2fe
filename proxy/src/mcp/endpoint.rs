//! `POST`/`GET`/`DELETE /mcp/{upstream}`: MCP streamable HTTP in both protocol eras.
//!
//! Runs the jwt and session stages for every request, then hands `tools/call` to [`crate::pipeline`], filters
//! `tools/list` through the policy's `visible`, and passes everything else through untouched. Decisions are
//! made on the JSON-RPC body, never on `Mcp-*` headers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use toolgate_engine::chain::EventDraft;
use toolgate_engine::input::{classify, PolicyInput, RequestInfo};

use super::jsonrpc::{self, Kind, Message};
use super::session::{new_session_id, Session, SessionError};
use super::upstream::Upstream;
use super::{sse, PROTOCOL_VERSIONS};
use crate::app::App;
use crate::auth::AgentIdentity;
use crate::pipeline::{self, Caller, Forwarded, Stage};
use crate::server::{empty, full, json_response, jsonrpc_reply, stream_response, Body};

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// Largest upstream `tools/list` answer toolgate buffers to filter (it must see the whole list).
const MAX_TOOLS_LIST_BYTES: usize = 16 * 1024 * 1024;

pub async fn handle(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Response<Body> {
    // jwt: who is calling. Before anything else, so an unauthenticated client learns nothing, not even
    // whether the upstream exists.
    let identity = crate::telemetry::stage(&app.metrics, Stage::Jwt).in_scope(|| {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        app.auth.verify(header)
    });
    let identity = match identity {
        Ok(id) => id,
        Err(e) => {
            tracing::info!(
                upstream = upstream_name,
                reason = e.description(),
                "agent authentication failed"
            );
            return unauthorized(&e, base_url, upstream_name);
        }
    };
    tracing::Span::current().record("agent_id", identity.id.as_str());
    crate::telemetry::traces::annotate(&[("toolgate.agent_id", &identity.id)]);
    let Some(upstream) = app.upstreams.get(upstream_name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "unknown_upstream", "message": format!("no upstream named {upstream_name:?}") }),
        );
    };
    if app.config.agents.disabled.contains(&identity.id) {
        tracing::warn!(agent = %identity.id, "disabled agent refused");
        return jsonrpc_reply(
            StatusCode::FORBIDDEN,
            jsonrpc::error_response(
                None,
                jsonrpc::POLICY_DENIED,
                format!("agent {} is disabled", identity.id),
                None,
            ),
        );
    }
    match *req.method() {
        Method::POST => post(app, &identity, upstream_name, upstream, req, trace_id).await,
        Method::GET => get(app, &identity, upstream_name, upstream, req).await,
        Method::DELETE => delete(app, &identity, upstream_name, upstream, req, trace_id).await,
        _ => {
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "method_not_allowed", "message": "use POST, GET or DELETE" }),
            );
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, POST, DELETE"));
            resp
        }
    }
}

async fn post(
    app: &Arc<App>,
    identity: &AgentIdentity,
    upstream_name: &str,
    upstream: &Upstream,
    req: Request<Incoming>,
    trace_id: String,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if !is_json(&headers) {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            jsonrpc::INVALID_REQUEST,
            "Content-Type must be application/json",
        );
    }
    if !accepts_mcp(&headers) {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            jsonrpc::INVALID_REQUEST,
            "Accept must list application/json and text/event-stream",
        );
    }
    let raw = match http_body_util::Limited::new(body, app.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                jsonrpc::INVALID_REQUEST,
                &format!("body larger than {} bytes", app.config.max_body_bytes),
            );
        }
        Err(_) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                jsonrpc::PARSE_ERROR,
                "could not read the request body",
            )
        }
    };
    let message = match Message::parse(&raw) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    };

    // The server span is named after the method only now that it is parsed.
    if let Some(method) = message.method() {
        crate::telemetry::traces::name_request(method);
    }
    if let Some(id) = message.id() {
        let id = id
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| id.to_string());
        crate::telemetry::traces::annotate(&[("rpc.jsonrpc.request_id", &id)]);
    }

    // session: the presented session is known and bound to this agent.
    let session = crate::telemetry::stage(&app.metrics, Stage::Session).in_scope(|| match headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(sid) if message.method() != Some("initialize") => {
            app.sessions.get(upstream_name, sid, &identity.id).map(Some)
        }
        _ => Ok(None),
    });
    let session = match session {
        Ok(s) => s,
        Err(e) => return session_error(&message, e),
    };
    if let Some(s) = &session {
        crate::telemetry::traces::annotate(&[("mcp.session.id", &s.id)]);
    }
    let protocol_version = message
        .meta_protocol_version()
        .map(str::to_owned)
        .or_else(|| session.as_ref().and_then(|s| s.protocol_version.clone()))
        .or_else(|| {
            headers
                .get(PROTOCOL_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let caller = Caller {
        identity,
        session,
        upstream_name,
        upstream,
        protocol_version,
        trace_id,
    };

    match message.method() {
        Some("initialize") => initialize(app, &caller, &message, &headers, raw).await,
        Some("tools/call") => pipeline::tools_call(app, &caller, &message, &headers, raw).await,
        Some("tools/list") => tools_list(app, &caller, &message, &headers, raw).await,
        _ => passthrough(app, &caller, &message, &headers, raw).await,
    }
}

/// `initialize` opens a session bound to the agent. Over HTTP the upstream mints the session id; a stdio child is
/// shared by all agents, so toolgate answers from the child's own initialize result and mints the id itself.
async fn initialize(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Response<Body> {
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
            let forwarded = pipeline::send_upstream(app, caller, &headers, raw, message).await;
            let Ok(Forwarded::Http(resp)) = forwarded else {
                return upstream_failure(app, caller, message, forwarded.err());
            };
            count_upstream(app, caller.upstream_name, resp.status());
            if resp.status().is_success() {
                if let Some(sid) = resp
                    .headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    let negotiated = resp
                        .headers()
                        .get(PROTOCOL_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                        .or(requested);
                    if let Err(e) = open_session(app, caller, sid.to_owned(), negotiated).await {
                        return session_error(message, e);
                    }
                }
            }
            stream_response(resp)
        }
        Upstream::Stdio(child) => {
            let Some(id) = message.id() else {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    jsonrpc::INVALID_REQUEST,
                    "initialize must be a request",
                );
            };
            let mut result = child.initialize_result();
            let version = requested
                .filter(|v| PROTOCOL_VERSIONS.contains(&v.as_str()))
                .unwrap_or_else(|| "2025-11-25".to_owned());
            result["protocolVersion"] = Value::String(version.clone());
            let sid = new_session_id();
            if let Err(e) = open_session(app, caller, sid.clone(), Some(version.clone())).await {
                return session_error(message, e);
            }
            let mut resp = jsonrpc_reply(StatusCode::OK, jsonrpc::result_response(id, result));
            resp.headers_mut().insert(
                SESSION_HEADER,
                HeaderValue::from_str(&sid).expect("hex is a valid header"),
            );
            resp.headers_mut().insert(
                PROTOCOL_HEADER,
                HeaderValue::from_str(&version).unwrap_or(HeaderValue::from_static("2025-11-25")),
            );
            resp
        }
    }
}

async fn open_session(
    app: &App,
    caller: &Caller<'_>,
    sid: String,
    version: Option<String>,
) -> Result<(), SessionError> {
    let session = Session::new(
        sid,
        caller.upstream_name.to_owned(),
        caller.identity.id.clone(),
        caller.identity.tenant_id.clone(),
        version.clone(),
    );
    let session = app.sessions.insert(session)?;
    record_session_event(
        app,
        caller,
        "session_start",
        &session,
        json!({ "protocol_version": version }),
    )
    .await;
    Ok(())
}

/// Session start and end are audit events. They are awaited (durable) but a failure does not undo the
/// session: it is counted and logged by the writer.
async fn record_session_event(
    app: &App,
    caller: &Caller<'_>,
    event_type: &str,
    session: &Session,
    extra: Value,
) {
    let draft = EventDraft {
        event_type: event_type.to_owned(),
        agent_id: Some(session.agent_id.clone()),
        session_id: Some(session.id.clone()),
        tenant_id: session.tenant_id.clone(),
        mcp_server: Some(session.upstream.clone()),
        trace_id: Some(caller.trace_id.clone()),
        dlp_findings: json!([]),
        extra,
        ..EventDraft::default()
    };
    if let Err(e) = app.audit.append(draft).await {
        tracing::error!(agent = %session.agent_id, error = %e, "audit write failed");
    }
}

/// `tools/list`, filtered through `data.toolgate.visible`: the answer is buffered (it must be complete to filter),
/// each tool judged as a call without arguments, and hidden tools removed. An evaluation error hides the tool.
async fn tools_list(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Response<Body> {
    let forwarded = pipeline::send_upstream(app, caller, headers, raw, message).await;
    match forwarded {
        Ok(Forwarded::Json(mut value)) => {
            count_upstream(app, caller.upstream_name, StatusCode::OK);
            filter_tools(app, caller, &mut value);
            jsonrpc_reply(StatusCode::OK, value)
        }
        Ok(Forwarded::Http(resp)) => {
            count_upstream(app, caller.upstream_name, resp.status());
            let (mut parts, body) = resp.into_parts();
            let is_sse = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let bytes = match http_body_util::Limited::new(body, MAX_TOOLS_LIST_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return upstream_failure(
                        app,
                        caller,
                        message,
                        Some(pipeline::ForwardError::Unavailable(format!(
                            "reading tools/list: {e}"
                        ))),
                    )
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            let filtered = if is_sse {
                let mut out = String::new();
                for mut event in sse::parse(&text) {
                    if let Ok(mut value) = serde_json::from_str::<Value>(&event.data) {
                        if value.get("id") == message.id() && value.get("result").is_some() {
                            filter_tools(app, caller, &mut value);
                            event.data = value.to_string();
                        }
                    }
                    out.push_str(&sse::frame(&event));
                }
                out
            } else {
                match serde_json::from_str::<Value>(&text) {
                    Ok(mut value) => {
                        filter_tools(app, caller, &mut value);
                        value.to_string()
                    }
                    Err(_) => text.into_owned(),
                }
            };
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            parts.headers.remove(hyper::header::TRANSFER_ENCODING);
            let mut resp = Response::from_parts(parts, full(filtered));
            keep_mcp_headers(resp.headers_mut());
            resp
        }
        Err(e) => upstream_failure(app, caller, message, Some(e)),
    }
}

fn filter_tools(app: &App, caller: &Caller<'_>, response: &mut Value) {
    let Some(tools) = response
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let agent = pipeline::agent_info(caller.identity);
    let session = pipeline::session_info(
        caller.session.as_deref(),
        caller.session.as_ref().map(|s| s.calls()).unwrap_or(0),
    );
    let request = RequestInfo {
        method: "tools/list".into(),
        upstream: caller.upstream_name.into(),
        protocol_version: caller.protocol_version.clone(),
    };
    let now = crate::telemetry::now_rfc3339();
    let workdir = app.workdir(caller.upstream_name);
    tools.retain(|tool| {
        let Some(name) = tool.get("name").and_then(Value::as_str) else { return false };
        let class = classify(name, &Value::Null, workdir);
        let input = PolicyInput { agent: &agent, session: &session, request: &request, tool_name: name, arguments: None, class: &class, findings: &[], behavior_score: 0.0, now: &now };
        match app.with_evaluator(|ev| ev.visible(input.to_value())) {
            Ok(visible) => visible,
            Err(e) => {
                app.metrics.policy_errors.inc();
                tracing::error!(tool = name, error = %e, "policy visible evaluation failed: tool hidden");
                false
            }
        }
    });
}

/// Everything but initialize, tools/call and tools/list: forwarded untouched, answered as the upstream answers
/// (including an upstream's 400 to `server/discover`, which clients use to fall back to the older era).
async fn passthrough(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    headers: &HeaderMap,
    raw: Bytes,
) -> Response<Body> {
    match (caller.upstream, &message.kind) {
        (Upstream::Stdio(child), Kind::Notification { method }) => {
            // The child's session is toolgate's own; the agent's lifecycle notifications are not the child's.
            if method != "notifications/initialized"
                && !method.starts_with("notifications/cancelled")
            {
                let _ = child.notify(message.value.clone()).await;
            }
            accepted()
        }
        // A stdio child's requests to clients are answered by toolgate (it cannot route them to one agent),
        // so an agent's response has nowhere to go.
        (Upstream::Stdio(_), Kind::Response { .. }) => accepted(),
        _ => match pipeline::send_upstream(app, caller, headers, raw, message).await {
            Ok(Forwarded::Json(v)) => {
                // A stdio child answered: counted like an HTTP upstream's 2xx.
                count_upstream(app, caller.upstream_name, StatusCode::OK);
                jsonrpc_reply(StatusCode::OK, v)
            }
            Ok(Forwarded::Http(resp)) => {
                count_upstream(app, caller.upstream_name, resp.status());
                stream_response(resp)
            }
            Err(e) => upstream_failure(app, caller, message, Some(e)),
        },
    }
}

/// `GET`: the server-to-client SSE stream of a 2025-era session, streamed through from an HTTP upstream.
async fn get(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    upstream: &Upstream,
    req: Request<Incoming>,
) -> Response<Body> {
    let Upstream::Http(http) = upstream else {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed", "message": "this upstream offers no server-to-client stream" }),
        );
        resp.headers_mut()
            .insert("allow", HeaderValue::from_static("POST, DELETE"));
        return resp;
    };
    if let Some(sid) = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        if let Err(e) = app.sessions.get(upstream_name, sid, &identity.id) {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "session_not_found", "message": e.to_string() }),
            );
        }
    }
    match http.send(Method::GET, req.headers(), Bytes::new()).await {
        Ok(resp) => {
            count_upstream(app, upstream_name, resp.status());
            stream_response(resp)
        }
        Err(e) => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({ "error": "upstream_unavailable", "message": e.to_string() }),
        ),
    }
}

/// `DELETE`: ends the agent's session (and the upstream's, over HTTP).
async fn delete(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    upstream: &Upstream,
    req: Request<Incoming>,
    trace_id: String,
) -> Response<Body> {
    let Some(sid) = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "missing_session", "message": "DELETE needs an Mcp-Session-Id header" }),
        );
    };
    let session = match app.sessions.remove(upstream_name, &sid, &identity.id) {
        Ok(s) => s,
        Err(e) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "session_not_found", "message": e.to_string() }),
            )
        }
    };
    let caller = Caller {
        identity,
        session: Some(session.clone()),
        upstream_name,
        upstream,
        protocol_version: session.protocol_version.clone(),
        trace_id,
    };
    record_session_event(
        app,
        &caller,
        "session_end",
        &session,
        json!({ "reason": "client_delete", "calls": session.calls() }),
    )
    .await;
    match upstream {
        Upstream::Http(http) => {
            match http.send(Method::DELETE, req.headers(), Bytes::new()).await {
                Ok(resp) => stream_response(resp),
                Err(e) => json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({ "error": "upstream_unavailable", "message": e.to_string() }),
                ),
            }
        }
        Upstream::Stdio(_) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(empty())
            .expect("valid response"),
    }
}

fn upstream_failure(
    app: &App,
    caller: &Caller<'_>,
    message: &Message,
    error: Option<pipeline::ForwardError>,
) -> Response<Body> {
    let error = error.unwrap_or_else(|| {
        pipeline::ForwardError::Unavailable("unexpected upstream answer".into())
    });
    app.metrics
        .upstream_requests
        .with_label_values(&[caller.upstream_name, error.status_label()])
        .inc();
    tracing::warn!(upstream = caller.upstream_name, error = %error, "upstream request failed");
    match message.id() {
        Some(id) => jsonrpc_reply(
            StatusCode::OK,
            jsonrpc::error_response(Some(id), error.code(), error.to_string(), None),
        ),
        None => json_response(
            StatusCode::BAD_GATEWAY,
            &json!({ "error": "upstream_unavailable", "message": error.to_string() }),
        ),
    }
}

fn count_upstream(app: &App, upstream: &str, status: StatusCode) {
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

fn session_error(message: &Message, e: SessionError) -> Response<Body> {
    let status = match e {
        SessionError::NotFound => StatusCode::NOT_FOUND,
        SessionError::Full => StatusCode::SERVICE_UNAVAILABLE,
        // The upstream reused a session id bound to another agent: its fault, and nothing is bound.
        SessionError::Taken => StatusCode::BAD_GATEWAY,
    };
    jsonrpc_reply(
        status,
        jsonrpc::error_response(message.id(), jsonrpc::INVALID_REQUEST, e.to_string(), None),
    )
}

fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    jsonrpc_reply(status, jsonrpc::error_response(None, code, message, None))
}

fn accepted() -> Response<Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(empty())
        .expect("valid response")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// MCP clients must accept both JSON and SSE answers; `*/*` accepts both too.
fn accepts_mcp(headers: &HeaderMap) -> bool {
    let mut json = false;
    let mut sse = false;
    for value in headers.get_all(ACCEPT) {
        for item in value.to_str().unwrap_or("").split(',') {
            match item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "application/json" => json = true,
                "text/event-stream" => sse = true,
                "*/*" => {
                    json = true;
                    sse = true
                }
                _ => {}
            }
        }
    }
    json && sse
}

/// Keeps only the headers of an upstream answer that mean something to an MCP client.
pub fn keep_mcp_headers(headers: &mut HeaderMap) {
    let keep = [
        "content-type",
        "content-length",
        "transfer-encoding",
        SESSION_HEADER,
        PROTOCOL_HEADER,
        "cache-control",
        "last-event-id",
    ];
    let drop: Vec<_> = headers
        .keys()
        .filter(|k| !keep.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
}

/// 401 with `WWW-Authenticate: Bearer … resource_metadata="…"` (RFC 6750, RFC 9728).
fn unauthorized(e: &crate::auth::AuthError, base_url: &str, upstream_name: &str) -> Response<Body> {
    let metadata = format!("{base_url}/.well-known/oauth-protected-resource/mcp/{upstream_name}");
    let challenge = match e {
        crate::auth::AuthError::MissingToken => format!("Bearer resource_metadata=\"{metadata}\""),
        _ => format!(
            "Bearer error=\"{}\", error_description=\"{}\", resource_metadata=\"{metadata}\"",
            e.oauth_error(),
            e.description()
        ),
    };
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": e.oauth_error(), "message": e.description() }),
    );
    resp.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    );
    resp
}

/// RFC 9728 protected-resource metadata for `/mcp/{upstream}`.
pub fn resource_metadata(app: &App, base_url: &str, upstream_name: &str) -> Response<Body> {
    if !app.upstreams.contains_key(upstream_name) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "unknown_upstream" }),
        );
    }
    let mut doc = json!({
        "resource": format!("{base_url}/mcp/{upstream_name}"),
        "bearer_methods_supported": ["header"],
        "resource_name": format!("toolgate: {upstream_name}"),
    });
    if let Some(issuer) = &app.config.auth.issuer {
        doc["authorization_servers"] = json!([issuer]);
    }
    json_response(StatusCode::OK, &doc)
}
