//! `GET /api/v1/public/verify?hash=H`: anyone may ask whether an event hash is in the log and whether its
//! chain is intact there. No authentication, so no event content in the answer, and a per-client-IP rate
//! limit (429 with `Retry-After`) so the lookup cannot be used to hammer the database.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::audit::AuditStore;
use crate::response::{json_response, Body};

/// Token bucket per client IP: `per_minute` requests, refilled evenly.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Clients tracked at most; past this, full buckets are forgotten (they would allow a request anyway).
const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `ip`, or says how long until one is there.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second)
            .min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

/// The endpoint. The client address comes from the connection (a `SocketAddr` request extension).
pub async fn handle<B>(
    store: &AuditStore,
    limiter: &RateLimiter,
    req: &Request<B>,
) -> Response<Body> {
    let ip = req
        .extensions()
        .get::<SocketAddr>()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = limiter.check(ip) {
        let mut resp = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({ "error": "rate_limited", "message": "too many verify requests from this client" }),
        );
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(seconds.max(1)));
        return resp;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let limiter = RateLimiter::new(3);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let other = IpAddr::from([127, 0, 0, 2]);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(ip, t0).unwrap();
        }
        let wait = limiter.check_at(ip, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another client has its own bucket.
        limiter.check_at(other, t0).unwrap();
        // One token back after 20 s (3 per minute).
        limiter.check_at(ip, t0 + Duration::from_secs(20)).unwrap();
        assert!(limiter.check_at(ip, t0 + Duration::from_secs(20)).is_err());
    }
}
