//! JWKS: parsing a key set into verification keys, choosing the key for a token, and the periodic URL refresh.
//!
//! Only signature keys toolgate can check are kept: RSA keys for RS256 and EC P-256 keys for ES256. Encryption
//! keys, symmetric (`oct`) keys and other algorithms are skipped, so a JWKS can never turn into an HMAC secret.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AuthError, AuthSetupError, Authenticator};

/// Largest JWKS body accepted from a URL; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Time allowed for one whole fetch (connect, headers and body).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The usable keys of one JWKS document, tagged with a generation that changes whenever the keys do.
pub(super) struct KeySet {
    keys: Vec<VerifyKey>,
    fingerprint: [u8; 32],
    generation: u64,
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The JWK members toolgate reads; everything else (x5c, x5t, …) is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    pub(super) fn empty() -> KeySet {
        KeySet {
            keys: Vec::new(),
            fingerprint: [0; 32],
            generation: 0,
        }
    }

    /// Parses a JWKS document; refuses one with no usable key.
    pub(super) fn parse(json: &[u8], generation: u64) -> Result<KeySet, AuthSetupError> {
        let raw: RawJwks =
            serde_json::from_slice(json).map_err(|e| AuthSetupError::BadJwks(e.to_string()))?;
        let mut keys = Vec::new();
        let mut hasher = Sha256::new();
        for value in raw.keys {
            // One odd key (an unknown type, a member of the wrong JSON type) must not void the whole set.
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            let Some((alg, key, material)) = usable_key(&jwk) else {
                continue;
            };
            for part in [jwk.kid.as_deref().unwrap_or(""), alg_name(alg)]
                .into_iter()
                .chain(material)
            {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part.as_bytes());
            }
            keys.push(VerifyKey {
                kid: jwk.kid,
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(AuthSetupError::NoUsableKey);
        }
        Ok(KeySet {
            keys,
            fingerprint: hasher.finalize().into(),
            generation,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The key for a token signed with `alg` naming `kid`. Without a kid, the one key of that algorithm, if
    /// there is exactly one: guessing among several would let a token pick its key.
    pub(super) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<&DecodingKey, AuthError> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(AuthError::UnknownKey);
                }
                named
                    .find(|k| k.alg == alg)
                    .map(|k| &k.key)
                    .ok_or(AuthError::KeyMismatch)
            }
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.alg == alg);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Ok(&only.key),
                    _ => Err(AuthError::UnknownKey),
                }
            }
        }
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        _ => "RS256",
    }
}

/// The algorithm, decoding key and key material of a JWK toolgate can verify with, or None to skip it.
fn usable_key(jwk: &RawJwk) -> Option<(Algorithm, DecodingKey, [&str; 2])> {
    if jwk.public_key_use.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    match jwk.kty.as_deref()? {
        "RSA" if matches!(jwk.alg.as_deref(), None | Some("RS256")) => {
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            let key = DecodingKey::from_rsa_components(n, e).ok()?;
            Some((Algorithm::RS256, key, [n, e]))
        }
        "EC" if jwk.crv.as_deref() == Some("P-256")
            && matches!(jwk.alg.as_deref(), None | Some("ES256")) =>
        {
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            // P-256 coordinates are exactly 32 bytes; anything else would only fail later, at every request.
            let coordinate_ok = |c: &str| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .is_ok_and(|bytes| bytes.len() == 32)
            };
            if !coordinate_ok(x) || !coordinate_ok(y) {
                return None;
            }
            let key = DecodingKey::from_ec_components(x, y).ok()?;
            Some((Algorithm::ES256, key, [x, y]))
        }
        _ => None,
    }
}

/// Checks that `url` is an absolute http(s) URL.
pub(super) fn parse_url(url: &str) -> Result<Uri, AuthSetupError> {
    let uri: Uri = url.parse().map_err(|_| AuthSetupError::BadJwksUrl)?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(AuthSetupError::BadJwksUrl),
    }
}

/// The URL as it may appear in logs and errors: scheme, host, port and path, without user info or query, where
/// credentials tend to hide.
pub(super) fn redact_url(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("?");
            let host = uri.host().unwrap_or("?");
            match uri.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
                None => format!("{scheme}://{host}{}", uri.path()),
            }
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// Fetches one JWKS URL over HTTP(S) with the webpki roots.
struct JwksFetcher {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: Uri,
}

impl JwksFetcher {
    fn new(uri: Uri) -> JwksFetcher {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        JwksFetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
        }
    }

    /// The response body, or a reason fit for a log line (no body content).
    async fn fetch(&self) -> Result<Bytes, String> {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no complete answer within {}s",
                FETCH_TIMEOUT.as_secs()
            )),
        }
    }

    async fn fetch_inner(&self) -> Result<Bytes, String> {
        let request = hyper::Request::get(self.uri.clone())
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "toolgate")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("cannot read the body: {e}"))?;
        Ok(body.to_bytes())
    }
}

/// Fetch `url` now (error if it fails at start) and then every `jwks_refresh_seconds` in a spawned task; a failed refresh keeps the old keys and logs with tracing::warn!(name of url only). Uses hyper-util's legacy client with hyper-rustls (https) — http:// allowed too (loopback tests).
pub async fn start_jwks_refresh(
    auth: Arc<Authenticator>,
    url: String,
    every: Duration,
) -> Result<tokio::task::JoinHandle<()>, AuthSetupError> {
    let uri = parse_url(&url)?;
    let shown = redact_url(&url);
    let fetcher = JwksFetcher::new(uri);
    let body = fetcher
        .fetch()
        .await
        .map_err(|reason| AuthSetupError::JwksFetch {
            url: shown.clone(),
            reason,
        })?;
    let count = auth.set_jwks(&body)?;
    tracing::info!(url = %shown, keys = count, "loaded JWKS");
    // A zero period would spin; one second is already far more often than any issuer rotates keys.
    let every = every.max(Duration::from_secs(1));
    Ok(tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match fetcher.fetch().await {
                Ok(body) => match auth.set_jwks(&body) {
                    Ok(count) => tracing::debug!(url = %shown, keys = count, "refreshed JWKS"),
                    Err(error) => {
                        tracing::warn!(url = %shown, %error, "JWKS refresh refused; keeping the previous keys")
                    }
                },
                Err(reason) => {
                    tracing::warn!(url = %shown, %reason, "JWKS refresh failed; keeping the previous keys")
                }
            }
        }
    }))
}
