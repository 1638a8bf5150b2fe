//! A tiny OTLP/HTTP sink (`http/protobuf`): accepts `POST /v1/traces` (and any other export path), counts
//! requests and bytes, answers an empty `Export*ServiceResponse` (zero protobuf bytes are a valid one).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What reached the sink.
#[derive(Default, Debug)]
pub struct Received {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

impl Received {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

pub async fn serve(listener: TcpListener, received: Arc<Received>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| take(req, received.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn take(
    req: Request<Incoming>,
    received: Arc<Received>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    received.requests.fetch_add(1, Ordering::Relaxed);
    received.bytes.fetch_add(len as u64, Ordering::Relaxed);
    let mut resp = Response::new(Full::new(Bytes::new()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(resp)
}
