//! The hostile-input suite: toolgate attacked the way an agent holding a valid token would attack it, through the
//! real server on a loopback port with the shipped policies. One module per class of attack, covering both the
//! bypasses that were found and fixed (each a regression test) and the attacks that already held, so that none
//! of them can come back unnoticed. The `stored` module runs in a process of its own (`tests/hostile_stored.rs`):
//! it captures log lines.

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod dlp_evasion;
mod headers;
mod held;
mod identity;
mod parsing;
mod sse_framing;
mod targets;
mod tls;

/// Asks `GET /health` `times` times over one HTTP/2 connection on `io` (TCP or TLS, already connected) and
/// asserts every answer is a 200 over HTTP/2. `url` is the request's absolute URL.
async fn health_over_http2<I>(io: I, url: &str, times: usize)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..times {
        let req = hyper::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), hyper::StatusCode::OK);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
    }
}
