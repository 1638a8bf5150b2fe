//! Tests of agent authentication against real tokens signed with the test keys in `proxy/tests/fixtures/auth`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const RSA1_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa1_private.pem");
const RSA1_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa1_public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa2_private.pem");
const EC1_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/auth/ec1_private.pem");
const JWKS: &[u8] = include_bytes!("../../tests/fixtures/auth/jwks.json");
const JWKS_ROTATED: &[u8] = include_bytes!("../../tests/fixtures/auth/jwks_rotated.json");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

fn hs_settings() -> AuthSettings {
    AuthSettings {
        hs256_secret: Some(SECRET.into()),
        ..AuthSettings::default()
    }
}

fn jwks_settings() -> AuthSettings {
    AuthSettings {
        jwks_file: Some(fixture("jwks.json")),
        ..AuthSettings::default()
    }
}

fn now() -> u64 {
    unix_now()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "tenant": "acme", "roles": ["reader", "writer"], "iat": now(), "exp": now() + 600 })
}

fn sign_hs(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn sign_rs(claims: &Value, private_pem: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
    .unwrap()
}

fn sign_es(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(EC1_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn verify(auth: &Authenticator, token: &str) -> Result<AgentIdentity, AuthError> {
    auth.verify(Some(&bearer(token)))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn hs256_round_trip() {
    let settings = AuthSettings {
        issuer: Some("https://issuer.test".into()),
        audience: Some("toolgate".into()),
        ..hs_settings()
    };
    let roles = vec!["reader".to_string(), "admin".to_string()];
    let token = mint_hs256(
        &settings,
        "agent-7",
        Some("acme"),
        &roles,
        Duration::from_secs(3600),
    )
    .unwrap();
    let auth = Authenticator::new(&settings).unwrap();
    let identity = verify(&auth, &token).unwrap();
    assert_eq!(identity.id, "agent-7");
    assert_eq!(identity.tenant_id.as_deref(), Some("acme"));
    assert_eq!(identity.roles, roles);
    assert_eq!(identity.claims["iss"], "https://issuer.test");
    assert_eq!(identity.claims["aud"], "toolgate");
    let iat = identity.claims["iat"].as_u64().unwrap();
    assert_eq!(identity.expires_at, iat + 3600);
    assert!(iat.abs_diff(now()) <= 5);
}

#[test]
fn minted_token_without_tenant_or_roles() {
    let token = mint_hs256(&hs_settings(), "solo", None, &[], Duration::from_secs(60)).unwrap();
    let identity = verify(&Authenticator::new(&hs_settings()).unwrap(), &token).unwrap();
    assert_eq!(identity.tenant_id, None);
    assert!(identity.roles.is_empty());
    assert!(identity.claims.get("tenant").is_none());
}

#[test]
fn mint_refuses_without_secret_empty_sub_or_bad_ttl() {
    let ttl = Duration::from_secs(60);
    assert!(matches!(
        mint_hs256(&jwks_settings(), "a", None, &[], ttl),
        Err(AuthSetupError::NoHs256Secret)
    ));
    assert!(matches!(
        mint_hs256(&hs_settings(), " ", None, &[], ttl),
        Err(AuthSetupError::EmptySubject)
    ));
    assert!(matches!(
        mint_hs256(&hs_settings(), "a", None, &[], Duration::ZERO),
        Err(AuthSetupError::BadTtl)
    ));
}

#[test]
fn bearer_header_parsing() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_hs(&claims("a"), SECRET.as_bytes());
    assert_eq!(auth.verify(None), Err(AuthError::MissingToken));
    assert_eq!(auth.verify(Some("  ")), Err(AuthError::MissingToken));
    assert_eq!(
        auth.verify(Some(&format!("Basic {token}"))),
        Err(AuthError::Malformed)
    );
    assert_eq!(auth.verify(Some("Bearer")), Err(AuthError::Malformed));
    assert_eq!(
        auth.verify(Some("Bearer not-a-jwt")),
        Err(AuthError::Malformed)
    );
    assert_eq!(auth.verify(Some("Bearer a.b.c")), Err(AuthError::Malformed));
    assert_eq!(
        auth.verify(Some(&format!("Bearer {token}\"x"))),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.verify(Some(&format!("bearer  {token}"))).unwrap().id,
        "a"
    );
    assert_eq!(AuthError::MissingToken.oauth_error(), "invalid_request");
    assert_eq!(AuthError::Malformed.oauth_error(), "invalid_request");
    assert_eq!(AuthError::Expired.oauth_error(), "invalid_token");
}

#[test]
fn expired_token_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c["exp"] = json!(now() - 120); // beyond the 30 s leeway
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::Expired)
    );
    // Within the leeway it is still accepted (clock skew), but never cached.
    c["exp"] = json!(now() - 5);
    let token = sign_hs(&c, SECRET.as_bytes());
    assert!(verify(&auth, &token).is_ok());
    assert_eq!(auth.cache.len(), 0);
}

