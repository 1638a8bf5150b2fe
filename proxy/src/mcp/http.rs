//! A streamable-HTTP MCP upstream: a pooled hyper client (rustls for https) that forwards one request and hands
//! the response back unbuffered, so SSE streams through as it comes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Response, Uri};

use crate::config::UpstreamSettings;
use crate::outbound::HttpClient;

/// Request headers of the agent that mean something to an MCP server and are passed on. The agent's
/// `Authorization` is deliberately not among them: its token is for toolgate, and MCP forbids token passthrough.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "traceparent",
    "tracestate",
];

/// Whether the agent's header `name` (lower case) reaches an HTTP upstream: one of [`FORWARDED_HEADERS`] or an
/// `Mcp-Param-*` mirror. `crate::pipeline::headers` checks each of them before anything is forwarded.
pub fn is_forwarded(name: &str) -> bool {
    FORWARDED_HEADERS.contains(&name) || name.starts_with(PARAM_PREFIX)
}

const PARAM_PREFIX: &str = "mcp-param-";

#[derive(Debug, thiserror::Error)]
pub enum HttpUpstreamError {
    #[error("upstream {0} is unreachable: {1}")]
    Unavailable(String, String),
    #[error("upstream {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("invalid upstream header {0}")]
    BadHeader(String),
}

pub struct HttpUpstream {
    pub name: String,
    uri: Uri,
    /// The upstream's own authority, sent as Host (never the agent's Host for toolgate).
    host: HeaderValue,
    extra_headers: HeaderMap,
    timeout: Duration,
    client: HttpClient,
}

impl HttpUpstream {
    pub fn new(
        settings: &UpstreamSettings,
        client: HttpClient,
    ) -> Result<HttpUpstream, HttpUpstreamError> {
        let url = settings.url.as_deref().unwrap_or_default();
        let uri: Uri = url
            .parse()
            .map_err(|_| HttpUpstreamError::BadHeader(format!("url {url:?}")))?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| HttpUpstreamError::BadHeader("host".into()))?;
        let mut extra_headers = HeaderMap::new();
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| HttpUpstreamError::BadHeader(k.clone()))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| HttpUpstreamError::BadHeader(k.clone()))?;
            extra_headers.insert(name, value);
        }
        Ok(HttpUpstream {
            name: settings.name.clone(),
            uri,
            host,
            extra_headers,
            timeout: settings.timeout(),
            client,
        })
    }

    /// Forwards one request. The timeout covers the response head; a streamed body flows as long as it lasts.
    pub async fn send(
        &self,
        method: Method,
        agent_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, HttpUpstreamError> {
        let mut req = Request::builder().method(method).uri(self.uri.clone());
        let headers = req.headers_mut().expect("a fresh builder has headers");
        for name in FORWARDED_HEADERS {
            for value in agent_headers.get_all(*name) {
                headers.append(*name, value.clone());
            }
        }
        // 2026-07-28 (SEP-2243): `Mcp-Param-*` mirror the arguments a tool's schema marks `x-mcp-header`; SDK servers
        // refuse a call whose header is missing. Each was checked to equal an argument of the judged body.
        for (name, value) in agent_headers {
            if name.as_str().starts_with(PARAM_PREFIX) {
                headers.append(name.clone(), value.clone());
            }
        }
        // The upstream's parent span is toolgate's current one (the forward stage for a tool call), not the agent's.
        crate::telemetry::traces::inject_headers(headers);
        headers.insert(HOST, self.host.clone());
        for (k, v) in &self.extra_headers {
            headers.insert(k, v.clone());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| HttpUpstreamError::BadHeader(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(HttpUpstreamError::Unavailable(
                self.name.clone(),
                error_chain(&e),
            )),
            Err(_) => Err(HttpUpstreamError::Timeout(self.name.clone(), self.timeout)),
        }
    }
}

/// The error and its causes on one line (hyper's top-level message alone is "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
