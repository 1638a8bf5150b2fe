//! Attacks that already hold, pinned so they cannot regress: forged agent tokens (alg `none`, the wrong HS256
//! secret, an HS256 token keyed with the issuer's RSA public key, expired, without `sub`), SQL injection through
//! the admin API's filters, and one agent using another's session.

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{
    self, now, send, start, token, token_with, upstream, Agent, Options, ADMIN, SECRET,
};

const RSA1_PRIVATE: &[u8] = include_bytes!("../fixtures/auth/rsa1_private.pem");
const RSA1_PUBLIC: &[u8] = include_bytes!("../fixtures/auth/rsa1_public.pem");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "tenant": "tenant-1", "iat": now(), "exp": now() + 600 })
}

fn signed(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: &Value,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_before_anything_reaches_the_upstream() {
    let mock = upstream::start(upstream::State::default()).await;
    let jwks = common::repo_root().join("proxy/tests/fixtures/auth/jwks.json");
    let proxy = start(Options {
        // Both an HS256 secret and an RSA JWKS: the setting where key confusion would bite.
        auth_toml: format!("jwks_file = \"{}\"", jwks.display()),
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        ..Default::default()
    })
    .await;
    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("mallory").to_string().as_bytes())
    );
    let none_upper = format!(
        "{}.{}.",
        b64(br#"{"alg":"None","typ":"JWT"}"#),
        b64(claims("mallory").to_string().as_bytes())
    );
    let wrong_secret = token_with(claims("mallory"), "not-the-secret-0123456789abcdef-xx");
    let key_confusion = signed(
        jsonwebtoken::Algorithm::HS256,
        Some("rsa-1"),
        &claims("mallory"),
        &jsonwebtoken::EncodingKey::from_secret(RSA1_PUBLIC),
    );
    let expired = token_with(
        json!({ "sub": "mallory", "iat": now() - 7200, "exp": now() - 3600 }),
        SECRET,
    );
    let no_sub = token_with(
        json!({ "tenant": "tenant-1", "iat": now(), "exp": now() + 600 }),
        SECRET,
    );
    let empty_sub = token_with(
        json!({ "sub": "", "iat": now(), "exp": now() + 600 }),
        SECRET,
    );
    // The right signature over claims with a changed `sub`: the signature no longer matches.
    let honest = token("mallory", &[]);
    let mut parts: Vec<String> = honest.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims("admin").to_string().as_bytes());
    let swapped_claims = parts.join(".");

    for (name, forged) in [
        ("alg none", none_token),
        ("alg None", none_upper),
        ("wrong HS256 secret", wrong_secret),
        ("HS256 keyed with the RSA public key", key_confusion),
        ("expired", expired),
        ("no sub", no_sub),
        ("empty sub", empty_sub),
        ("claims swapped under a valid signature", swapped_claims),
    ] {
        let mut agent = Agent::new(&proxy, "web", forged);
        let answer = agent
            .call_stateless("read_file", json!({ "path": "/workspace/a.txt" }))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            answer
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{name}"
        );
    }
    assert!(
        mock.state.received.lock().unwrap().is_empty(),
        "no forged request reached the upstream"
    );

    // The controls: real tokens of both kinds get through.
    let rs256 = signed(
        jsonwebtoken::Algorithm::RS256,
        Some("rsa-1"),
        &claims("rs-agent"),
        &jsonwebtoken::EncodingKey::from_rsa_pem(RSA1_PRIVATE).unwrap(),
    );
    for real in [rs256, token("hs-agent", &[])] {
        let mut agent = Agent::new(&proxy, "web", real);
        let answer = agent
            .call_stateless("read_file", json!({ "path": "/workspace/a.txt" }))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(mock.state.tool_calls().len(), 2);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_filters_are_values_never_sql() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("alice", &[]));
    agent
        .call_stateless("read_file", json!({ "path": "/workspace/a.txt" }))
        .await;
    let auth = format!("Bearer {ADMIN}");
    let get = |path: String| {
        let auth = auth.clone();
        let url = proxy.url(&path);
        async move { send(Method::GET, &url, &[("authorization", &auth)], "").await }
    };
    // The call's decision and outcome events (the outcome is queued, so wait for it).
    let total = common::eventually(std::time::Duration::from_secs(10), || async {
        let n = common::audit_events(&proxy.app, 100).await.len();
        (n == 2).then_some(n)
    })
    .await;

    for injection in [
        "%27%20OR%201%3D1%20--",
        "alice%27%20OR%20%271%27%3D%271",
        "%27%3B%20DROP%20TABLE%20audit_events%3B%20--",
        "x%22%20OR%201%3D1%20--",
    ] {
        for filter in ["agent_id", "tool_name", "policy_result"] {
            let r = get(format!("/api/v1/audit/events?{filter}={injection}")).await;
            assert_eq!(r.status, StatusCode::OK, "{filter}={injection}");
            assert_eq!(
                r.json()["events"].as_array().unwrap().len(),
                0,
                "{filter}={injection} matched rows"
            );
        }
        // The export's only free-text parameters are its range bounds: refused, never interpolated.
        for bound in ["start", "end"] {
            let r = get(format!(
                "/api/v1/audit/export?format=ndjson&{bound}={injection}"
            ))
            .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bound}={injection}");
        }
    }
    // The table is still there and still whole: nothing was dropped or altered.
    let after = get("/api/v1/audit/events".into()).await;
    assert_eq!(after.json()["events"].as_array().unwrap().len(), total);
    let verify = get("/api/v1/audit/verify".into()).await.json();
    assert_eq!(verify["chain_intact"], true);
    // And the filter still works as a value.
    let own = get("/api/v1/audit/events?agent_id=alice".into())
        .await
        .json();
    assert!(!own["events"].as_array().unwrap().is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agents_session_id_is_refused() {
    let proxy = start(Options::default()).await;
    let mut alice = Agent::new(&proxy, "demo", token("alice", &[]));
    alice.initialize().await;
    let mut bob = Agent::new(&proxy, "demo", token("bob", &[]));
    bob.session = alice.session.clone();
    assert_eq!(
        bob.request("tools/list", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.call("read_file", json!({ "path": "/workspace/a.txt" }))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Bob's own initialize with alice's id opens his own session, never joins hers.
    let opened = bob
        .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }))
        .await;
    assert_eq!(opened.status, StatusCode::OK);
    assert_ne!(opened.header("mcp-session-id"), alice.session);
    assert_eq!(
        alice.request("tools/list", json!({})).await.status,
        StatusCode::OK
    );
    proxy.stop().await;
}
