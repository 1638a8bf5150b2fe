//! bytes -> one JSON-RPC message: content negotiation, a bounded read, one parse with linear-time checks.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use hyper::Request;

use super::refusal::Refusal;
use crate::app::App;
use crate::mcp::jsonrpc::Message;

/// Reads and parses the body of an MCP `POST`; the raw bytes are kept so HTTP upstreams get exactly them.
pub(super) async fn read(
    app: &App,
    req: Request<Incoming>,
) -> Result<(HeaderMap, Message, Bytes), Refusal> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if !is_json(&headers) {
        return Err(Refusal::UnsupportedMediaType);
    }
    if !accepts_mcp(&headers) {
        return Err(Refusal::NotAcceptable);
    }
    let limit = app.config.max_body_bytes;
    let within = app.config.server.body_read_timeout();
    let reading = http_body_util::Limited::new(body, limit).collect();
    let raw = match tokio::time::timeout(within, reading).await {
        Err(_) => return Err(Refusal::BodyTimeout { within }),
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::BodyTooLarge { limit })
        }
        Ok(Err(_)) => return Err(Refusal::BodyUnreadable),
    };
    let message = Message::parse(&raw).map_err(Refusal::Malformed)?;
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
    Ok((headers, message, raw))
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
