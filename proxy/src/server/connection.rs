//! One accepted connection, from its admission slot to its close: the TLS handshake if any, HTTP/1.1 or HTTP/2
//! (detected), and the watchdog that closes it when it idles or dawdles (see [`super::activity`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::activity::{Activity, BusyBody, Expiry, Watched};
use super::limits::ConnectionSlot;
use super::rate::RateLimiter;
use crate::app::App;

/// How long a connection closed for idling may take to say goodbye (HTTP/2 GOAWAY, TLS close) before it is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// HTTP/2: how long a keep-alive ping may go unanswered before the connection is closed as dead.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a request arrived: the listener's side of its connection, and whether it came over TLS. The base URL
/// agents are told about is built from this when `public_url` is unset, never from the client's `Host`.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub local: SocketAddr,
    pub tls: bool,
}

impl Arrival {
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local)
    }
}

/// What every connection of one listener shares.
pub struct Shared {
    pub app: Arc<App>,
    /// The public verify endpoint's per-client request limit.
    pub limiter: Arc<RateLimiter>,
    /// Failed authentications per client; an exhausted client's MCP and admin requests are answered 429.
    pub auth_failures: Arc<RateLimiter>,
    /// The listener's TLS, when it serves HTTPS: each connection takes the configuration serving now.
    pub tls: Option<Arc<super::tls::ListenerTls>>,
    /// Told of every request, so that the memory a burst freed is given back once it is over.
    pub bursts: Arc<super::release::Bursts>,
}

/// Serves one admitted connection until it ends; the slot is given back when this returns.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
    let _slot = slot;
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let settings = &shared.app.config.server;
    let activity = Activity::new(settings);
    let arrival = Arrival {
        local,
        tls: shared.tls.is_some(),
    };
    let bursts = shared.bursts.clone();
    match shared.tls.as_ref().map(|tls| tls.acceptor()) {
        None => plain(shared, stream, peer, arrival, activity).await,
        // Boxed: a TLS connection's state (handshake, rustls session) is twice a plain one's, and the task of
        // every connection, plain or not, would otherwise be as large as the largest.
        Some(acceptor) => {
            let watched = Watched::new(stream, activity.clone());
            Box::pin(https(shared, acceptor, watched, peer, arrival, activity)).await
        }
    }
    bursts.connection_ended();
}

async fn plain(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    arrival: Arrival,
    activity: Arc<Activity>,
) {
    // Waiting for the first bytes counts as part of the request head: a silent client is closed on time.
    let protocol = tokio::select! {
        seen = sniff(&stream) => seen,
        why = activity.expired() => {
            count_expiry(&shared.app, why);
            return;
        }
    };
    let watched = Watched::new(stream, activity.clone());
    http(
        shared,
        TokioIo::new(watched),
        peer,
        arrival,
        activity,
        protocol,
    )
    .await
}

async fn https(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    watched: Watched<TcpStream>,
    peer: SocketAddr,
    arrival: Arrival,
    activity: Arc<Activity>,
) {
    // The handshake counts as part of the request head: a client that stalls it is closed on time.
    let handshake = tokio::select! {
        done = acceptor.accept(watched) => done,
        why = activity.expired() => {
            count_expiry(&shared.app, why);
            return;
        }
    };
    match handshake {
        Ok(tls) => {
            let protocol = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                Some(b"http/1.1") => Protocol::Http1,
                _ => Protocol::Unknown,
            };
            http(shared, TokioIo::new(tls), peer, arrival, activity, protocol).await
        }
        Err(e) => {
            shared.app.metrics.listener.tls_handshake_failures.inc();
            tracing::debug!(error = %e, "TLS handshake failed");
        }
    }
}

/// What a connection speaks, when it is known before hyper reads from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// Not known yet: hyper reads the first bytes itself to tell.
    Unknown,
}

/// The first bytes of a client speaking HTTP/2 without TLS (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol a plain connection speaks, told from its first bytes without consuming them. Left to hyper
/// to tell, its HTTP/1 connection starts with those bytes as a separate read and grows its read buffer to twice
/// its size for the connection's whole life (measured: 16 KiB per idle keep-alive connection instead of 8).
async fn sniff(stream: &TcpStream) -> Protocol {
    let mut head = [0; H2_PREFACE.len()];
    match stream.peek(&mut head).await {
        Ok(n) => protocol_of(&head[..n]),
        // Hyper meets the error (or the end) at its first read and ends the connection as it would have.
        Err(_) => Protocol::Unknown,
    }
}

/// The protocol the first bytes of a plain connection tell, as hyper would: HTTP/1 as soon as one byte differs
/// from the HTTP/2 preface; HTTP/2 with the whole preface; otherwise not known yet (a preface cut short).
fn protocol_of(head: &[u8]) -> Protocol {
    if !H2_PREFACE.starts_with(head) {
        Protocol::Http1
    } else if head.len() == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unknown
    }
}

async fn http<I>(
    shared: Arc<Shared>,
    io: I,
    peer: SocketAddr,
    arrival: Arrival,
    activity: Arc<Activity>,
    protocol: Protocol,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let watchdog = activity.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        // The client address, for per-client limits (the public verify endpoint).
        req.extensions_mut().insert(peer);
        let busy = activity.busy();
        let shared = shared.clone();
        // Boxed: hyper keeps room for one service future per HTTP/1 connection for the connection's whole life,
        // and the pipeline's future is large; boxed, an idle keep-alive connection keeps only a pointer.
        Box::pin(async move {
            let resp = super::route(&shared, arrival, req).await;
            Ok::<_, Infallible>(resp.map(|body| BusyBody::new(body, busy)))
        })
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Timeouts are the watchdog's (one rule for both protocols and TLS); hyper's own header timer would restart
    // at every idle keep-alive read and cut idle connections at the header timeout.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(app.config.server.idle_timeout())
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
        Protocol::Unknown => builder,
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        why = watchdog.expired() => count_expiry(&app, why),
    }
    conn.as_mut().graceful_shutdown();
    // A request that slipped in as the watchdog fired is let finish; an idle connection gets a short grace.
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(CLOSE_GRACE) => if watchdog.idle() { return },
        }
    }
}

fn count_expiry(app: &App, why: Expiry) {
    app.metrics
        .listener
        .connections_timed_out
        .with_label_values(&[why.as_str()])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_the_protocol_as_hyper_would() {
        assert_eq!(protocol_of(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        // One byte is enough once it differs from the preface.
        assert_eq!(protocol_of(b"G"), Protocol::Http1);
        assert_eq!(protocol_of(b"PO"), Protocol::Http1);
        assert_eq!(protocol_of(H2_PREFACE), Protocol::Http2);
        // The preface's last byte wrong: HTTP/1 (hyper then answers it as a malformed request).
        assert_eq!(
            protocol_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\x00"),
            Protocol::Http1
        );
        // A prefix of the preface, or nothing at all: hyper reads on and tells.
        assert_eq!(protocol_of(b"P"), Protocol::Unknown);
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n"), Protocol::Unknown);
        assert_eq!(protocol_of(b""), Protocol::Unknown);
    }
}
