//! `POST /api/v1/runs` (start a run) and `POST /api/v1/runs/{id}/finish`: the agent-facing half of the runs
//! API, authenticated by the agent's JWT like `/mcp/` (401 with an RFC 9728 `WWW-Authenticate` challenge, each
//! counted by the auth-failure limiter), refused with 403 for a disabled agent. The admin half (`GET`) is in
//! `crate::admin`; [`is_agent_route`] is how the router tells them apart.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::auth::{AgentIdentity, AuthError};
use crate::pipeline::refusal::Refusal;
use crate::response::{json_response, Body};
use crate::runs::RunError;

/// The resource the agent routes are, for RFC 9728 metadata and the 401 challenge.
pub const RESOURCE_PATH: &str = "/api/v1/runs";

/// Whether a request is one of the agent routes (a `POST` under `/api/v1/runs`); every other method there is
/// the admin's.
pub fn is_agent_route(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    *method == Method::POST
        && (path == RESOURCE_PATH || path.starts_with(&format!("{RESOURCE_PATH}/")))
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>, base_url: &str) -> Response<Body> {
    let identity = match authenticate(app, &req) {
        Ok(identity) => identity,
        Err(error) => {
            return Refusal::Unauthenticated {
                error,
                metadata_url: format!(
                    "{base_url}/.well-known/oauth-protected-resource{RESOURCE_PATH}"
                ),
            }
            .into_response()
        }
    };
    // The kill switch, before anything of the run is looked at.
    if !app.agents.admit(&identity) {
        tracing::warn!(agent = %crate::redaction::loggable(&identity.id), "disabled agent refused");
        return error(
            StatusCode::FORBIDDEN,
            "agent_disabled",
            "this agent is disabled".into(),
        );
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let rest = path[RESOURCE_PATH.len()..].trim_start_matches('/');
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let body = match read_body(app, req).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let answer = match segments.as_slice() {
        [] => app
            .runs
            .start(&identity, &body)
            .await
            .map(|run_id| json_response(StatusCode::OK, &json!({ "run_id": run_id }))),
        [run_id, "finish"] => app.runs.finish(&identity, run_id, &body).await.map(|run| {
            json_response(
                StatusCode::OK,
                &serde_json::to_value(run).unwrap_or_default(),
            )
        }),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route POST {path}"),
            )
        }
    };
    answer.unwrap_or_else(into_response)
}

fn authenticate(app: &App, req: &Request<Incoming>) -> Result<AgentIdentity, AuthError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.auth.verify(header).inspect_err(|error| {
        tracing::info!(
            reason = error.description(),
            "agent authentication failed (runs)"
        );
    })
}

/// The body, JSON, bounded by `max_body_bytes` and `server.body_read_timeout_seconds` like an MCP message's.
async fn read_body(app: &App, req: Request<Incoming>) -> Result<bytes::Bytes, Response<Body>> {
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json".into(),
        ));
    }
    let limit = app.config.max_body_bytes;
    let within = app.config.server.body_read_timeout();
    let reading = http_body_util::Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(within, reading).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {within:?}"),
        )),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )),
        Ok(Err(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the body could not be read".into(),
        )),
    }
}

fn into_response(e: RunError) -> Response<Body> {
    let (status, code) = match &e {
        RunError::BadContent(_) | RunError::BadCursor => (StatusCode::BAD_REQUEST, "bad_request"),
        RunError::NotFound => (StatusCode::NOT_FOUND, "run_not_found"),
        RunError::AlreadyEnded(_) => (StatusCode::CONFLICT, "run_ended"),
        RunError::TooMany => (StatusCode::SERVICE_UNAVAILABLE, "too_many_runs"),
        RunError::TooManyOfAgent(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_runs"),
        RunError::Store(e) => {
            tracing::error!(error = %e, "runs store failed");
            (StatusCode::SERVICE_UNAVAILABLE, "runs_unavailable")
        }
        RunError::Unrecorded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
    };
    error(status, code, e.to_string())
}

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    json_response(status, &json!({ "error": code, "message": message }))
}

/// RFC 9728 protected-resource metadata for the agent routes of the runs API.
pub fn resource_metadata(app: &App, base_url: &str) -> Response<Body> {
    let mut doc = json!({
        "resource": format!("{base_url}{RESOURCE_PATH}"),
        "bearer_methods_supported": ["header"],
        "resource_name": "toolgate: agent runs",
    });
    if let Some(issuer) = &app.config.auth.issuer {
        doc["authorization_servers"] = json!([issuer]);
    }
    json_response(StatusCode::OK, &doc)
}
