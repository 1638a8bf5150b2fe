//! The hyper server: the accept loop, routing, and the one place where errors become responses.
//!
//! `run(listener, app, shutdown)` has the mini-redis shape, so tests start the real server on `127.0.0.1:0`.
//! The accept loop only admits or refuses ([`limits`]); each admitted connection is served on its own task
//! ([`connection`]), with TLS when `[tls]` is configured ([`tls`]) and closed when it idles ([`activity`]).

use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

pub mod activity;
pub mod connection;
pub mod endpoint;
pub mod limits;
pub mod public_verify;
pub mod rate;
mod release;
pub mod runs;
pub mod tls;

use crate::app::App;
use crate::response::{full, json_response, Body};
use connection::{Arrival, Shared};

/// Serves `listener` until `shutdown` resolves; then stops accepting and returns (open connections finish on
/// their own tasks).
///
/// With `[tls]` configured every connection is HTTPS; the files are read here, and an unreadable or
/// mismatched certificate or key stops `run` at once with an error log (the `serve` command checks them
/// before it binds, see [`tls::ListenerTls::load`]).
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let tls = match app.config.tls.files() {
        Ok(None) => None,
        Ok(Some(files)) => match tls::ListenerTls::load(&files) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                tracing::error!(error = %e, "TLS cannot start; not serving");
                return;
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "TLS configuration is invalid; not serving");
            return;
        }
    };
    serve(listener, app, tls, shutdown).await;
}

/// [`run`] with the listener's TLS already loaded (`None`: plain HTTP).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<tls::ListenerTls>>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let sweeper = tokio::spawn(sweep_sessions(app.clone()));
    let reloader = tls
        .clone()
        .map(|tls| tokio::spawn(tls.reload_on_change(app.metrics.clone())));
    let limits = limits::ConnectionLimits::new(&app.config.server, app.metrics.clone());
    let refuser = limits::Refuser::new(app.metrics.clone());
    let shared = Arc::new(Shared {
        app: app.clone(),
        // Per-client limit of the unauthenticated public verify endpoint: the server's, like the listener.
        limiter: Arc::new(rate::RateLimiter::new(
            app.config.audit.public_verify_per_minute,
        )),
        auth_failures: Arc::new(rate::RateLimiter::new(
            app.config.server.auth_failures_per_minute,
        )),
        tls: tls.clone(),
        bursts: release::Bursts::start(),
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Admission is a counter under a lock held for no await; a refused connection costs no task unless
        // it is answered (and answering is bounded).
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                refuser.refuse(stream, why, tls.is_none());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve(shared.clone(), stream, peer, slot));
    }
    sweeper.abort();
    if let Some(reloader) = reloader {
        reloader.abort();
    }
}

/// Forgets sessions idle past the timeout, recording their end.
async fn sweep_sessions(app: Arc<App>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tick.tick().await;
        for session in app.sessions.sweep_idle().await {
            let draft = session.audit_event(
                "session_end",
                json!({ "reason": "idle_timeout", "calls": session.calls() }),
            );
            let _ = app.audit.append(draft).await;
        }
    }
}

/// Routes one request. MCP and admin requests from a client with too many failed authentications lately are
/// answered 429 before any token is looked at; each 401 they get counts against their client.
async fn route(
    shared: &connection::Shared,
    arrival: Arrival,
    req: Request<Incoming>,
) -> Response<Body> {
    shared.bursts.request();
    let path = req.uri().path();
    let authenticated = path.starts_with("/mcp/")
        || (path.starts_with("/api/v1/") && path != "/api/v1/public/verify");
    if !authenticated {
        return route_open(shared, arrival, req).await;
    }
    let ip = rate::client_ip(&req);
    if let Err(wait) = shared.auth_failures.peek(ip) {
        shared
            .app
            .metrics
            .listener
            .rate_limited
            .with_label_values(&["auth_failures"])
            .inc();
        return rate::too_many(
            wait,
            "too many failed authentications from this client; retry later",
        );
    }
    let resp = route_open(shared, arrival, req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let _ = shared.auth_failures.check(ip);
    }
    resp
}

async fn route_open(
    shared: &connection::Shared,
    arrival: Arrival,
    req: Request<Incoming>,
) -> Response<Body> {
    let (app, limiter) = (&shared.app, &*shared.limiter);
    let path = req.uri().path().to_owned();
    let base_url = base_url(app, arrival);
    if let Some(upstream) = path.strip_prefix("/mcp/") {
        let upstream = upstream.trim_end_matches('/').to_owned();
        // The request's SERVER span continues the agent's traceparent; its trace id is the one of the logs and
        // the audit events (the fallback only serves embedders that installed no OpenTelemetry layer).
        let (span, trace_id) =
            crate::telemetry::traces::request_span(&upstream, req.headers(), || trace_id(&req));
        let resp = endpoint::handle(app, &upstream, req, &base_url, trace_id)
            .instrument(span.clone())
            .await;
        crate::telemetry::traces::annotate_int(
            &span,
            "http.response.status_code",
            i64::from(resp.status().as_u16()),
        );
        return resp;
    }
    if let Some(upstream) = path.strip_prefix("/.well-known/oauth-protected-resource/mcp/") {
        return endpoint::resource_metadata(app, &base_url, upstream);
    }
    // The runs API: an agent starts and finishes its runs with its JWT; the admin reads them (below).
    if runs::is_agent_route(req.method(), &path) {
        return runs::handle(app, req, &base_url).await;
    }
    match path.as_str() {
        "/health" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/.well-known/oauth-protected-resource/api/v1/runs" => {
            runs::resource_metadata(app, &base_url)
        }
        "/ready" => ready(app).await,
        "/metrics" => Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(full(app.metrics.render()))
            .expect("valid response"),
        // Public: no admin token, rate-limited per client, no event content.
        "/api/v1/public/verify" => {
            let resp = public_verify::handle(app.audit.store(), limiter, &req).await;
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                app.metrics
                    .listener
                    .rate_limited
                    .with_label_values(&["public_verify"])
                    .inc();
            }
            resp
        }
        p if p.starts_with("/api/v1/") => crate::admin::handle(app, req).await,
        p if p == "/ui" || p.starts_with("/ui/") => crate::console::serve(&req),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "not_found", "message": format!("no route for {path}") }),
        ),
    }
}

async fn ready(app: &App) -> Response<Body> {
    let database = app.audit.store().ping().await;
    let policy = !app.policies.current().revision().is_empty();
    let status = if database && policy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({ "ready": database && policy, "database": database, "policy": policy }),
    )
}

/// The base URL agents reach toolgate at: `public_url` if configured, else the address the connection arrived
/// at. Never the request's `Host`: the client chooses it, and it would be reflected into `WWW-Authenticate`
/// and the RFC 9728 metadata that tell agents where to authenticate.
fn base_url(app: &App, arrival: Arrival) -> String {
    match &app.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => arrival.base_url(),
    }
}

/// The trace id of a W3C `traceparent` (continued), or a fresh one.
fn trace_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()))
}

fn parse_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex_ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hex_ok(version, 2)
        && version != "ff"
        && hex_ok(trace, 32)
        && trace != "0".repeat(32)
        && hex_ok(span, 16))
    .then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_continued_only_when_valid() {
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(parse_traceparent("00-XYZ-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent("garbage"), None);
    }
}
