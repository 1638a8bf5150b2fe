//! `GET /api/v1/public/verify?hash=H`: anyone may ask whether an event hash is in the log and whether its
//! chain is intact there. No authentication, so no event content in the answer, and a per-client-IP rate
//! limit (429 with `Retry-After`) so the lookup cannot be used to hammer the database.

use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::rate::{client_ip, RateLimiter};
use crate::audit::AuditStore;
use crate::response::{json_response, Body};

/// The endpoint. The client address comes from the connection (a `SocketAddr` request extension).
pub async fn handle<B>(
    store: &AuditStore,
    limiter: &RateLimiter,
    req: &Request<B>,
) -> Response<Body> {
    if let Err(wait) = limiter.check(client_ip(req)) {
        return super::rate::too_many(wait, "too many verify requests from this client");
    }
    let hash = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("hash="));
    let Some(hash) = hash.filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "bad_request", "message": "hash must be an event_hash: 64 hex digits" }),
        );
    };
    match store.public_verify(&hash.to_ascii_lowercase()).await {
        Ok(verdict) => json_response(
            StatusCode::OK,
            &serde_json::to_value(verdict).unwrap_or_default(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "public verify failed");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "unavailable", "message": "the audit log cannot be read right now" }),
            )
        }
    }
}
