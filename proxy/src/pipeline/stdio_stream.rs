//! The answer to a judged request on a stdio child that sent the agent a request of its own (sampling,
//! elicitation, roots) or a notification (progress, a log message) before answering: an SSE stream that carries
//! each of the child's requests, judged like those of an HTTP upstream's stream
//! ([`super::server_request::ServerRequests::judge`]), and its notifications, scanned and redacted like a
//! result, then the answer, judged by the result stage. A request with no such detour keeps the plain JSON answer (`forward` returns it as
//! soon as it arrives); every MCP POST accepts SSE (`intake` refuses one that does not, `406`).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::forward::{ForwardError, StdioStream};
use super::refusal::Refusal;
use super::result::{self, PendingOutcome, ResultJudge};
use super::server_request::ServerRequests;
use crate::app::App;
use crate::mcp::sse;
use crate::mcp::stdio::{Inbound, StdioError};
use crate::response::{Body, BoxError};
use crate::telemetry::Stage;

type Frames = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// What the stream of one exchange needs, owned by its pump.
pub(super) struct StdioReply {
    pub server: ServerRequests,
    pub judge: ResultJudge,
    pub outcome: PendingOutcome,
    pub request_id: Option<Value>,
}

/// Streams the rest of `stream` to the agent: the child's requests as they are judged and allowed, then the
/// answer; the outcome event is queued when the stream ends.
pub(super) fn respond(app: Arc<App>, reply: StdioReply, stream: StdioStream) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    // The pump belongs to the request: its spans stay in the request's trace.
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        pump(app, reply, stream, tx),
        span,
    ));
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

async fn pump(app: Arc<App>, reply: StdioReply, stream: StdioStream, tx: Frames) {
    let StdioReply {
        server,
        judge,
        outcome: PendingOutcome { mut draft, started },
        request_id,
    } = reply;
    let StdioStream {
        first,
        mut exchange,
    } = stream;
    let upstream = server.upstream_name.clone();
    let mut next = Some(first);
    let error = loop {
        let inbound = match next.take() {
            Some(inbound) => Ok(inbound),
            None => exchange.next().await,
        };
        match inbound {
            Ok(Inbound::Request(mut message)) => {
                // A refused request is answered to the child in the agent's place and never shown.
                if !server.judge(&message).await {
                    continue;
                }
                result::redact_message(&app, &upstream, &mut message);
                if !send(&tx, &message).await {
                    // Allowed, but the agent it was for is gone: the child is told rather than left waiting.
                    server.agent_gone(&message).await;
                    break Some("the agent disconnected before the answer".to_owned());
                }
            }
            Ok(Inbound::Notification(mut message)) => {
                result::redact_message(&app, &upstream, &mut message);
                if !send(&tx, &message).await {
                    break Some("the agent disconnected before the answer".to_owned());
                }
            }
            Ok(Inbound::Unroutable(notice)) => server.record_unroutable(&notice).await,
            Ok(Inbound::Response(mut answer)) => {
                super::count_upstream(&app, &upstream, StatusCode::OK);
                server.input_required(&mut answer).await;
                let judgement = crate::telemetry::stage(&app.metrics, Stage::Result)
                    .in_scope(|| judge.judge(&app, &mut answer));
                draft.response_code = Some(200);
                draft.error = answer.get("error").map(|e| {
                    format!(
                        "upstream JSON-RPC error {}",
                        e.get("code").unwrap_or(&Value::Null)
                    )
                });
                result::apply_judgement(&mut draft, &judgement);
                send(&tx, &answer).await;
                break None;
            }
            Err(e) => {
                let error = match e {
                    StdioError::Timeout => ForwardError::Timeout(upstream.clone()),
                    e => ForwardError::Unavailable(format!("{upstream}: {e}")),
                };
                app.metrics
                    .upstream_requests
                    .with_label_values(&[&upstream, error.status_label()])
                    .inc();
                tracing::warn!(upstream = %upstream, error = %error, "upstream request failed");
                let reason = error.to_string();
                let refusal = Refusal::Upstream {
                    id: request_id.clone(),
                    error,
                };
                send(&tx, &refusal.into_message()).await;
                break Some(reason);
            }
        }
    };
    // Forgets the request before the outcome is queued: a late answer of the child's is dropped.
    drop(exchange);
    draft.latency_us = Some(started.elapsed().as_micros() as i64);
    if error.is_some() {
        draft.error = error;
    }
    super::record::enqueue(&app, draft).await;
}

/// One message as an SSE event; false once the agent is gone.
async fn send(tx: &Frames, message: &Value) -> bool {
    let event = sse::SseEvent {
        event: Some("message".into()),
        id: None,
        data: message.to_string(),
    };
    tx.send(Ok(Frame::data(Bytes::from(sse::frame(&event)))))
        .await
        .is_ok()
}
