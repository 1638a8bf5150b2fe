//! Response bodies and the builders every HTTP surface uses (MCP, admin, public). A leaf module: it knows
//! hyper and JSON, nothing of the proxy above it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body: a full buffer or an upstream stream, boxed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("valid response")
}

/// A JSON-RPC message as the answer to an MCP POST.
pub fn jsonrpc_reply(status: StatusCode, value: Value) -> Response<Body> {
    json_response(status, &value)
}

/// An upstream answer, streamed back unbuffered (SSE frames reach the agent as they come).
pub fn stream_response(resp: Response<Incoming>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut resp = Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed());
    crate::mcp::keep_mcp_headers(resp.headers_mut());
    resp
}
