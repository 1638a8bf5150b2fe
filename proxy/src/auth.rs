//! Agent authentication: JWT verification (HS256 dev secret, RS256/ES256 via JWKS), the verified-token cache,
//! and dev token minting for `toolgate token`.
//!
//! Every agent request carries `Authorization: Bearer <JWT>`. [`Authenticator::verify`] hashes the token and looks
//! it up in a bounded cache first, so a hot agent costs one SHA-256 and one map lookup; only a miss pays for the
//! signature check. The algorithm is chosen by what is configured, never by what the token asks for: an HS256
//! token is checked against the dev secret alone, an RS256/ES256 token against a JWKS key of that exact type.

mod cache;
mod jwks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use jwks::start_jwks_refresh;

/// Verified tokens kept at most; a full cache first drops expired entries, then the oldest.
const CACHE_CAPACITY: usize = 10_000;

/// Longest bearer token accepted. Real agent tokens are well under 4 KiB; the cap keeps a hostile header from
/// costing more than one cheap length check.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest TTL `toolgate token` mints: dev tokens are meant to be short-lived.
const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

fn default_leeway_seconds() -> u64 {
    30
}

fn default_jwks_refresh_seconds() -> u64 {
    300
}

/// The `[auth]` table of toolgate.toml (env overrides are applied by config.rs, not here).
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Shared HS256 secret for dev and test tokens (`toolgate token`). Anyone holding it can mint tokens.
    pub hs256_secret: Option<String>,
    /// A JWKS document on disk with the RS256/ES256 public keys of the token issuer.
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS endpoint, fetched at start and every `jwks_refresh_seconds`.
    pub jwks_url: Option<String>,
    /// Required `iss`; none = not checked.
    pub issuer: Option<String>,
    /// Required member of `aud`; none = not checked.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
    /// How often `jwks_url` is fetched again.
    #[serde(default = "default_jwks_refresh_seconds")]
    pub jwks_refresh_seconds: u64,
}

// Written by hand rather than derived so that a defaulted `[auth]` table gets the same leeway and refresh
// period as one read from TOML.
impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            hs256_secret: None,
            jwks_file: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway_seconds: default_leeway_seconds(),
            jwks_refresh_seconds: default_jwks_refresh_seconds(),
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url.as_deref().map(jwks::redact_url))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("jwks_refresh_seconds", &self.jwks_refresh_seconds)
            .finish()
    }
}

impl AuthSettings {
    /// Checks the table on its own, before anything is loaded.
    ///
    /// A short HS256 secret is accepted: this function has no way to warn, and the secret is for dev and test
    /// tokens only. Use at least 32 random bytes anyway; only an empty secret is an error.
    pub fn validate(&self) -> Result<(), AuthSetupError> {
        if self.hs256_secret.is_none() && self.jwks_file.is_none() && self.jwks_url.is_none() {
            return Err(AuthSetupError::NoMethod);
        }
        if self.hs256_secret.as_deref() == Some("") {
            return Err(AuthSetupError::EmptySecret);
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(AuthSetupError::TwoJwksSources);
        }
        if let Some(url) = &self.jwks_url {
            jwks::parse_url(url)?;
        }
        if self
            .jwks_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(AuthSetupError::EmptySetting("auth.jwks_file"));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(AuthSetupError::EmptySetting("auth.issuer"));
        }
        if self.audience.as_deref() == Some("") {
            return Err(AuthSetupError::EmptySetting("auth.audience"));
        }
        if self.jwks_refresh_seconds == 0 {
            return Err(AuthSetupError::ZeroRefresh);
        }
        Ok(())
    }
}

/// Who the agent is, as its verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    /// The `sub` claim.
    pub id: String,
    /// The `tenant` claim; an empty string counts as none.
    pub tenant_id: Option<String>,
    /// The `roles` claim; absent = no roles.
    pub roles: Vec<String>,
    /// Every claim of the token, for policies that look further.
    pub claims: Value,
    /// The `exp` claim, unix seconds.
    pub expires_at: u64,
}

impl AgentIdentity {
    /// The agent as sessions, escalations and approvals know it: its tenant and its `sub` together.
    pub fn key(&self) -> AgentKey {
        AgentKey {
            tenant_id: self.tenant_id.clone(),
            agent_id: self.id.clone(),
        }
    }
}

