//! `GET /api/v1/audit/stream`: the live SSE feed of committed audit events, resumable and filtered.
//!
//! The handler checks what the client asked for (filters, `Last-Event-ID`) and answers 400 before the stream
//! begins when it cannot be served; then a task ([`feeder`]) writes the stream into a bounded channel that is
//! the response body.
//!
//! # Layout
//! - [`cursor`]: the opaque `id:`, a seq per chain.
//! - [`frame`]: event names and the bytes of an SSE event.
//! - [`feeder`]: replay from the store, the live follow, keep-alives and the slow-consumer cut-off.

mod cursor;
mod feeder;
mod frame;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::Response;
use tokio::sync::mpsc;

use super::{AdminError, AdminRequest};
use crate::audit::store::FeedFilter;
use crate::response::{Body, BoxError};
use cursor::FeedCursor;

/// Most values one filter may list.
const MAX_FILTER_VALUES: usize = 64;

/// The live SSE feed: every committed audit event that passes the filters, after the client's
/// `Last-Event-ID` (or `last_event_id`) or from now, with `:keepalive` comments.
pub(super) async fn stream(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    let filter = filter(call)?;
    let resume = last_event_id(call)?;
    // A new feed starts at the stored heads. It subscribes before reading them: an event committed in between
    // is both below a head and in the broadcast, and is dropped by seq; one committed later is above.
    let live = resume.is_none().then(|| app.audit.subscribe());
    let heads = app
        .audit
        .store()
        .chain_heads()
        .await
        .map_err(|e| AdminError::audit("feed_unavailable", e))?;
    let cursor = match resume {
        Some(cursor) => {
            cursor.check(&heads).map_err(bad_last_event_id)?;
            cursor
        }
        None => FeedCursor::at(&heads),
    };
    // One place more than the feed fills: kept for its last notice.
    let (out, body) = mpsc::channel(feeder::BUFFER + 1);
    let notice = out
        .clone()
        .try_reserve_owned()
        .map_err(|_| AdminError::Unavailable {
            code: "stream_failed",
            message: "the feed's channel has no room".to_owned(),
        })?;
    let feed = feeder::Feed {
        audit: app.audit.clone(),
        filter,
        delivered: cursor.encode(),
        cursor,
        out,
        live,
        keepalive_every: Duration::from_secs(app.config.telemetry.sse_keepalive_seconds.max(1)),
        last_keepalive: Instant::now(),
    };
    tokio::spawn(feed.run(notice));
    let frames = tokio_stream::wrappers::ReceiverStream::new(body)
        .map(|bytes| Ok::<_, BoxError>(Frame::data(bytes)));
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header("cache-control", "no-cache")
        // Reverse proxies that buffer responses (nginx) would hold events back.
        .header("x-accel-buffering", "no")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
        .map_err(|e| AdminError::Unavailable {
            code: "stream_failed",
            message: e.to_string(),
        })
}

/// The cursor to resume after: the `Last-Event-ID` header (an `EventSource` sends it when it reconnects), else
/// the `last_event_id` query parameter (an `EventSource` cannot set headers on its first connect). An empty
/// value is no cursor, as in SSE.
fn last_event_id(call: &AdminRequest<'_>) -> Result<Option<FeedCursor>, AdminError> {
    let text = match call.headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .map_err(|_| bad_last_event_id(cursor::BadCursor::Garbled))?,
        None => call.q("last_event_id").unwrap_or(""),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    FeedCursor::decode(text)
        .map(Some)
        .map_err(bad_last_event_id)
}

fn bad_last_event_id(e: cursor::BadCursor) -> AdminError {
    AdminError::BadRequest {
        code: "bad_last_event_id",
        message: e.to_string(),
    }
}

/// The filters `agent_id`, `policy_result` and `event_type`, each a comma-separated list of values; a tenant's
/// admin sees its tenant's events alone, whatever it asks for.
fn filter(call: &AdminRequest<'_>) -> Result<FeedFilter, AdminError> {
    let list = |key: &str| -> Result<Vec<String>, AdminError> {
        let Some(text) = call.q(key) else {
            return Ok(Vec::new());
        };
        let values: Vec<String> = text.split(',').map(|v| v.trim().to_owned()).collect();
        if values.iter().any(String::is_empty) {
            return Err(AdminError::bad_request(format!(
                "{key} must be one value or a comma-separated list of values, none of them empty"
            )));
        }
        if values.len() > MAX_FILTER_VALUES {
            return Err(AdminError::bad_request(format!(
                "{key} lists more than {MAX_FILTER_VALUES} values"
            )));
        }
        Ok(values)
    };
    Ok(FeedFilter {
        agent_ids: list("agent_id")?,
        policy_results: list("policy_result")?,
        event_types: list("event_type")?,
        tenant_ids: call.admin.tenant.iter().cloned().collect(),
    })
}