#[test]
fn missing_or_non_numeric_exp_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::MissingExpiry)
    );
    c["exp"] = json!("tomorrow");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::MissingExpiry)
    );
}

#[test]
fn nbf_in_the_future_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c["nbf"] = json!(now() + 300);
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::NotYetValid)
    );
    c["nbf"] = json!("later");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::InvalidClaim("nbf"))
    );
    c["nbf"] = json!(now() - 10);
    assert!(verify(&auth, &sign_hs(&c, SECRET.as_bytes())).is_ok());
}

#[test]
fn wrong_or_missing_issuer_rejected() {
    let settings = AuthSettings {
        issuer: Some("https://issuer.test".into()),
        ..hs_settings()
    };
    let auth = Authenticator::new(&settings).unwrap();
    let mut c = claims("a");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::WrongIssuer)
    );
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::WrongIssuer)
    );
    c["iss"] = json!("https://issuer.test");
    assert!(verify(&auth, &sign_hs(&c, SECRET.as_bytes())).is_ok());
}

#[test]
fn wrong_or_missing_audience_rejected() {
    let settings = AuthSettings {
        audience: Some("toolgate".into()),
        ..hs_settings()
    };
    let auth = Authenticator::new(&settings).unwrap();
    let mut c = claims("a");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::WrongAudience)
    );
    c["aud"] = json!(["other", "another"]);
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::WrongAudience)
    );
    c["aud"] = json!(["other", "toolgate"]);
    assert!(verify(&auth, &sign_hs(&c, SECRET.as_bytes())).is_ok());
}

#[test]
fn audience_not_checked_when_unconfigured() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c["aud"] = json!("someone-else");
    assert!(verify(&auth, &sign_hs(&c, SECRET.as_bytes())).is_ok());
}

#[test]
fn bad_signature_other_secret_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_hs(&claims("a"), b"another-secret-of-sufficient-length-000");
    assert_eq!(verify(&auth, &token), Err(AuthError::BadSignature));
}

#[test]
fn tampered_payload_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_hs(&claims("a"), SECRET.as_bytes());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("admin").to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&auth, &forged), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let payload = b64(claims("a").to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
        // An unsigned JWT has an empty third part; the shape check must not be what stops it.
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(
            auth.verify(Some(&bearer(&unsigned))),
            Err(AuthError::UnsupportedAlgorithm("none".into())),
            "alg {alg}"
        );
        let with_sig = format!("{header}.{payload}.{}", b64(b"sig"));
        assert_eq!(
            verify(&auth, &with_sig),
            Err(AuthError::UnsupportedAlgorithm("none".into()))
        );
    }
}

#[test]
fn other_algorithms_rejected_without_echoing_them() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let payload = b64(claims("a").to_string().as_bytes());
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims("a"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verify(&auth, &hs512),
        Err(AuthError::UnsupportedAlgorithm("HS512".into()))
    );
    let header = b64(json!({ "alg": "<script>" }).to_string().as_bytes());
    let weird = format!("{header}.{payload}.{}", b64(b"sig"));
    assert_eq!(
        verify(&auth, &weird),
        Err(AuthError::UnsupportedAlgorithm("other".into()))
    );
    let header = b64(json!({ "alg": "HS256", "crit": ["exp"] })
        .to_string()
        .as_bytes());
    let crit = format!("{header}.{payload}.{}", b64(b"sig"));
    assert_eq!(verify(&auth, &crit), Err(AuthError::Malformed));
}

#[test]
fn hs256_signed_with_rsa_public_key_rejected_when_only_jwks() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = encode(
        &header,
        &claims("a"),
        &EncodingKey::from_secret(RSA1_PUBLIC),
    )
    .unwrap();
    assert_eq!(
        verify(&auth, &token),
        Err(AuthError::UnsupportedAlgorithm("HS256".into()))
    );
}

