//! result: the upstream's answer judged on its way back: DLP findings and injection markers over the result,
//! then `result_decision` (pass / redact / block). A JSON answer is judged whole; an SSE answer event by event
//! as it streams, never buffered whole.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use toolgate_engine::chain::EventDraft;
use toolgate_engine::dlp::Finding;
use toolgate_engine::policy::ResultVerdict;

use crate::app::App;
use crate::mcp::jsonrpc;
use crate::mcp::sse::{self, SseReader};
use crate::response::{Body, BoxError};
use crate::telemetry::Stage;

/// Largest JSON answer toolgate reads to judge, and largest single SSE event.
pub(super) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What judges the answers to one request: the request's own input document (the result decision sees what the
/// request decision saw, plus `response`) and where the answer came from.
#[derive(Clone)]
pub(super) struct ResultJudge {
    pub doc: regorus::Value,
    pub upstream: String,
    /// The agent the answer goes to (its token's `tenant` and `sub`): a critical finding opens `dlp_critical`
    /// for it.
    pub tenant_id: Option<String>,
    pub agent_id: String,
}

/// The verdict on one answer.
#[derive(Debug)]
pub(super) struct Judgement {
    pub verdict: ResultVerdict,
    pub findings: Vec<Finding>,
    pub injection: Vec<&'static str>,
}

impl Judgement {
    /// `dlp_action` of the outcome event: set for a redacted or blocked answer only.
    pub(super) fn dlp_action(&self) -> Option<&'static str> {
        match self.verdict {
            ResultVerdict::Pass => None,
            v => Some(v.as_str()),
        }
    }
}

