//! Per-client-IP token buckets: the public verify endpoint's request limit and the limit on failed
//! authentications (agents' 401s and the admin API's), so neither a database lookup nor a token guess can be
//! hammered from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::limits::ClientKey;
use crate::response::{json_response, Body};

/// The client's address, from the connection (a `SocketAddr` request extension); `0.0.0.0` when an embedder's
/// connection set none, so such requests share one bucket rather than escape the limit.
pub fn client_ip<B>(req: &hyper::Request<B>) -> IpAddr {
    req.extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A 429 with `Retry-After` (whole seconds, at least 1) and a JSON body saying why.
pub fn too_many(wait: Duration, message: &str) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({ "error": "rate_limited", "message": message }),
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from(seconds.max(1)));
    resp
}

/// Token bucket per client (an IPv4 address or an IPv6 /64, as the connection limits count): `per_minute` requests, refilled evenly.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
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
        self.check_at(ip, Instant::now(), true)
    }

    /// Whether `ip` has a token left, without taking it; if not, how long until one is there.
    pub fn peek(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now(), false)
    }

    fn check_at(&self, ip: IpAddr, now: Instant, take: bool) -> Result<(), Duration> {
        let key = ClientKey::of(ip);
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !take && !buckets.contains_key(&key) {
            // A client never counted has its whole bucket: nothing to remember for a look.
            return Ok(());
        }
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&key) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second)
            .min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
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
            limiter.check_at(ip, t0, true).unwrap();
        }
        let wait = limiter.check_at(ip, t0, true).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another client has its own bucket.
        limiter.check_at(other, t0, true).unwrap();
        // One token back after 20 s (3 per minute).
        limiter
            .check_at(ip, t0 + Duration::from_secs(20), true)
            .unwrap();
        assert!(limiter
            .check_at(ip, t0 + Duration::from_secs(20), true)
            .is_err());
    }

    #[test]
    fn a_peek_takes_nothing() {
        let limiter = RateLimiter::new(1);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.check_at(ip, t0, false).unwrap();
        }
        limiter.check_at(ip, t0, true).unwrap();
        assert!(limiter.check_at(ip, t0, false).is_err());
    }
}