/// Who owns a session, an escalation or an approval. A `sub` is unique only within its tenant (each tenant's
/// issuer names its own agents), so two tenants' `alice` are two agents: this key is only ever compared whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentKey {
    /// The `tenant` claim; `None` for an agent of no tenant.
    pub tenant_id: Option<String>,
    /// The `sub` claim.
    pub agent_id: String,
}

/// Why a request's agent token was refused. Every variant becomes a 401; none carries token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    MissingToken,
    #[error("the Authorization header is not `Bearer <JWT>` with a well-formed JWT")]
    Malformed,
    /// The token's `alg` (a known JWS name, or `other`) is not accepted with the configured keys.
    #[error("token algorithm {0} is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("no configured key matches the token's key id")]
    UnknownKey,
    #[error("the key named by the token's kid is not a key for the token's algorithm")]
    KeyMismatch,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token has no numeric exp claim")]
    MissingExpiry,
    #[error("token issuer is not the configured issuer")]
    WrongIssuer,
    #[error("token audience does not include the configured audience")]
    WrongAudience,
    #[error("token has no non-empty sub claim")]
    MissingSubject,
    /// A claim toolgate reads (`tenant`, `roles`, `nbf`) has the wrong JSON type.
    #[error("token claim {0} has the wrong type")]
    InvalidClaim(&'static str),
}

impl AuthError {
    /// RFC 6750 error code for WWW-Authenticate: "invalid_request" for missing/malformed, else "invalid_token".
    pub fn oauth_error(&self) -> &'static str {
        match self {
            AuthError::MissingToken | AuthError::Malformed => "invalid_request",
            _ => "invalid_token",
        }
    }

    /// A short reason for `error_description` and logs; never contains token content.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "bearer token required",
            AuthError::Malformed => "malformed bearer token",
            AuthError::UnsupportedAlgorithm(_) => "token algorithm not accepted",
            AuthError::UnknownKey => "unknown signing key",
            AuthError::KeyMismatch => "signing key does not match the token algorithm",
            AuthError::BadSignature => "invalid token signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::MissingExpiry => "token has no expiry",
            AuthError::WrongIssuer => "wrong token issuer",
            AuthError::WrongAudience => "wrong token audience",
            AuthError::MissingSubject => "token has no subject",
            AuthError::InvalidClaim(_) => "invalid token claim",
        }
    }
}

/// Why authentication could not be set up (or a dev token minted). Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("no agent authentication configured: set auth.hs256_secret, auth.jwks_file or auth.jwks_url")]
    NoMethod,
    #[error("auth.hs256_secret is empty")]
    EmptySecret,
    #[error("auth.jwks_file and auth.jwks_url are both set: configure one JWKS source")]
    TwoJwksSources,
    #[error("{0} is set but empty")]
    EmptySetting(&'static str),
    #[error("auth.jwks_url must be an absolute http:// or https:// URL")]
    BadJwksUrl,
    #[error("auth.jwks_refresh_seconds must be at least 1")]
    ZeroRefresh,
    #[error("cannot read JWKS file {path}: {source}")]
    ReadJwksFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JWKS is not a JSON object with a \"keys\" array: {0}")]
    BadJwks(String),
    #[error(
        "JWKS has no usable signing key (RSA for RS256, or EC P-256 for ES256, with use \"sig\")"
    )]
    NoUsableKey,
    /// `url` is the JWKS URL without user info or query, which may hold credentials.
    #[error("fetching JWKS from {url} failed: {reason}")]
    JwksFetch { url: String, reason: String },
    #[error("no auth.hs256_secret configured: cannot mint a dev token")]
    NoHs256Secret,
    #[error("the token subject is empty")]
    EmptySubject,
    #[error("token TTL must be between 1 second and 365 days")]
    BadTtl,
    #[error("cannot sign the token: {0}")]
    Mint(String),
}