impl ResultJudge {
    /// Judges one JSON-RPC answer to the agent's request in place: redacted, or replaced by a `-31006` error
    /// echoing its id.
    pub(super) fn judge(&self, app: &App, answer: &mut Value) -> Judgement {
        let is_error = answer.get("error").is_some()
            || answer
                .get("result")
                .and_then(|r| r.get("isError"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let scanned_key = ["result", "error"]
            .into_iter()
            .find(|k| answer.get(*k).is_some());
        let Some(key) = scanned_key else {
            return Judgement {
                verdict: ResultVerdict::Pass,
                findings: Vec::new(),
                injection: Vec::new(),
            };
        };
        let part = &answer[key];
        let findings = app.scanner.scan(part);
        let injection: Vec<&'static str> = toolgate_engine::injection::markers(part)
            .into_iter()
            .map(|m| m.as_str())
            .collect();
        super::stages::count_findings(app, &findings);
        if !findings.is_empty() {
            app.alerts.raise_dlp_critical(
                || crate::agents::StoredKey::of(self.tenant_id.as_deref(), &self.agent_id),
                &format!("a result from {}", self.upstream),
                &findings,
            );
        }
        let response = toolgate_engine::input::ResponseInput {
            is_error,
            findings: &findings,
            injection: &injection,
        }
        .to_value();
        let mut doc = self.doc.clone();
        if let Ok(object) = doc.as_object_mut() {
            object.insert(regorus::Value::from("response"), response);
        }
        let decided = app.with_evaluator(|ev| ev.result_decision(doc, !findings.is_empty()));
        let (verdict, policy_id, reason) = match decided {
            Ok(d) => (d.verdict(), d.policy_id().to_owned(), d.reason().to_owned()),
            Err(e) => {
                // Fail closed: an answer the policy could not judge does not reach the agent.
                app.metrics.policy_errors.inc();
                tracing::error!(upstream = %self.upstream, error = %e, "result_decision failed: answer blocked");
                (
                    ResultVerdict::Block,
                    "toolgate.error".to_owned(),
                    e.to_string(),
                )
            }
        };
        match verdict {
            ResultVerdict::Pass => {}
            ResultVerdict::Redact => {
                app.scanner.redact(&mut answer[key]);
            }
            ResultVerdict::Block => {
                let id = answer.get("id").cloned().unwrap_or(Value::Null);
                *answer = jsonrpc::error_response(
                    Some(&id),
                    jsonrpc::RESULT_BLOCKED,
                    format!("result blocked by policy {policy_id}: {reason}"),
                    Some(json!({ "policy_id": policy_id })),
                );
            }
        }
        app.metrics
            .results
            .with_label_values(&[&self.upstream, verdict.as_str()])
            .inc();
        if verdict != ResultVerdict::Pass {
            tracing::info!(upstream = %self.upstream, result = verdict.as_str(), policy_id = %policy_id, "result judged");
        }
        Judgement {
            verdict,
            findings,
            injection,
        }
    }
}

/// A message of the upstream's that is not the answer (a progress or logging notification, a server request's
/// params): scanned and redacted like a result, never blocked, since there is no request of the agent's to
/// answer in its place.
pub(super) fn redact_message(app: &App, upstream: &str, message: &mut Value) {
    let Some(key) = ["params", "result", "error"]
        .into_iter()
        .find(|k| message.get(*k).is_some())
    else {
        return;
    };
    let findings = app.scanner.redact(&mut message[key]);
    super::stages::count_findings(app, &findings);
    if !findings.is_empty() {
        app.metrics
            .results
            .with_label_values(&[upstream, "redact"])
            .inc();
    }
}

/// The outcome event of a streamed answer, completed and queued when the stream ends.
pub(super) struct PendingOutcome {
    pub draft: EventDraft,
    pub started: Instant,
}

/// Streams an upstream SSE answer to the agent, judging each event as it arrives. The answer to `request_id`
/// is judged with `result_decision`; other messages (progress, logging, server requests) are scanned and
/// redacted. When the stream ends, the outcome event is queued to the audit writer in order; a stream cut before
/// the answer arrived is answered `-31003` and recorded as an error.
pub(super) fn stream(
    app: Arc<App>,
    judges: StreamJudges,
    request_id: Option<Value>,
    upstream: Response<hyper::body::Incoming>,
    outcome: Option<PendingOutcome>,
) -> Response<Body> {
    let (mut parts, mut body) = upstream.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    let status = parts.status.as_u16() as i64;
    // The pump belongs to the request: its `result` spans (and those of server requests judged in the stream)
    // stay in the request's trace.
    let span = tracing::Span::current();
    let pump = async move {
        let mut reader = SseReader::new(MAX_ANSWER_BYTES);
        let mut answered: Option<Judgement> = None;
        let mut error: Option<String> = None;
        let mut agent_gone = false;
        loop {
            let events = match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match reader.push(&data) {
                        Ok(events) => events,
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    },
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    error = Some(format!("upstream stream failed: {e}"));
                    break;
                }
                None => {
                    let events = reader.finish();
                    if !forward_events(&app, &judges, &request_id, events, &mut answered, &tx).await
                    {
                        agent_gone = true;
                    }
                    break;
                }
            };
            if !forward_events(&app, &judges, &request_id, events, &mut answered, &tx).await {
                agent_gone = true;
                break;
            }
        }
        if answered.is_none() && request_id.is_some() && !agent_gone {
            let reason = error
                .clone()
                .unwrap_or_else(|| "the upstream stream ended before the answer".into());
            let reply = jsonrpc::error_response(
                request_id.as_ref(),
                jsonrpc::UPSTREAM_UNAVAILABLE,
                format!("upstream unavailable: {reason}"),
                None,
            );
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(sse_frame(&reply)))))
                .await;
        }
        let Some(PendingOutcome { mut draft, started }) = outcome else {
            return;
        };
        draft.response_code = Some(status);
        draft.latency_us = Some(started.elapsed().as_micros() as i64);
        draft.error = match (&answered, error, agent_gone) {
            (Some(_), _, _) => None,
            (None, Some(e), _) => Some(e),
            (None, None, true) => Some("the agent disconnected before the answer".into()),
            (None, None, false) => Some("the upstream stream ended before the answer".into()),
        };
        if let Some(judgement) = &answered {
            apply_judgement(&mut draft, judgement);
        }
        super::record::enqueue(&app, draft).await;
    };
    tokio::spawn(tracing::Instrument::instrument(pump, span));
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::from_parts(parts, BodyExt::boxed(body));
    crate::mcp::keep_mcp_headers(resp.headers_mut());
    resp
}

/// What judges the messages of one stream: the answer to the agent's request (absent on a session's `GET`
/// stream), and the requests the upstream sends the agent.
pub(super) struct StreamJudges {
    pub result: Option<ResultJudge>,
    pub server: super::server_request::ServerRequests,
}

