//! Unauthenticated clients against the listener itself (finding 6): connections that send nothing, send a
//! request head a byte at a time, idle after a response, or pile up until the process runs out of file
//! descriptors; and a hostile `Host` header that must never be reflected into `WWW-Authenticate` (finding 12).
//!
//! Attacking sockets are bound to 127.0.0.2 (Linux routes all of 127/8 to lo), so the test's own probes from
//! 127.0.0.1 count as another client.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{self, Options, Proxy};

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

/// toolgate with the given `[server]` lines (and the mock upstream as `web`, so `/mcp/web` exists).
async fn proxy_with(server: &str) -> (Proxy, common::upstream::MockUpstream) {
    let mock = common::upstream::start(Default::default()).await;
    let proxy = common::start(Options {
        demo: false,
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\n[server]\n{server}\n",
            mock.addr
        ),
        ..Default::default()
    })
    .await;
    (proxy, mock)
}

/// A TCP connection to `addr` from `from` (any port).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((IpAddr::from(from), 0)))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// Waits (at most `limit`) for the server to close `stream`; how long it took, or `None` if it stayed open.
/// Whatever the server sent before closing is returned too.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, Vec<u8>)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some((t0.elapsed(), got))
}

/// `GET /health` over a fresh connection from 127.0.0.1, answered.
async fn health(proxy: &Proxy) -> StatusCode {
    common::send(Method::GET, &proxy.url("/health"), &[], "")
        .await
        .status
}

fn refusals(proxy: &Proxy, reason: &str) -> u64 {
    proxy
        .app
        .metrics
        .listener
        .connections_refused
        .with_label_values(&[reason])
        .get()
}

fn timeouts(proxy: &Proxy, reason: &str) -> u64 {
    proxy
        .app
        .metrics
        .listener
        .connections_timed_out
        .with_label_values(&[reason])
        .get()
}

/// Reads a refused connection's answer: a 503 with `Retry-After` and a JSON body, then the close.
async fn assert_refused_clearly(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (_, answer) = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("a refused connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "refusal answer: {answer:?}"
    );
    assert!(
        answer.contains("retry-after: 1\r\n"),
        "refusal answer: {answer:?}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"], "too_many_connections");
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let (proxy, _mock) =
        proxy_with("header_read_timeout_seconds = 1\nidle_timeout_seconds = 30").await;
    let mut silent = connect_from(ATTACKER, proxy.addr).await;
    let (took, sent) = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("the silent connection is closed");
    assert!(sent.is_empty(), "nothing is answered to nothing");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}, not at the 1 s header timeout"
    );
    assert_eq!(timeouts(&proxy, "header_timeout"), 1);
    assert_eq!(health(&proxy).await, StatusCode::OK);
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let (proxy, _mock) =
        proxy_with("header_read_timeout_seconds = 1\nidle_timeout_seconds = 30").await;
    let stream = connect_from(ATTACKER, proxy.addr).await;
    let (mut reader, mut writer) = stream.into_split();
    // Each byte is fresh activity: a timeout that restarted on every read would never fire.
    let trickle = tokio::spawn(async move {
        let head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for byte in head.iter().cycle().take(100) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let t0 = Instant::now();
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(6), reader.read_to_end(&mut answer)).await;
    let took = t0.elapsed();
    trickle.abort();
    assert!(closed.is_ok(), "the slow head was never cut");
    assert!(answer.is_empty(), "the slow head got an answer: {answer:?}");
    assert!(
        took < Duration::from_secs(3),
        "cut after {took:?}, not at the 1 s header timeout"
    );
    assert_eq!(timeouts(&proxy, "header_timeout"), 1);
}

#[tokio::test]
async fn a_cut_short_http2_preface_is_closed_at_the_header_timeout() {
    let (proxy, _mock) =
        proxy_with("header_read_timeout_seconds = 1\nidle_timeout_seconds = 30").await;
    let mut stream = connect_from(ATTACKER, proxy.addr).await;
    // Half of HTTP/2's preface: not yet a protocol, and not a request head either.
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (took, sent) = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the cut-short preface is closed");
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?}, not at the 1 s header timeout"
    );
    assert!(!sent.starts_with(b"HTTP/1.1 2"), "answered: {sent:?}");
    assert_eq!(timeouts(&proxy, "header_timeout"), 1);
    assert_eq!(health(&proxy).await, StatusCode::OK);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_without_tls() {
    let (proxy, _mock) = proxy_with("").await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let url = format!("http://127.0.0.1:{}/health", proxy.addr.port());
    crate::health_over_http2(stream, &url, 2).await;
}

