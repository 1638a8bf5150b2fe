//! `POST`/`GET`/`DELETE /mcp/{upstream}`: the MCP streamable-HTTP surface, both protocol eras.
//!
//! A `POST` carries one message, which runs the whole [`crate::pipeline`]. `GET` (the server-to-client stream of
//! a 2025-era session) and `DELETE` (ending a session) run the pipeline's jwt, kill-switch and session stages,
//! then reach the upstream directly: they carry no message to judge. Decisions are made on the JSON-RPC body,
//! never on `Mcp-*` headers.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::app::App;
use crate::mcp::upstream::Upstream;
use crate::mcp::SESSION_HEADER;
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
    let Upstream::Http(http) = upstream else {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed", "message": "this upstream offers no server-to-client stream" }),
        );
        resp.headers_mut()
            .insert("allow", HeaderValue::from_static("POST, DELETE"));
        return Ok(resp);
    };
    let mut session = None;
    if let Some(sid) = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        match app.sessions.get(upstream_name, sid, &identity.id) {
            Ok(s) => session = Some(s),
            Err(e) => {
                return Ok(json_response(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": "session_not_found", "message": e.to_string() }),
                ))
            }
        }
    }
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
    let Some(sid) = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "missing_session", "message": "DELETE needs an Mcp-Session-Id header" }),
        ));
    };
    let session = match app.sessions.remove(upstream_name, &sid, &identity.id) {
        Ok(s) => s,
        Err(e) => {
            return Ok(json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "session_not_found", "message": e.to_string() }),
            ))
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
