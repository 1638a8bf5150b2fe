//! Connection admission before any byte is read: a cap on open connections in total and per client IP.
//!
//! A [`ConnectionSlot`] is the proof that a connection was admitted; it is the only way to hold a place, and
//! dropping it (however the connection ends) gives the place back, so a count cannot leak.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::ServerSettings;
use crate::telemetry::metrics::Metrics;

/// Why a connection was not admitted (the `reason` label of `toolgate_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `server.max_connections` connections are open.
    MaxConnections,
    /// `server.max_connections_per_ip` connections are open from this client.
    PerIp,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::PerIp => "per_ip",
        }
    }
}

/// The open connections, counted in total and per client.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    /// A std mutex: held only to count, never across an await. An entry exists only while its count is
    /// non-zero, so the map holds at most `max_total` clients.
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// The unit a per-client limit counts: an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64,
/// so counting single IPv6 addresses would let it open connections without limit). IPv4-mapped IPv6
/// addresses (a dual-stack listener) count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientKey(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

impl ConnectionLimits {
    pub fn new(settings: &ServerSettings, metrics: Arc<Metrics>) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total: settings.max_connections,
            max_per_client: settings.max_connections_per_ip,
            open: Mutex::new(Open::default()),
            metrics,
        })
    }

    /// A place for a new connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let client = ClientKey::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(Refused::MaxConnections);
        }
        let count = open.per_client.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            return Err(Refused::PerIp);
        }
        *count += 1;
        open.total += 1;
        drop(open);
        self.metrics.listener.connections_open.inc();
        Ok(ConnectionSlot {
            limits: self.clone(),
            client,
        })
    }

    /// Open connections in total and from `ip`'s client.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let client = open
            .per_client
            .get(&ClientKey::of(ip))
            .copied()
            .unwrap_or(0);
        (open.total, client)
    }
}

/// One admitted connection's place; given back on drop.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    client: ClientKey,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
        drop(open);
        self.limits.metrics.listener.connections_open.dec();
    }
}

/// Refused connections at most being answered at once; past that a refused connection is closed unanswered
/// (answering must not itself become the resource an attacker exhausts).
const MAX_REFUSALS_ANSWERING: usize = 64;
/// How long a refusal waits for the client to read the answer and close.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refusal log lines at most one per this interval (the metric counts every one).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Turns refused connections away: counted, logged at a bounded rate, and (plain HTTP) answered with a 503.
pub struct Refuser {
    answering: Arc<Semaphore>,
    started: Instant,
    /// Milliseconds since `started` of the last refusal log line, plus one (0 = never).
    last_log_ms: AtomicU64,
    unlogged: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Refuser {
    pub fn new(metrics: Arc<Metrics>) -> Refuser {
        Refuser {
            answering: Arc::new(Semaphore::new(MAX_REFUSALS_ANSWERING)),
            started: Instant::now(),
            last_log_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            metrics,
        }
    }

    /// Refuses `stream`. With `answer` (plain HTTP) it gets a `503` with `Retry-After: 1` and a JSON body on a
    /// task of its own; otherwise (TLS, where answering would cost a handshake) it is closed at once.
    pub fn refuse(&self, stream: TcpStream, why: Refused, answer: bool) {
        self.metrics
            .listener
            .connections_refused
            .with_label_values(&[why.as_str()])
            .inc();
        self.log(why);
        if !answer {
            return;
        }
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_LINGER, answer_503(stream, why)).await;
        });
    }

    fn log(&self, why: Refused) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_log_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= REFUSAL_LOG_INTERVAL.as_millis() as u64;
        if due
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.unlogged.swap(0, Ordering::Relaxed);
            // No client address: it is personal data, and the metric says how often.
            tracing::warn!(
                reason = why.as_str(),
                suppressed,
                "connection refused: too many open connections"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes the refusal, then reads (and discards) until the client closes, so that the close does not reset
/// the connection before the client has read the answer.
async fn answer_503(mut stream: TcpStream, why: Refused) {
    let body = match why {
        Refused::MaxConnections => {
            r#"{"error":"too_many_connections","message":"toolgate has too many open connections; retry later"}"#
        }
        Refused::PerIp => {
            r#"{"error":"too_many_connections","message":"too many open connections from this client; retry later"}"#
        }
    };
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err()
        || stream.write_all(body.as_bytes()).await.is_err()
    {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> Arc<ConnectionLimits> {
        let settings = ServerSettings {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Default::default()
        };
        ConnectionLimits::new(&settings, Arc::new(Metrics::new(10)))
    }

    #[test]
    fn slots_count_and_are_given_back_on_drop() {
        let limits = limits(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refused::PerIp));
        let b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Refused::MaxConnections));
        drop(a1);
        assert_eq!(limits.open(a), (2, 1));
        let a3 = limits.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(limits.open(a), (0, 0));
        assert!(
            limits.open.lock().unwrap().per_client.is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(x), ClientKey::of(y));
        assert_ne!(ClientKey::of(x), ClientKey::of(z));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(v4));
        let limits = limits(10, 1);
        let _held = limits.admit(x).unwrap();
        assert_eq!(limits.admit(y).err(), Some(Refused::PerIp));
        assert!(limits.admit(z).is_ok());
    }
}