/// Verifies agent tokens. Shared by every connection (`Send + Sync`); a JWKS refresh swaps the key set whole.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    /// Whether RS256/ES256 are expected at all: without a JWKS source they are refused as unsupported.
    jwks_configured: bool,
    keys: ArcSwap<jwks::KeySet>,
    /// Serialises `set_jwks` so two refreshes cannot hand out the same key generation.
    keys_writer: Mutex<()>,
    validation_hs256: Validation,
    validation_rs256: Validation,
    validation_es256: Validation,
    cache: cache::TokenCache,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks_configured", &self.jwks_configured)
            .field("jwks_keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates `settings` and loads `jwks_file` now; keys from `jwks_url` arrive via [`start_jwks_refresh`].
    pub fn new(settings: &AuthSettings) -> Result<Authenticator, AuthSetupError> {
        settings.validate()?;
        let keys = match &settings.jwks_file {
            Some(path) => {
                let body = std::fs::read(path).map_err(|source| AuthSetupError::ReadJwksFile {
                    path: path.clone(),
                    source,
                })?;
                jwks::KeySet::parse(&body, 1)?
            }
            None => jwks::KeySet::empty(),
        };
        Ok(Authenticator {
            hs256: settings
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks_configured: settings.jwks_file.is_some() || settings.jwks_url.is_some(),
            keys: ArcSwap::from_pointee(keys),
            keys_writer: Mutex::new(()),
            validation_hs256: validation(Algorithm::HS256, settings),
            validation_rs256: validation(Algorithm::RS256, settings),
            validation_es256: validation(Algorithm::ES256, settings),
            cache: cache::TokenCache::new(CACHE_CAPACITY),
        })
    }

    /// `authorization` = the raw Authorization header value (or None). Checks the cache first.
    pub fn verify(&self, authorization: Option<&str>) -> Result<AgentIdentity, AuthError> {
        let token = bearer_token(authorization)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        // Read the generation before verifying, so a key rotation racing with this call leaves the entry stale
        // rather than filing it under the new keys.
        let keys = self.keys.load_full();
        if let Some(identity) = self.cache.get(&digest, now, keys.generation()) {
            return Ok(identity);
        }
        let identity = self.verify_uncached(token, &keys)?;
        self.cache
            .insert(digest, identity.clone(), now, keys.generation());
        Ok(identity)
    }

    /// Replace the JWKS keys (from a file or URL body).
    ///
    /// Returns the number of usable keys. A document without any usable key is refused and the old keys stay,
    /// so a broken refresh cannot lock every agent out. Cached tokens verified under other keys are dropped.
    pub fn set_jwks(&self, jwks_json: &[u8]) -> Result<usize, AuthSetupError> {
        let _writer = self
            .keys_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.keys.load();
        let next = jwks::KeySet::parse(jwks_json, current.generation() + 1)?;
        let count = next.len();
        // An unchanged key set keeps its generation, so a periodic refresh does not empty the cache.
        if next.fingerprint() != current.fingerprint() {
            self.keys.store(Arc::new(next));
        }
        Ok(count)
    }

    fn verify_uncached(
        &self,
        token: &str,
        keys: &jwks::KeySet,
    ) -> Result<AgentIdentity, AuthError> {
        let header = JoseHeader::parse(token)?;
        let (key, validation) = match header.alg.as_str() {
            "HS256" => match &self.hs256 {
                Some(key) => (key, &self.validation_hs256),
                // Covers the classic confusion attack: an HS256 token "signed" with the issuer's public key.
                None => return Err(AuthError::UnsupportedAlgorithm("HS256".into())),
            },
            "RS256" | "ES256" => {
                let (alg, validation) = if header.alg == "RS256" {
                    (Algorithm::RS256, &self.validation_rs256)
                } else {
                    (Algorithm::ES256, &self.validation_es256)
                };
                if !self.jwks_configured && keys.is_empty() {
                    return Err(AuthError::UnsupportedAlgorithm(header.alg));
                }
                (keys.select(alg, header.kid.as_deref())?, validation)
            }
            other => return Err(AuthError::UnsupportedAlgorithm(alg_label(other))),
        };
        let data = jsonwebtoken::decode::<Value>(token, key, validation).map_err(map_jwt_error)?;
        identity_from_claims(data.claims)
    }
}

/// The part of the JOSE header read before choosing a key. Parsed here rather than by jsonwebtoken so that
/// `alg: none` and unknown algorithms get a precise error instead of a JSON one.
struct JoseHeader {
    alg: String,
    kid: Option<String>,
}

impl JoseHeader {
    fn parse(token: &str) -> Result<JoseHeader, AuthError> {
        let encoded = token.split('.').next().ok_or(AuthError::Malformed)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| AuthError::Malformed)?;
        let header: Value = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(AuthError::Malformed),
        };
        // RFC 7515 §4.1.11: extensions marked critical must be understood, and toolgate understands none.
        if header.get("crit").is_some() {
            return Err(AuthError::Malformed);
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::Malformed),
        };
        Ok(JoseHeader { alg, kid })
    }
}

/// Names a refused algorithm without echoing arbitrary token text into errors and logs.
fn alg_label(alg: &str) -> String {
    const KNOWN: &[&str] = &[
        "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA",
    ];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(alg))
        .map_or_else(|| "other".to_string(), |known| known.to_string())
}