#[test]
fn rs256_token_rejected_when_only_hs256_configured() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_rs(&claims("a"), RSA1_PRIVATE, Some("rsa-1"));
    assert_eq!(
        verify(&auth, &token),
        Err(AuthError::UnsupportedAlgorithm("RS256".into()))
    );
}

#[test]
fn rs256_and_es256_verified_from_jwks() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    let rs = verify(
        &auth,
        &sign_rs(&claims("rsa-agent"), RSA1_PRIVATE, Some("rsa-1")),
    )
    .unwrap();
    assert_eq!(rs.id, "rsa-agent");
    assert_eq!(rs.tenant_id.as_deref(), Some("acme"));
    assert_eq!(rs.roles, vec!["reader", "writer"]);
    let es = verify(&auth, &sign_es(&claims("ec-agent"), Some("ec-1"))).unwrap();
    assert_eq!(es.id, "ec-agent");
    // Without a kid, the only key of the token's algorithm is used.
    assert_eq!(
        verify(&auth, &sign_rs(&claims("no-kid"), RSA1_PRIVATE, None))
            .unwrap()
            .id,
        "no-kid"
    );
    assert_eq!(
        verify(&auth, &sign_es(&claims("no-kid-ec"), None))
            .unwrap()
            .id,
        "no-kid-ec"
    );
}

#[test]
fn rs256_signed_by_another_key_rejected() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    let token = sign_rs(&claims("a"), RSA2_PRIVATE, Some("rsa-1"));
    assert_eq!(verify(&auth, &token), Err(AuthError::BadSignature));
}

#[test]
fn jwks_key_of_another_type_rejected() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    // An ES256 token naming the RSA key, and an RS256 token naming the EC key.
    assert_eq!(
        verify(&auth, &sign_es(&claims("a"), Some("rsa-1"))),
        Err(AuthError::KeyMismatch)
    );
    assert_eq!(
        verify(&auth, &sign_rs(&claims("a"), RSA1_PRIVATE, Some("ec-1"))),
        Err(AuthError::KeyMismatch)
    );
}

#[test]
fn unknown_kid_rejected() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    assert_eq!(
        verify(&auth, &sign_rs(&claims("a"), RSA1_PRIVATE, Some("nope"))),
        Err(AuthError::UnknownKey)
    );
    // The encryption key and the symmetric key in the fixture are skipped, not usable for signatures.
    assert_eq!(
        verify(&auth, &sign_rs(&claims("a"), RSA2_PRIVATE, Some("enc-1"))),
        Err(AuthError::UnknownKey)
    );
    assert_eq!(
        verify(&auth, &sign_rs(&claims("a"), RSA1_PRIVATE, Some("hmac-1"))),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn jwks_without_kid_and_several_keys_of_the_alg_is_ambiguous() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    let mut doc: Value = serde_json::from_slice(JWKS).unwrap();
    let rotated: Value = serde_json::from_slice(JWKS_ROTATED).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(rotated["keys"][0].clone());
    assert_eq!(auth.set_jwks(doc.to_string().as_bytes()).unwrap(), 3);
    let token = sign_rs(&claims("a"), RSA1_PRIVATE, None);
    assert_eq!(verify(&auth, &token), Err(AuthError::UnknownKey));
    assert!(verify(&auth, &sign_rs(&claims("a"), RSA2_PRIVATE, Some("rsa-2"))).is_ok());
}

#[test]
fn missing_or_empty_sub_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::MissingSubject)
    );
    c["sub"] = json!("");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::MissingSubject)
    );
    c["sub"] = json!(42);
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::MissingSubject)
    );
}

#[test]
fn claims_of_the_wrong_type_rejected() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let mut c = claims("a");
    c["roles"] = json!("admin");
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::InvalidClaim("roles"))
    );
    c["roles"] = json!(["admin", 1]);
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::InvalidClaim("roles"))
    );
    c["roles"] = json!([]);
    c["tenant"] = json!({ "id": "acme" });
    assert_eq!(
        verify(&auth, &sign_hs(&c, SECRET.as_bytes())),
        Err(AuthError::InvalidClaim("tenant"))
    );
}