#[tokio::test]
async fn a_request_head_that_starts_like_the_http2_preface_is_served_as_http1() {
    let (proxy, _mock) = proxy_with("").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // A POST and HTTP/2's preface both begin with "P": the protocol is told once the next bytes come.
    stream.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
        .write_all(
            b"OST /health HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = answer_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_answered_408_at_the_body_timeout_and_never_forwarded() {
    let (proxy, mock) = proxy_with(
        "header_read_timeout_seconds = 5\nidle_timeout_seconds = 30\nbody_read_timeout_seconds = 1",
    )
    .await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "slow" } } }).to_string();
    let head = format!(
        "POST /mcp/web HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
        common::token("trickler", &[]),
        body.len()
    );
    let stream = connect_from(ATTACKER, proxy.addr).await;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    // The head is whole; each body byte is fresh activity, and the whole body would come only after 10 s.
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let t0 = Instant::now();
    let mut answer = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(6), reader.read(&mut answer))
        .await
        .expect("the slow body was never cut")
        .unwrap();
    let took = t0.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "answered after {took:?}, not at the 1 s body timeout"
    );
    assert!(
        mock.state.tool_calls().is_empty(),
        "the partial body reached the upstream"
    );
    assert_eq!(health(&proxy).await, StatusCode::OK);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let (proxy, _mock) =
        proxy_with("header_read_timeout_seconds = 1\nidle_timeout_seconds = 2").await;
    let mut stream = connect_from(ATTACKER, proxy.addr).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let (took, _) = closed_within(&mut stream, Duration::from_secs(6))
        .await
        .expect("the idle keep-alive connection is closed");
    // The 2 s idle timeout, not the 1 s header timeout: a keep-alive client may rest between requests.
    assert!(
        took >= Duration::from_millis(1700) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    assert_eq!(timeouts(&proxy, "idle_timeout"), 1);
    assert_eq!(timeouts(&proxy, "header_timeout"), 0);
}