/// Judges and forwards a batch of events; false once the agent is gone.
async fn forward_events(
    app: &App,
    judges: &StreamJudges,
    request_id: &Option<Value>,
    events: Vec<sse::SseEvent>,
    answered: &mut Option<Judgement>,
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> bool {
    for mut event in events {
        let upstream = judges.server.upstream_name.as_str();
        let Ok(mut message) = serde_json::from_str::<Value>(&event.data) else {
            // Nothing unjudged reaches the agent: an event that is not JSON-RPC is dropped, and said so.
            tracing::warn!(upstream, "dropped an SSE event that is not JSON");
            continue;
        };
        let is_request = message.get("method").is_some() && message.get("id").is_some();
        let is_answer = !is_request
            && message.get("method").is_none()
            && request_id.is_some()
            && message.get("id") == request_id.as_ref();
        match (&judges.result, is_answer) {
            (Some(judge), true) => {
                judges.server.input_required(&mut message).await;
                let judgement = crate::telemetry::stage(&app.metrics, Stage::Result)
                    .in_scope(|| judge.judge(app, &mut message));
                *answered = Some(judgement);
            }
            _ if is_request => {
                if !judges.server.judge(&message).await {
                    continue;
                }
                redact_message(app, upstream, &mut message);
            }
            _ => {
                if message.get("method").and_then(Value::as_str)
                    == Some("notifications/tools/list_changed")
                {
                    // The upstream says its tools changed: until they are listed again, none is trusted.
                    let marked = app.tools.list_changed(upstream);
                    tracing::info!(
                        upstream,
                        marked,
                        "tool definitions unverified until listed again"
                    );
                }
                redact_message(app, upstream, &mut message)
            }
        }
        event.data = message.to_string();
        if tx
            .send(Ok(Frame::data(Bytes::from(sse::frame(&event)))))
            .await
            .is_err()
        {
            if is_request {
                // Allowed, but the agent it was for is gone: the upstream is told rather than left waiting.
                judges.server.agent_gone(&message).await;
            }
            return false;
        }
    }
    true
}

fn sse_frame(message: &Value) -> String {
    sse::frame(&sse::SseEvent {
        event: Some("message".into()),
        id: None,
        data: message.to_string(),
    })
}

/// Records what the result stage did on the outcome event.
pub(super) fn apply_judgement(draft: &mut EventDraft, judgement: &Judgement) {
    if let Some(action) = judgement.dlp_action() {
        draft.dlp_action = Some(action.to_owned());
        draft.dlp_findings = serde_json::to_value(&judgement.findings).unwrap_or(json!([]));
    }
    if !judgement.injection.is_empty() {
        if let Value::Object(map) = &mut draft.extra {
            map.insert("injection".into(), json!(judgement.injection));
        }
    }
}

/// A JSON answer over HTTP: read whole (bounded), judged, answered; the outcome queued behind its decision.
/// An HTTP upstream's answer to a judged request, with its outcome event still to complete.
pub(super) struct HttpReply {
    pub resp: Response<hyper::body::Incoming>,
    pub outcome: EventDraft,
    pub started: Instant,
    pub request_id: Option<Value>,
}

pub(super) async fn json_http(
    app: &Arc<App>,
    caller: &super::Caller<'_>,
    headers: &hyper::HeaderMap,
    judge: &ResultJudge,
    reply: HttpReply,
) -> Result<Response<Body>, super::refusal::Refusal> {
    let HttpReply {
        resp,
        mut outcome,
        started,
        request_id,
    } = reply;
    let (mut parts, body) = resp.into_parts();
    let status = parts.status;
    outcome.response_code = Some(status.as_u16() as i64);
    let read = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await;
    let parsed = match read {
        Ok(bytes) => {
            let bytes = bytes.to_bytes();
            if bytes.is_empty() {
                // A notification's 202: nothing to judge.
                Ok(None)
            } else {
                serde_json::from_slice::<Value>(&bytes)
                    .map(Some)
                    .map_err(|_| {
                        if status.is_success() {
                            "the upstream answer is not JSON".to_owned()
                        } else {
                            format!("upstream answered HTTP {}", status.as_u16())
                        }
                    })
            }
        }
        Err(e) => Err(format!("reading the upstream answer: {e}")),
    };
    outcome.latency_us = Some(started.elapsed().as_micros() as i64);
    let answer = match parsed {
        Ok(Some(answer)) if answer.get("result").is_none() && answer.get("error").is_none() => {
            // Nothing in it can be judged as an answer, so none of it reaches the agent.
            let reason = "the upstream answer is not a JSON-RPC response".to_owned();
            outcome.error = Some(reason.clone());
            super::record::enqueue(app, outcome).await;
            return Err(super::refusal::Refusal::Upstream {
                id: request_id,
                error: super::forward::ForwardError::Unavailable(reason),
            });
        }
        Ok(Some(mut answer)) => {
            super::server_request::judge_input_required(app, caller, headers, &mut answer).await;
            let judgement = crate::telemetry::stage(&app.metrics, Stage::Result)
                .in_scope(|| judge.judge(app, &mut answer));
            outcome.error = answer.get("error").map(|e| {
                format!(
                    "upstream JSON-RPC error {}",
                    e.get("code").unwrap_or(&Value::Null)
                )
            });
            apply_judgement(&mut outcome, &judgement);
            if outcome.error.is_none() && !status.is_success() {
                outcome.error = Some(format!("upstream answered HTTP {}", status.as_u16()));
            }
            Some(answer)
        }
        Ok(None) => None,
        Err(reason) => {
            outcome.error = Some(reason.clone());
            super::record::enqueue(app, outcome).await;
            return Err(super::refusal::Refusal::Upstream {
                id: request_id,
                error: super::forward::ForwardError::Unavailable(reason),
            });
        }
    };
    super::record::enqueue(app, outcome).await;
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    let body = match &answer {
        Some(a) => crate::response::full(a.to_string()),
        None => crate::response::empty(),
    };
    let mut resp = Response::from_parts(parts, body);
    crate::mcp::keep_mcp_headers(resp.headers_mut());
    Ok(resp)
}
