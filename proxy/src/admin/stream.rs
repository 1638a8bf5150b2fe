//! `GET /api/v1/audit/stream`: the live SSE feed of committed audit events.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::Response;

use super::{AdminError, AdminRequest};
use crate::response::{Body, BoxError};

/// The live SSE feed: every committed audit event as it is committed, with `:keepalive` comments.
pub(super) fn stream(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let app = call.app;
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
        .map_err(|e| AdminError::Unavailable {
            code: "stream_failed",
            message: e.to_string(),
        })
}