#[tokio::test]
async fn a_long_sse_stream_outlives_the_idle_timeout() {
    let mock = common::upstream::start(Default::default()).await;
    let proxy = common::start(Options {
        demo: false,
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\n[telemetry]\nsse_keepalive_seconds = 1\n[server]\nheader_read_timeout_seconds = 1\nidle_timeout_seconds = 1\n",
            mock.addr
        ),
        ..Default::default()
    })
    .await;
    let mut stream = connect_from(ATTACKER, proxy.addr).await;
    stream
        .write_all(
            format!(
                "GET /api/v1/audit/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
                common::ADMIN
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Only keep-alive comments flow, yet the response is in flight: the connection must stay open well past
    // both timeouts, and still be delivering at the end.
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut last_data = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(4) {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("the SSE stream was cut after {:?}", t0.elapsed()),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                last_data = t0.elapsed();
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        last_data > Duration::from_secs(3),
        "no data after {last_data:?}: {text}"
    );
    assert_eq!(timeouts(&proxy, "idle_timeout"), 0);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_a_503_and_the_place_comes_back() {
    let (proxy, _mock) = proxy_with("max_connections = 4\nmax_connections_per_ip = 2").await;
    // Two clients fill the cap; the per-IP limit alone would let a third client in.
    let mut held = Vec::new();
    for from in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        for _ in 0..2 {
            held.push(connect_from(from, proxy.addr).await);
        }
    }
    common::eventually(Duration::from_secs(5), || async {
        (proxy.app.metrics.listener.connections_open.get() == 4).then_some(())
    })
    .await;
    let over = connect_from([127, 0, 0, 4], proxy.addr).await;
    assert_refused_clearly(over).await;
    assert_eq!(refusals(&proxy, "max_connections"), 1);
    // Even the operator's probe is refused while the cap is full: the cap protects the process.
    let probe = connect_from([127, 0, 0, 1], proxy.addr).await;
    assert_refused_clearly(probe).await;
    // One connection closes; its place serves the next client.
    drop(held.pop());
    let status = common::eventually(Duration::from_secs(5), || async {
        let s = health(&proxy).await;
        (s == StatusCode::OK).then_some(s)
    })
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn one_client_cannot_take_every_connection_from_the_others() {
    let (proxy, _mock) = proxy_with("max_connections = 100\nmax_connections_per_ip = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(ATTACKER, proxy.addr).await);
    }
    common::eventually(Duration::from_secs(5), || async {
        (proxy.app.metrics.listener.connections_open.get() == 3).then_some(())
    })
    .await;
    for _ in 0..3 {
        let extra = connect_from(ATTACKER, proxy.addr).await;
        assert_refused_clearly(extra).await;
    }
    assert_eq!(refusals(&proxy, "per_ip"), 3);
    // Another client is served all along.
    assert_eq!(health(&proxy).await, StatusCode::OK);
    // The attacker's slots are given back when its connections close.
    held.clear();
    common::eventually(Duration::from_secs(5), || async {
        (proxy.app.metrics.listener.connections_open.get() == 0).then_some(())
    })
    .await;
    let mut again = connect_from(ATTACKER, proxy.addr).await;
    again
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = closed_within(&mut again, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
}

#[tokio::test]
async fn a_hostile_host_header_is_never_reflected_into_www_authenticate() {
    let (proxy, _mock) = proxy_with("").await;
    let own = format!("http://{}", proxy.addr);
    for host in [
        "evil.example",
        "evil.example:443",
        "127.0.0.1.evil.example",
        "[::1]:1",
    ] {
        let answer = common::send(
            Method::POST,
            &proxy.url("/mcp/web"),
            &[("host", host), ("content-type", "application/json")],
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }).to_string(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let challenge = answer.header("www-authenticate").unwrap();
        assert!(
            challenge.contains(&format!(
                "resource_metadata=\"{own}/.well-known/oauth-protected-resource/mcp/web\""
            )),
            "Host {host:?}: {challenge}"
        );
        assert!(
            !challenge.contains("evil") && !challenge.contains("[::1]:1"),
            "{challenge}"
        );
        let metadata = common::send(
            Method::GET,
            &proxy.url("/.well-known/oauth-protected-resource/mcp/web"),
            &[("host", host)],
            "",
        )
        .await;
        assert_eq!(metadata.json()["resource"], format!("{own}/mcp/web"));
    }
}

/// What the server sends on `stream` until it closes the connection, which it must within 5 s.
async fn answer_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// One HTTP/1.1 request from `from`, the connection closed after it; the status line's code and the answer.
async fn request_from(from: [u8; 4], proxy: &Proxy, head: &str) -> (u16, String) {
    let mut stream = connect_from(from, proxy.addr).await;
    stream
        .write_all(format!("{head}connection: close\r\ncontent-length: 0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = answer_until_closed(&mut stream).await;
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

#[tokio::test]
async fn a_client_guessing_tokens_is_answered_429_after_its_failures_and_others_are_not() {
    let (proxy, _mock) = proxy_with("auth_failures_per_minute = 3").await;
    let guess = |token: &str| {
        format!("GET /mcp/web HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nauthorization: Bearer {token}\r\n")
    };
    for n in 0..3 {
        let (code, answer) = request_from(ATTACKER, &proxy, &guess(&format!("guess-{n}"))).await;
        assert_eq!(code, 401, "{answer}");
    }
    // The bucket is empty: no token is looked at, not even a good one, until it refills (one per 20 s).
    let (code, answer) = request_from(ATTACKER, &proxy, &guess("guess-3")).await;
    assert_eq!(code, 429, "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(
        answer.contains("too many failed authentications"),
        "{answer}"
    );
    let good = common::token("agent-1", &[]);
    let (code, _) = request_from(ATTACKER, &proxy, &guess(&good)).await;
    assert_eq!(code, 429);
    // The admin API counts the same way (its tokens are guessed just the same).
    let (code, _) = request_from(
        ATTACKER,
        &proxy,
        "GET /api/v1/audit/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\n",
    )
    .await;
    assert_eq!(code, 429);
    // Another client is untouched, and the open endpoints stay open to the guesser.
    let (code, _) = request_from([127, 0, 0, 3], &proxy, &guess("guess-other")).await;
    assert_eq!(code, 401);
    let (code, _) = request_from(ATTACKER, &proxy, "GET /health HTTP/1.1\r\nhost: x\r\n").await;
    assert_eq!(code, 200);
    let limited = proxy
        .app
        .metrics
        .listener
        .rate_limited
        .with_label_values(&["auth_failures"])
        .get();
    assert_eq!(limited, 3);
}

#[tokio::test]
async fn successful_authentications_never_count_against_a_client() {
    let (proxy, _mock) = proxy_with("auth_failures_per_minute = 1").await;
    let mut agent = common::Agent::new(&proxy, "web", common::token("agent-1", &[]));
    for _ in 0..5 {
        let answer = agent.call("echo", json!({ "text": "hi" })).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}