#[test]
fn cache_serves_identity_without_verifying_again() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_hs(&claims("cached"), SECRET.as_bytes());
    let first = verify(&auth, &token).unwrap();
    assert_eq!(auth.cache.len(), 1);
    assert_eq!(verify(&auth, &token).unwrap(), first);
    assert_eq!(auth.cache.len(), 1);

    // A token that could never verify is answered from the cache alone: proof the lookup comes first.
    let unverifiable = "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl";
    let digest: [u8; 32] = Sha256::digest(unverifiable.as_bytes()).into();
    let planted = AgentIdentity {
        id: "planted".into(),
        ..first.clone()
    };
    let generation = auth.keys.load().generation();
    auth.cache
        .insert(digest, planted.clone(), now(), generation);
    assert_eq!(verify(&auth, unverifiable), Ok(planted));
}

#[test]
fn cache_does_not_serve_an_expired_token() {
    let settings = AuthSettings {
        leeway_seconds: 0,
        ..hs_settings()
    };
    let auth = Authenticator::new(&settings).unwrap();
    let mut c = claims("short-lived");
    c["exp"] = json!(now() + 1);
    let token = sign_hs(&c, SECRET.as_bytes());
    assert!(verify(&auth, &token).is_ok());
    assert_eq!(auth.cache.len(), 1);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(verify(&auth, &token), Err(AuthError::Expired));
    assert_eq!(auth.cache.len(), 0);
}

#[test]
fn key_rotation_drops_cached_tokens_of_removed_keys() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    let old = sign_rs(&claims("a"), RSA1_PRIVATE, Some("rsa-1"));
    assert!(verify(&auth, &old).is_ok());
    // Same document again: same generation, the cache entry stays valid.
    assert_eq!(auth.set_jwks(JWKS).unwrap(), 2);
    assert_eq!(auth.cache.len(), 1);
    assert!(verify(&auth, &old).is_ok());
    assert_eq!(auth.set_jwks(JWKS_ROTATED).unwrap(), 1);
    assert_eq!(verify(&auth, &old), Err(AuthError::UnknownKey));
    assert!(verify(&auth, &sign_rs(&claims("b"), RSA2_PRIVATE, Some("rsa-2"))).is_ok());
}

#[test]
fn set_jwks_refuses_documents_without_usable_keys_and_keeps_the_old_ones() {
    let auth = Authenticator::new(&jwks_settings()).unwrap();
    assert!(matches!(
        auth.set_jwks(b"not json"),
        Err(AuthSetupError::BadJwks(_))
    ));
    assert!(matches!(
        auth.set_jwks(br#"{"keys": []}"#),
        Err(AuthSetupError::NoUsableKey)
    ));
    let only_oct = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
    assert!(matches!(
        auth.set_jwks(only_oct),
        Err(AuthSetupError::NoUsableKey)
    ));
    assert!(verify(&auth, &sign_rs(&claims("a"), RSA1_PRIVATE, Some("rsa-1"))).is_ok());
}

#[test]
fn settings_validation() {
    assert!(matches!(
        AuthSettings::default().validate(),
        Err(AuthSetupError::NoMethod)
    ));
    let empty = AuthSettings {
        hs256_secret: Some(String::new()),
        ..AuthSettings::default()
    };
    assert!(matches!(empty.validate(), Err(AuthSetupError::EmptySecret)));
    let both = AuthSettings {
        jwks_url: Some("https://issuer.test/jwks".into()),
        ..jwks_settings()
    };
    assert!(matches!(
        both.validate(),
        Err(AuthSetupError::TwoJwksSources)
    ));
    let bad_url = AuthSettings {
        jwks_url: Some("ftp://issuer.test/jwks".into()),
        ..AuthSettings::default()
    };
    assert!(matches!(
        bad_url.validate(),
        Err(AuthSetupError::BadJwksUrl)
    ));
    let empty_issuer = AuthSettings {
        issuer: Some(String::new()),
        ..hs_settings()
    };
    assert!(matches!(
        empty_issuer.validate(),
        Err(AuthSetupError::EmptySetting("auth.issuer"))
    ));
    let missing_file = AuthSettings {
        jwks_file: Some(fixture("does-not-exist.json")),
        ..AuthSettings::default()
    };
    assert!(matches!(
        Authenticator::new(&missing_file),
        Err(AuthSetupError::ReadJwksFile { .. })
    ));
    hs_settings().validate().unwrap();
    jwks_settings().validate().unwrap();
}

#[test]
fn settings_from_toml_defaults_and_unknown_keys() {
    let settings: AuthSettings = toml::from_str("hs256_secret = \"s3cret-value\"").unwrap();
    assert_eq!(settings.leeway_seconds, 30);
    assert_eq!(settings.jwks_refresh_seconds, 300);
    assert_eq!(AuthSettings::default().leeway_seconds, 30);
    assert!(toml::from_str::<AuthSettings>("hs256_secrets = \"x\"").is_err());
}

#[test]
fn debug_redacts_the_secret_and_url_credentials() {
    let settings = AuthSettings {
        jwks_url: Some("https://user:pw@issuer.test/jwks?token=abc".into()),
        ..hs_settings()
    };
    let shown = format!("{settings:?}");
    assert!(!shown.contains(SECRET));
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("pw@"));
    assert!(!shown.contains("token=abc"));
    assert!(shown.contains("https://issuer.test/jwks"));
}

