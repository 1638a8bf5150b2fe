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

pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let Some(token) = &app.config.admin.token else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "admin_api_off", "message": "set admin.token to enable the admin API" }),
        );
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| same_secret(p, token)) {
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "unauthorized", "message": "admin API needs Authorization: Bearer <admin.token>" }),
        );
        resp.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return resp;
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
                    Some(Err(_)) => return bad_request("limit must be a positive integer"),
                },
                cursor: q("cursor").map(str::to_owned),
            };
            match app.audit.store().query(&filter).await {
                Ok(page) => {
                    // A full page may have a next one; a short page is the last.
                    let next_cursor = (page.len() == filter.effective_limit() as usize)
                        .then(|| page.last().map(cursor_after))
                        .flatten();
                    json_response(
                        StatusCode::OK,
                        &json!({ "events": page, "next_cursor": next_cursor }),
                    )
                }
                Err(e) => json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": "query_failed", "message": e.to_string() }),
                ),
            }
        }
        (&Method::GET, ["audit", "events", id]) => match app.audit.store().event(id).await {
            Ok(Some(event)) => json_response(
                StatusCode::OK,
                &serde_json::to_value(event).unwrap_or_default(),
            ),
            Ok(None) => json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not_found", "message": "no audit event with this id" }),
            ),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "query_failed", "message": e.to_string() }),
            ),
        },
        (&Method::GET, ["audit", "stats"]) => {
            let width = match q("bucket").unwrap_or("hour").parse() {
                Ok(w) => w,
                Err(e) => return bad_request(&AuditError::to_string(&e)),
            };
            match crate::audit::stats::stats(app.audit.store(), q("start"), q("end"), width).await {
                Ok(stats) => json_response(
                    StatusCode::OK,
                    &serde_json::to_value(stats).unwrap_or_default(),
                ),
                Err(e @ AuditError::BadRange(_)) => bad_request(&e.to_string()),
                Err(e) => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "error": "stats_failed", "message": e.to_string() }),
                ),
            }
        }
        (&Method::GET, ["audit", "verify"]) => {
            match app.audit.store().verify(q("start"), q("end")).await {
                Ok(report) => json_response(
                    StatusCode::OK,
                    &serde_json::to_value(report).unwrap_or_default(),
                ),
                Err(e @ AuditError::BadRange(_)) => bad_request(&e.to_string()),
                Err(e) => json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "error": "verify_failed", "message": e.to_string() }),
                ),
            }
        }
        (&Method::GET, ["audit", "export"]) => {
            let format: ExportFormat = match q("format").unwrap_or("ndjson").parse() {
                Ok(f) => f,
                Err(_) => return bad_request("format must be csv, json or ndjson"),
            };
            if q("manifest") == Some("true") {
                return match crate::audit::export::Manifest::compute(
                    app.audit.store(),
                    format,
                    q("start"),
                    q("end"),
                )
                .await
                {
                    Ok(manifest) => json_response(
                        StatusCode::OK,
                        &serde_json::to_value(manifest).unwrap_or_default(),
                    ),
                    Err(e @ AuditError::BadRange(_)) => bad_request(&e.to_string()),
                    Err(e) => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({ "error": "export_failed", "message": e.to_string() }),
                    ),
                };
            }
            export(
                app,
                format,
                q("start").map(str::to_owned),
                q("end").map(str::to_owned),
            )
        }
        (&Method::GET, ["audit", "stream"]) => stream(app),
        (&Method::GET, ["escalations"]) => json_response(
            StatusCode::OK,
            &json!({ "escalations": app.escalations.list(q("status")) }),
        ),
        (&Method::POST, ["escalations", id, verb @ ("approve" | "deny")]) => {
            let review = if *verb == "approve" {
                Review::Approved
            } else {
                Review::Denied
            };
            match app.escalations.decide(id, review) {
                Ok(e) => {
                    json_response(StatusCode::OK, &serde_json::to_value(e).unwrap_or_default())
                }
                Err(e @ crate::escalation::EscalationError::NotFound(_)) => json_response(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": "not_found", "message": e.to_string() }),
                ),
                Err(e) => json_response(
                    StatusCode::CONFLICT,
                    &json!({ "error": "already_decided", "message": e.to_string() }),
                ),
            }
        }
        (&Method::GET, ["tools"]) => {
            let status = match q("status") {
                None => None,
                Some(s) => match crate::tools::parse_status(s) {
                    Some(status) => Some(status),
                    None => return bad_request("status must be new, pinned or changed"),
                },
            };
            json_response(
                StatusCode::OK,
                &json!({ "tools": app.tools.list(status), "next_cursor": null }),
            )
        }
        (&Method::POST, ["tools", upstream, name, "approve"]) => {
            let (Some(upstream), Some(name)) = (
                percent_decode_segment(upstream),
                percent_decode_segment(name),
            ) else {
                return bad_request("the upstream and tool name must be percent-encoded UTF-8");
            };
            approve_tool(app, &upstream, &name).await
        }
        (&Method::GET, ["policy"]) => {
            let set = app.policies.current();
            json_response(
                StatusCode::OK,
                &json!({ "revision": set.revision(), "modules": set.modules(), "dir": app.config.policy.dir, "last_reload": app.policies.last_reload() }),
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
            json_response(code, &serde_json::to_value(status).unwrap_or_default())
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "not_found", "message": format!("no admin route {} {path}", req.method()) }),
        ),
    }
}

/// Pins a tool's current definition, and records the approval as an `admin_action` and a `tool_definition`
/// event. The pin is stored first: an audit log that cannot take the events answers 503, the pin stays.
async fn approve_tool(app: &Arc<App>, upstream: &str, name: &str) -> Response<Body> {
    use crate::tools::ApproveError;
    use toolgate_engine::chain::EventDraft;

    let record = match app.tools.approve(upstream, name).await {
        Ok(record) => record,
        Err(e @ ApproveError::NotFound { .. }) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "error": "not_found", "message": e.to_string() }),
            )
        }
        Err(e @ ApproveError::AlreadyPinned { .. }) => {
            return json_response(
                StatusCode::CONFLICT,
                &json!({ "error": "already_pinned", "message": e.to_string() }),
            )
        }
        Err(ApproveError::Store(e)) => {
            tracing::error!(error = %e, "tool approval failed");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "approval_failed", "message": e.to_string() }),
            );
        }
    };
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
        if let Err(e) = app.audit.append(draft).await {
            tracing::error!(error = %e, "audit write failed");
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "audit_unavailable", "message": format!("the definition is pinned, but its approval was not recorded: {e}") }),
            );
        }
    }
    json_response(
        StatusCode::OK,
        &serde_json::to_value(record).unwrap_or_default(),
    )
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

fn bad_request(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": "bad_request", "message": message }),
    )
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
