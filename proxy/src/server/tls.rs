//! HTTPS on the listener (rustls, ring): TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, the certificate and
//! the client CA re-read when their files change on disk, and optional client certificates for agents.
//!
//! The serving certificate and the server configuration (which holds the client certificate verifier) sit behind
//! [`ArcSwap`]s: each handshake loads them without a lock, and the reload task swaps in a new one only after it
//! parsed (and, for a certificate, its key matched), so a bad file on disk keeps the old one serving (and is
//! logged and counted).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsFiles};
use crate::telemetry::metrics::Metrics;

/// How often the certificate and key files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("the key does not fit the certificate or is not usable: {0}")]
    Key(rustls::Error),
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate every handshake is answered with; swapped whole on reload.
#[derive(Debug)]
pub struct ServingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS: the server configuration and what the reload task needs.
pub struct ListenerTls {
    config: ArcSwap<ServerConfig>,
    cert: Arc<ServingCert>,
    files: TlsFiles,
}

impl ListenerTls {
    /// Reads the files and builds the server configuration; any error stops start-up.
    pub fn load(files: &TlsFiles) -> Result<ListenerTls, TlsError> {
        let key = certified_key(&files.cert_file, &files.key_file)?;
        let cert = Arc::new(ServingCert {
            current: ArcSwap::from_pointee(key),
        });
        let config = server_config(files, &cert)?;
        Ok(ListenerTls {
            config: ArcSwap::from_pointee(config),
            cert,
            files: files.clone(),
        })
    }

    /// The acceptor for a new connection, with the configuration serving now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Watches the files' modification times every [`RELOAD_INTERVAL`]: a changed certificate or key is swapped
    /// in for new handshakes, a changed client CA file rebuilds the client certificate verifier. Runs until
    /// aborted.
    pub async fn reload_on_change(self: Arc<Self>, metrics: Arc<Metrics>) {
        let pair = |files: &TlsFiles| (modified(&files.cert_file), modified(&files.key_file));
        let ca = |files: &TlsFiles| files.client_auth.as_ref().map(|(_, f)| modified(f));
        let (mut seen_pair, mut seen_ca) = (pair(&self.files), ca(&self.files));
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (now_pair, now_ca) = (pair(&self.files), ca(&self.files));
            let mut results = Vec::new();
            if now_pair != seen_pair {
                seen_pair = now_pair;
                results.push(self.reload_certificate());
            }
            if now_ca != seen_ca {
                seen_ca = now_ca;
                results.push(self.reload_client_ca());
            }
            for result in results {
                metrics
                    .listener
                    .tls_reloads
                    .with_label_values(&[result])
                    .inc();
            }
        }
    }

    fn reload_certificate(&self) -> &'static str {
        match certified_key(&self.files.cert_file, &self.files.key_file) {
            Ok(key) => {
                self.cert.current.store(Arc::new(key));
                tracing::info!(cert_file = %self.files.cert_file.display(), "TLS certificate reloaded");
                "ok"
            }
            Err(e) => {
                // A half-written or mismatched pair must not take HTTPS down: keep serving the old one.
                tracing::error!(error = %e, "TLS certificate reload failed; the previous certificate stays");
                "error"
            }
        }
    }

    fn reload_client_ca(&self) -> &'static str {
        match server_config(&self.files, &self.cert) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                tracing::info!("TLS client CA reloaded");
                "ok"
            }
            Err(e) => {
                // A bad CA file must neither open the door nor close it: the previous verifier stays.
                tracing::error!(error = %e, "TLS client CA reload failed; the previous CA stays");
                "error"
            }
        }
    }
}

/// The server configuration: protocol versions, ALPN, the certificate resolver and the client certificate
/// verifier built from the client CA file as it is now.
fn server_config(files: &TlsFiles, cert: &Arc<ServingCert>) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?;
    let builder = match &files.client_auth {
        None => builder.with_no_client_auth(),
        Some((mode, ca_file)) => {
            let roots = client_roots(ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required | ClientAuth::None => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa {
                path: ca_file.display().to_string(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The chain and key, checked to belong together.
fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_file)?;
    let key =
        PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|e| pem_error(key_file, e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)
}

fn client_roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: ca_file.display().to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}
