//! The admin API under `/api/v1/`: audit query, verify and export, the live SSE feed, escalations, tool
//! definitions, policy status.
//!
//! Every route needs `Authorization: Bearer <admin.token>`; with no token configured the admin API is off (404).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::audit::{cursor_after, AuditError, EventFilter, ExportFormat};
use crate::escalation::Review;
use crate::response::{json_response, Body, BoxError};

/// Why an admin request got no answer; [`AdminError::into_response`] is the one place admin errors become
/// responses.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("set admin.token to enable the admin API")]
    Off,
    #[error("admin API needs Authorization: Bearer <admin.token>")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
}

impl AdminError {
    fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    /// A failed read of the audit log: a bad range is the caller's, anything else the database's.
    fn audit(code: &'static str, e: AuditError) -> AdminError {
        match e {
            AuditError::BadRange(_) => AdminError::bad_request(e.to_string()),
            e => AdminError::Unavailable {
                code,
                message: e.to_string(),
            },
        }
    }

    fn into_response(self) -> Response<Body> {
        let message = self.to_string();
        let (status, code) = match &self {
            AdminError::Off => (StatusCode::NOT_FOUND, "admin_api_off"),
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Conflict { code, .. } => (StatusCode::CONFLICT, *code),
            AdminError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, *code),
        };
        let mut resp = json_response(status, &json!({ "error": code, "message": message }));
        if matches!(self, AdminError::Unauthorized) {
            resp.headers_mut().insert(
                "www-authenticate",
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A 200 with `value` as its JSON body.
fn ok(value: impl serde::Serialize) -> Result<Response<Body>, AdminError> {
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(value).unwrap_or_default(),
    ))
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    route(app, req)
        .await
        .unwrap_or_else(AdminError::into_response)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, AdminError> {
    let Some(token) = &app.config.admin.token else {
        return Err(AdminError::Off);
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| same_secret(p, token)) {
        return Err(AdminError::Unauthorized);
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let q = |k: &str| query.get(k).map(String::as_str);
    let segments: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["audit", "events"]) => {
            let filter = EventFilter {
                agent_id: q("agent_id").map(str::to_owned),
                tool_name: q("tool_name").map(str::to_owned),
                policy_result: q("policy_result").map(str::to_owned),
                start: q("start").map(str::to_owned),
                end: q("end").map(str::to_owned),
                limit: match q("limit").map(str::parse::<u32>) {
                    None => None,
                    Some(Ok(n)) => Some(n),
                    Some(Err(_)) => {
                        return Err(AdminError::bad_request("limit must be a positive integer"))
                    }
                },
                cursor: q("cursor").map(str::to_owned),
            };
            // A filter the store cannot apply (a malformed cursor or time) is the caller's mistake.
            let page =
                app.audit
                    .store()
                    .query(&filter)
                    .await
                    .map_err(|e| AdminError::BadRequest {
                        code: "query_failed",
                        message: e.to_string(),
                    })?;
            // A full page may have a next one; a short page is the last.
            let next_cursor = (page.len() == filter.effective_limit() as usize)
                .then(|| page.last().map(cursor_after))
                .flatten();
            ok(json!({ "events": page, "next_cursor": next_cursor }))
        }
        (&Method::GET, ["audit", "events", id]) => match app.audit.store().event(id).await {
            Ok(Some(event)) => ok(event),
            Ok(None) => Err(AdminError::NotFound("no audit event with this id".into())),
            Err(e) => Err(AdminError::audit("query_failed", e)),
        },
        (&Method::GET, ["audit", "stats"]) => {
            let width = q("bucket")
                .unwrap_or("hour")
                .parse()
                .map_err(|e: AuditError| AdminError::bad_request(e.to_string()))?;
            let stats = crate::audit::stats::stats(app.audit.store(), q("start"), q("end"), width)
                .await
                .map_err(|e| AdminError::audit("stats_failed", e))?;
            ok(stats)
        }
        (&Method::GET, ["audit", "verify"]) => {
            let report = app
                .audit
                .store()
                .verify(q("start"), q("end"))
                .await
                .map_err(|e| AdminError::audit("verify_failed", e))?;
            ok(report)
        }
        (&Method::GET, ["audit", "export"]) => {
            let format: ExportFormat = q("format")
                .unwrap_or("ndjson")
                .parse()
                .map_err(|_| AdminError::bad_request("format must be csv, json or ndjson"))?;
            if q("manifest") == Some("true") {
                let manifest = crate::audit::export::Manifest::compute(
                    app.audit.store(),
                    format,
                    q("start"),
                    q("end"),
                )
                .await
                .map_err(|e| AdminError::audit("export_failed", e))?;
                return ok(manifest);
            }
            // The export streams from a task once the answer has begun (200): a bad range must be refused
            // before, as verify refuses it, not end as an empty 200 body.
            crate::audit::export::check_range(q("start"), q("end"))
                .map_err(|e| AdminError::audit("export_failed", e))?;
            Ok(export(
                app,
                format,
                q("start").map(str::to_owned),
                q("end").map(str::to_owned),
            ))
        }
        (&Method::GET, ["audit", "stream"]) => Ok(stream(app)),
        (&Method::GET, ["escalations"]) => {
            ok(json!({ "escalations": app.escalations.list(q("status")) }))
        }
        (&Method::POST, ["escalations", id, verb @ ("approve" | "deny")]) => {
            let review = if *verb == "approve" {
                Review::Approved
            } else {
                Review::Denied
            };
            match app.escalations.decide(id, review) {
                Ok(e) => ok(e),
                Err(e @ crate::escalation::EscalationError::NotFound(_)) => {
                    Err(AdminError::NotFound(e.to_string()))
                }
                Err(e) => Err(AdminError::Conflict {
                    code: "already_decided",
                    message: e.to_string(),
                }),
            }
        }
        (&Method::GET, ["tools"]) => {
            let status = match q("status") {
                None => None,
                Some(s) => Some(crate::tools::parse_status(s).ok_or_else(|| {
                    AdminError::bad_request("status must be new, pinned or changed")
                })?),
            };
            ok(json!({ "tools": app.tools.list(status), "next_cursor": null }))
        }
        (&Method::POST, ["tools", upstream, name, "approve"]) => {
            let (Some(upstream), Some(name)) = (
                percent_decode_segment(upstream),
                percent_decode_segment(name),
            ) else {
                return Err(AdminError::bad_request(
                    "the upstream and tool name must be percent-encoded UTF-8",
                ));
            };
            approve_tool(app, &upstream, &name).await
        }
        (&Method::GET, ["policy"]) => {
            let set = app.policies.current();
            ok(
                json!({ "revision": set.revision(), "modules": set.modules(), "dir": app.config.policy.dir, "last_reload": app.policies.last_reload() }),
            )
        }
        (&Method::POST, ["policy", "reload"]) => {
            let status = app
                .policies
                .reload(crate::policy_reload::Trigger::Api)
                .await;
            let code = if status.result == "ok" {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(json_response(
                code,
                &serde_json::to_value(status).unwrap_or_default(),
            ))
        }
        _ => Err(AdminError::NotFound(format!(
            "no admin route {} {path}",
            req.method()
        ))),
    }
}

/// Pins a tool's current definition, and records the approval as an `admin_action` and a `tool_definition`
/// event. The pin is stored first: an audit log that cannot take the events answers 503, the pin stays.
async fn approve_tool(
    app: &Arc<App>,
    upstream: &str,
    name: &str,
) -> Result<Response<Body>, AdminError> {
    use crate::tools::ApproveError;
    use toolgate_engine::chain::EventDraft;

    let record = app
        .tools
        .approve(upstream, name)
        .await
        .map_err(|e| match e {
            ApproveError::NotFound { .. } => AdminError::NotFound(e.to_string()),
            ApproveError::AlreadyPinned { .. } => AdminError::Conflict {
                code: "already_pinned",
                message: e.to_string(),
            },
            ApproveError::Store(e) => {
                tracing::error!(error = %e, "tool approval failed");
                AdminError::Unavailable {
                    code: "approval_failed",
                    message: e.to_string(),
                }
            }
        })?;
    let event = |event_type: &str, extra: serde_json::Value| EventDraft {
        event_type: event_type.to_owned(),
        requester_id: Some("admin".to_owned()),
        mcp_server: Some(record.upstream.clone()),
        tool_name: Some(record.name.clone()),
        extra,
        ..EventDraft::default()
    };
    for draft in [
        event("admin_action", json!({ "action": "tool_approval" })),
        event(
            "tool_definition",
            json!({ "status": "approved", "hash": record.pinned_hash }),
        ),
    ] {
        app.audit.append(draft).await.map_err(|e| {
            tracing::error!(error = %e, "audit write failed");
            AdminError::Unavailable {
                code: "audit_unavailable",
                message: format!(
                    "the definition is pinned, but its approval was not recorded: {e}"
                ),
            }
        })?;
    }
    ok(record)
}

/// Streams an export: the store writes into one end of a pipe while the response reads the other.
fn export(
    app: &Arc<App>,
    format: ExportFormat,
    start: Option<String>,
    end: Option<String>,
) -> Response<Body> {
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Json => "application/json",
        ExportFormat::Ndjson => "application/x-ndjson",
    };
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let store = app.audit.store().clone();
    tokio::spawn(async move {
        if let Err(e) = store
            .export(format, start.as_deref(), end.as_deref(), &mut writer)
            .await
        {
            tracing::error!(error = %e, "audit export failed");
        }
    });
    let stream = tokio_util::io::ReaderStream::new(reader)
        .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .expect("valid response")
}

/// The live SSE feed: every committed audit event as it is committed, with `:keepalive` comments.
fn stream(app: &Arc<App>) -> Response<Body> {
    let events = tokio_stream::wrappers::BroadcastStream::new(app.audit.subscribe())
        .filter_map(|e| async move { e.ok() })
        .map(|event| {
            let name = match event.event_type.as_str() {
                "tool_call" | "tool_result" => "tool_call",
                "policy_deny" => "policy_deny",
                "policy_escalate" => "policy_escalate",
                _ => "system_notification",
            };
            let data = serde_json::to_string(&*event).unwrap_or_default();
            Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
        });
    let every = Duration::from_secs(app.config.telemetry.sse_keepalive_seconds.max(1));
    let keepalive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + every,
        every,
    ))
    .map(|_| Bytes::from_static(b":keepalive\n\n"));
    let merged =
        futures_util::stream::select(events, keepalive).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(merged)))
        .expect("valid response")
}

/// Compares secrets through their hashes, so the time taken says nothing about where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// A query-string key or value: `+` is a space.
fn percent_decode(s: &str) -> Option<String> {
    decode(s, true)
}

/// A path segment: `+` is itself (a tool name may hold one).
fn percent_decode_segment(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let q = parse_query("start=2026-11-22T20%3A00%3A00Z&agent_id=a+b&flag");
        assert_eq!(q["start"], "2026-11-22T20:00:00Z");
        assert_eq!(q["agent_id"], "a b");
        assert_eq!(q["flag"], "");
        assert!(parse_query("x=%zz").is_empty());
        assert_eq!(percent_decode_segment("a+b%2Fc").as_deref(), Some("a+b/c"));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