#[test]
fn errors_carry_no_token_content() {
    let auth = Authenticator::new(&hs_settings()).unwrap();
    let token = sign_hs(
        &claims("secret-agent-name"),
        b"wrong-secret-wrong-secret-wrong-secret",
    );
    let error = verify(&auth, &token).unwrap_err();
    for text in [
        error.to_string(),
        error.description().to_string(),
        format!("{error:?}"),
    ] {
        assert!(!text.contains("secret-agent-name"));
        assert!(!text.contains(&token[..20]));
    }
}

#[test]
fn parse_ttl_units() {
    assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_ttl("45s"), Ok(Duration::from_secs(45)));
    assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
    assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_ttl(" 2H "), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_ttl("365d"), Ok(Duration::from_secs(365 * 86_400)));
    for bad in [
        "",
        "h",
        "0",
        "0s",
        "-5m",
        "1.5h",
        "10w",
        "1h30m",
        "366d",
        "99999999999999999999d",
    ] {
        assert!(parse_ttl(bad).is_err(), "{bad:?} should be refused");
    }
}

/// A loopback HTTP server answering every request with the current (status, body).
async fn serve_jwks(state: Arc<Mutex<(u16, Vec<u8>)>>) -> std::net::SocketAddr {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let (status, body) = state.lock().unwrap().clone();
                    async move {
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn start_jwks_refresh_against_loopback_server() {
    let state = Arc::new(Mutex::new((200u16, JWKS.to_vec())));
    let addr = serve_jwks(state.clone()).await;
    let url = format!("http://{addr}/.well-known/jwks.json");
    let settings = AuthSettings {
        jwks_url: Some(url.clone()),
        ..AuthSettings::default()
    };
    let auth = Arc::new(Authenticator::new(&settings).unwrap());
    let old = sign_rs(&claims("a"), RSA1_PRIVATE, Some("rsa-1"));
    let new = sign_rs(&claims("b"), RSA2_PRIVATE, Some("rsa-2"));
    // Before the first fetch, a JWKS-configured authenticator knows no key.
    assert_eq!(verify(&auth, &old), Err(AuthError::UnknownKey));

    let task = start_jwks_refresh(auth.clone(), url, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(verify(&auth, &old).is_ok());
    assert_eq!(verify(&auth, &new), Err(AuthError::UnknownKey));

    // A failing refresh keeps the previous keys.
    *state.lock().unwrap() = (500, b"oops".to_vec());
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(verify(&auth, &old).is_ok());

    // Keys rotated at the issuer arrive with the next refresh.
    *state.lock().unwrap() = (200, JWKS_ROTATED.to_vec());
    assert!(
        eventually(|| verify(&auth, &new).is_ok()).await,
        "rotated key never arrived"
    );
    assert_eq!(verify(&auth, &old), Err(AuthError::UnknownKey));
    task.abort();
}

#[tokio::test]
async fn start_jwks_refresh_fails_when_the_first_fetch_fails() {
    let state = Arc::new(Mutex::new((404u16, Vec::new())));
    let addr = serve_jwks(state.clone()).await;
    let auth = Arc::new(
        Authenticator::new(&AuthSettings {
            jwks_url: Some(format!("http://{addr}/jwks")),
            ..AuthSettings::default()
        })
        .unwrap(),
    );
    let error = start_jwks_refresh(
        auth.clone(),
        format!("http://user:pw@{addr}/jwks?k=v"),
        Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, AuthSetupError::JwksFetch { .. }), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(!text.contains("pw") && !text.contains("k=v"), "{text}");

    *state.lock().unwrap() = (200, br#"{"keys":[]}"#.to_vec());
    let error = start_jwks_refresh(auth, format!("http://{addr}/jwks"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(error, AuthSetupError::NoUsableKey));
}
