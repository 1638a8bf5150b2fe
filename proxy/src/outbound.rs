//! The one outbound HTTP(S) client: built once at start and handed to everything that calls out (HTTP
//! upstreams, the OTLP exporter over http/protobuf, the audit checkpoint sink), so they share one connection pool
//! and one TLS configuration.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A CA file that cannot be used to build a client.
#[derive(Debug, thiserror::Error)]
#[error("cannot use CA file {0}: {1}")]
pub struct CaFileError(pub String, pub String);

/// Idle connections kept per upstream host after a burst.
pub const MAX_IDLE_PER_UPSTREAM: usize = 64;

/// The pooled HTTP(S) client every outbound call shares.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the shared client: HTTP/1.1, rustls with the Mozilla roots for https, pooled connections.
pub fn client() -> HttpClient {
    client_trusting(None).expect("the built-in roots need no file")
}

/// A client that trusts the Mozilla roots plus the PEM certificates in `ca_file` (a private CA of an
/// internal upstream). TLS is rustls with the ring provider, TLS 1.2 and 1.3.
pub fn client_trusting(ca_file: Option<&std::path::Path>) -> Result<HttpClient, CaFileError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let bad = |why: String| CaFileError(path.display().to_string(), why);
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificate in the file".into()));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CaFileError("-".into(), e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        // A burst opens as many upstream connections as calls in flight; past it, keep only what steady load
        // reuses. Unbounded (hyper's default), 400 idle connections left by an overload held ~70 MiB of buffers
        // for the 90 s of the idle timeout.
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(https))
}
