//! The fast mock MCP upstream: streamable HTTP (JSON answers), both protocol eras, `tools/call` answered at once.
//!
//! 2025-era sessions are real enough for the session flow to be honest: `initialize` issues an `Mcp-Session-Id`,
//! a request carrying an id never issued (or ended by `DELETE`) gets 404 as the spec says, so a proxy that lost
//! or rewrote the session would show up as errors. Requests without the header are the stateless era.
//!
//! It does as little as an MCP server can, so that what the benchmark measures is the client, the network
//! stack and toolgate, not the tool.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// What the mock has served, for sanity checks by the harness.
#[derive(Default)]
pub struct Counters {
    pub tool_calls: AtomicU64,
    pub sessions: AtomicU64,
    /// Session ids issued and not ended. A read lock per session request: cheap next to the HTTP work.
    open: RwLock<HashSet<String>>,
}

impl Counters {
    fn is_open(&self, sid: &str) -> bool {
        self.open
            .read()
            .map(|s| s.contains(sid))
            .unwrap_or_else(|p| p.into_inner().contains(sid))
    }

    fn set_open(&self, sid: &str, open: bool) {
        let mut set = self.open.write().unwrap_or_else(|p| p.into_inner());
        if open {
            set.insert(sid.to_owned());
        } else {
            set.remove(sid);
        }
    }
}

/// Serves MCP on `listener` until the process ends. One task per connection, HTTP/1.1 keep-alive.
pub async fn serve(listener: TcpListener, counters: Arc<Counters>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, counters.clone()));
            // A client that hangs up mid-request is not the mock's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    counters: Arc<Counters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let sid = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(sid) = &sid {
        if !counters.is_open(sid) {
            return Ok(status(StatusCode::NOT_FOUND));
        }
    }
    if req.method() == Method::DELETE {
        if let Some(sid) = &sid {
            counters.set_open(sid, false);
        }
        return Ok(status(StatusCode::OK));
    }
    if req.method() != Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification (`notifications/initialized`).
        return Ok(status(StatusCode::ACCEPTED));
    };
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let mut session = None;
    let result = match method {
        "tools/call" => {
            counters.tool_calls.fetch_add(1, Ordering::Relaxed);
            json!({ "content": [{ "type": "text", "text": "ok" }], "isError": false })
        }
        "initialize" => {
            let n = counters.sessions.fetch_add(1, Ordering::Relaxed);
            let sid = format!("bench-{n:016x}");
            counters.set_open(&sid, true);
            session = Some(sid);
            let version = message["params"]["protocolVersion"]
                .as_str()
                .unwrap_or("2025-11-25")
                .to_owned();
            json!({ "protocolVersion": version, "capabilities": { "tools": {} },
                    "serverInfo": { "name": "toolgate-bench-upstream", "version": "0" } })
        }
        "tools/list" => json!({ "tools": [{
            "name": "echo", "description": "answers ok",
            "inputSchema": { "type": "object", "properties": { "text": { "type": "string" } } } }] }),
        "server/discover" => {
            json!({ "supportedVersions": ["2026-07-28"], "capabilities": { "tools": {} },
            "serverInfo": { "name": "toolgate-bench-upstream", "version": "0" } })
        }
        _ => {
            let error = json!({ "jsonrpc": "2.0", "id": id,
                                "error": { "code": -32601, "message": "method not found" } });
            return Ok(json_response(&error, None));
        }
    };
    let reply = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    Ok(json_response(&reply, session))
}

fn json_response(value: &Value, session: Option<String>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(sid) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert("mcp-session-id", sid);
    }
    resp
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}
