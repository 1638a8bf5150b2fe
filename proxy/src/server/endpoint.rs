//! `POST`/`GET`/`DELETE /mcp/{upstream}`: the MCP streamable-HTTP surface, both protocol eras.
//!
//! A `POST` carries one message, which runs the whole [`crate::pipeline`]. `GET` (the server-to-client stream of
//! a 2025-era session) and `DELETE` (ending a session) run the pipeline's jwt, kill-switch and session stages,
//! then reach the upstream directly: they carry no message to judge. Decisions are made on the JSON-RPC body,
//! never on `Mcp-*` headers; the headers that reach an upstream are checked against the body first
//! ([`crate::pipeline::headers`]).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::AgentIdentity;
use crate::mcp::session::SessionError;
use crate::mcp::upstream::Upstream;
use crate::pipeline::{self, refusal::Refusal, stages};
use crate::response::{empty, json_response, stream_response, Body};

pub async fn handle(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Response<Body> {
    let result = match *req.method() {
        Method::POST => return pipeline::run(app, upstream_name, req, base_url, trace_id).await,
        Method::GET => get(app, upstream_name, req, base_url, trace_id).await,
        Method::DELETE => delete(app, upstream_name, req, base_url, trace_id).await,
        _ => {
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "method_not_allowed", "message": "use POST, GET or DELETE" }),
            );
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static("GET, POST, DELETE"));
            return resp;
        }
    };
    result.unwrap_or_else(Refusal::into_response)
}

/// `GET`: the server-to-client SSE stream of a 2025-era session, streamed through from an HTTP upstream.
async fn get(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Result<Response<Body>, Refusal> {
    let identity = stages::jwt(app, req.headers(), base_url, upstream_name)?;
    stages::not_disabled(app, &identity)?;
    let upstream = stages::upstream(app, upstream_name)?;
    forwardable(app, &identity, upstream_name, &req, &trace_id, "GET").await?;
    let Upstream::Http(http) = upstream else {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed", "message": "this upstream offers no server-to-client stream" }),
        );
        resp.headers_mut()
            .insert("allow", HeaderValue::from_static("POST, DELETE"));
        return Ok(resp);
    };
    let session =
        match presented_session(app, &identity, upstream_name, &req, &trace_id, "GET").await {
            Ok(Some(sid)) => match app.sessions.get(upstream_name, &sid, &identity.key()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    // The `method` of the record is the HTTP verb: these requests carry no JSON-RPC message.
                    pipeline::sessions::record_refused(
                        app,
                        &identity,
                        upstream_name,
                        &trace_id,
                        "GET",
                        &sid,
                        &e,
                    )
                    .await;
                    return Ok(session_refusal(e));
                }
            },
            Ok(None) => None,
            Err(resp) => return Ok(resp),
        };
    match http.send(Method::GET, req.headers(), Bytes::new()).await {
        Ok(resp) => {
            pipeline::count_upstream(app, upstream_name, resp.status());
            Ok(pipeline::session_stream(
                app,
                &identity,
                session,
                upstream_name,
                req.headers(),
                trace_id,
                resp,
            ))
        }
        Err(e) => Ok(json_response(
            StatusCode::BAD_GATEWAY,
            &json!({ "error": "upstream_unavailable", "message": e.to_string() }),
        )),
    }
}

/// `DELETE`: ends the agent's session (and the upstream's, over HTTP).
async fn delete(
    app: &Arc<App>,
    upstream_name: &str,
    req: Request<Incoming>,
    base_url: &str,
    trace_id: String,
) -> Result<Response<Body>, Refusal> {
    let identity = stages::jwt(app, req.headers(), base_url, upstream_name)?;
    stages::not_disabled(app, &identity)?;
    let upstream = stages::upstream(app, upstream_name)?;
    forwardable(app, &identity, upstream_name, &req, &trace_id, "DELETE").await?;
    let sid = match presented_session(app, &identity, upstream_name, &req, &trace_id, "DELETE")
        .await
    {
        Ok(Some(sid)) => sid,
        Ok(None) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "missing_session", "message": "DELETE needs an Mcp-Session-Id header" }),
            ))
        }
        Err(resp) => return Ok(resp),
    };
    let session = match app
        .sessions
        .remove(upstream_name, &sid, &identity.key())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            pipeline::sessions::record_refused(
                app,
                &identity,
                upstream_name,
                &trace_id,
                "DELETE",
                &sid,
                &e,
            )
            .await;
            return Ok(session_refusal(e));
        }
    };
    pipeline::sessions::record(
        app,
        &trace_id,
        "session_end",
        &session,
        json!({ "reason": "client_delete", "calls": session.calls() }),
    )
    .await;
    match upstream {
        Upstream::Http(http) => {
            match http.send(Method::DELETE, req.headers(), Bytes::new()).await {
                Ok(resp) => Ok(stream_response(resp)),
                Err(e) => Ok(json_response(
                    StatusCode::BAD_GATEWAY,
                    &json!({ "error": "upstream_unavailable", "message": e.to_string() }),
                )),
            }
        }
        Upstream::Stdio(_) => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(empty())
            .expect("valid response")),
    }
}

/// The headers a `GET` or `DELETE` would forward (`Last-Event-ID`, the protocol version...): checked as a POST's
/// are, with no body for any of them to mirror.
async fn forwardable(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    req: &Request<Incoming>,
    trace_id: &str,
    verb: &str,
) -> Result<(), Refusal> {
    let Err(bad) = pipeline::headers::check(&app.scanner, req.headers(), None) else {
        return Ok(());
    };
    pipeline::headers::record(app, identity, upstream_name, trace_id, verb, &bad).await;
    Err(Refusal::BadHeader { id: None, bad })
}

/// The one `Mcp-Session-Id` of a `GET` or `DELETE`, or the answer refusing several (or an unreadable one).
async fn presented_session(
    app: &App,
    identity: &AgentIdentity,
    upstream_name: &str,
    req: &Request<Incoming>,
    trace_id: &str,
    verb: &str,
) -> Result<Option<String>, Response<Body>> {
    match crate::mcp::session::presented(req.headers()) {
        Ok(sid) => Ok(sid.map(str::to_owned)),
        Err(e) => {
            pipeline::sessions::record_refused(
                app,
                identity,
                upstream_name,
                trace_id,
                verb,
                "",
                &e,
            )
            .await;
            Err(session_refusal(e))
        }
    }
}

/// 404 for an unknown or another agent's session (the same answer), 400 for several session headers.
fn session_refusal(error: SessionError) -> Response<Body> {
    let (status, code) = match error {
        SessionError::BadHeader => (StatusCode::BAD_REQUEST, "bad_session_header"),
        SessionError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable"),
        _ => (StatusCode::NOT_FOUND, "session_not_found"),
    };
    json_response(
        status,
        &json!({ "error": code, "message": error.to_string() }),
    )
}

/// RFC 9728 protected-resource metadata for `/mcp/{upstream}`.
pub fn resource_metadata(app: &App, base_url: &str, upstream_name: &str) -> Response<Body> {
    if !app.upstreams.contains_key(upstream_name) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "unknown_upstream" }),
        );
    }
    let mut doc: Value = json!({
        "resource": format!("{base_url}/mcp/{upstream_name}"),
        "bearer_methods_supported": ["header"],
        "resource_name": format!("toolgate: {upstream_name}"),
    });
    if let Some(issuer) = &app.config.auth.issuer {
        doc["authorization_servers"] = json!([issuer]);
    }
    json_response(StatusCode::OK, &doc)
}