fn validation(alg: Algorithm, settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway_seconds;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &settings.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // jsonwebtoken refuses any token carrying `aud` when no audience is set; unconfigured means unchecked.
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSubject => AuthError::MissingSubject,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => AuthError::MissingExpiry,
            "iss" => AuthError::WrongIssuer,
            "aud" => AuthError::WrongAudience,
            _ => AuthError::Malformed,
        },
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::KeyMismatch,
        _ => AuthError::Malformed,
    }
}

fn identity_from_claims(claims: Value) -> Result<AgentIdentity, AuthError> {
    let id = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.trim().is_empty() => sub.clone(),
        _ => return Err(AuthError::MissingSubject),
    };
    let tenant_id = match claims.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(tenant)) if tenant.is_empty() => None,
        Some(Value::String(tenant)) => Some(tenant.clone()),
        Some(_) => return Err(AuthError::InvalidClaim("tenant")),
    };
    let roles = match claims.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|role| role.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(AuthError::InvalidClaim("roles"))?,
        Some(_) => return Err(AuthError::InvalidClaim("roles")),
    };
    // jsonwebtoken silently skips an `nbf` it cannot read as a number; a token that says "not before" in a
    // form we cannot check is refused instead of treated as valid now.
    if claims
        .get("nbf")
        .is_some_and(|nbf| numeric_date(nbf).is_none())
    {
        return Err(AuthError::InvalidClaim("nbf"));
    }
    let expires_at = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(AuthError::MissingExpiry)?;
    Ok(AgentIdentity {
        id,
        tenant_id,
        roles,
        claims,
        expires_at,
    })
}

/// A JWT NumericDate as whole seconds, read the way jsonwebtoken reads it (fractions rounded).
fn numeric_date(value: &Value) -> Option<u64> {
    if let Some(seconds) = value.as_u64() {
        return Some(seconds);
    }
    let seconds = value.as_f64()?;
    (seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64)
        .then(|| seconds.round() as u64)
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive, RFC 7235) and checks its shape.
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::MissingToken)?;
    let (scheme, rest) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = rest.trim_start_matches(' ');
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if well_formed {
        Ok(token)
    } else {
        Err(AuthError::Malformed)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `toolgate token`: an HS256 JWT with sub, tenant (if any), roles, iat, exp = now + ttl (and iss/aud when configured).
pub fn mint_hs256(
    settings: &AuthSettings,
    sub: &str,
    tenant: Option<&str>,
    roles: &[String],
    ttl: Duration,
) -> Result<String, AuthSetupError> {
    let secret = match settings.hs256_secret.as_deref() {
        None => return Err(AuthSetupError::NoHs256Secret),
        Some("") => return Err(AuthSetupError::EmptySecret),
        Some(secret) => secret,
    };
    if sub.trim().is_empty() {
        return Err(AuthSetupError::EmptySubject);
    }
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(AuthSetupError::BadTtl);
    }
    let now = unix_now();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), sub.into());
    if let Some(tenant) = tenant.filter(|t| !t.is_empty()) {
        claims.insert("tenant".into(), tenant.into());
    }
    claims.insert("roles".into(), roles.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    if let Some(issuer) = &settings.issuer {
        claims.insert("iss".into(), issuer.as_str().into());
    }
    if let Some(audience) = &settings.audience {
        claims.insert("aud".into(), audience.as_str().into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthSetupError::Mint(e.to_string()))
}

/// Parses "1h", "30m", "45s", "2d", "90" (seconds) for --ttl.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let invalid = || {
        format!("invalid TTL {text:?}: expected a whole number with an optional unit s, m, h or d (e.g. 30m)")
    };
    let (digits, unit) = match text.as_bytes().last() {
        Some(last) if last.is_ascii_alphabetic() => {
            (&text[..text.len() - 1], last.to_ascii_lowercase())
        }
        _ => (text, b's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let unit_seconds: u64 = match unit {
        b's' => 1,
        b'm' => 60,
        b'h' => 3_600,
        b'd' => 86_400,
        _ => return Err(invalid()),
    };
    let too_long = || format!("TTL {text:?} is longer than 365 days");
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .ok_or_else(too_long)?;
    if seconds == 0 {
        return Err(format!("TTL {text:?} must be at least 1 second"));
    }
    let ttl = Duration::from_secs(seconds);
    if ttl > MAX_TTL {
        return Err(too_long());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests;
