//! Bad input gets a precise answer and the proxy keeps serving: each case of issue #2 against the real server.

mod common;

use common::{now, send, start, token, token_with, Agent, Options, SECRET};
use hyper::{Method, StatusCode};
use serde_json::json;

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_precise_errors() {
    let proxy = start(Options::default()).await;
    let url = proxy.url("/mcp/demo");
    let auth = format!("Bearer {}", token("agent-b", &[]));
    let a = ("authorization", auth.as_str());

    let r = send(Method::POST, &url, &[a, JSON, ACCEPT], "{not json").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, Some(-32700))
    );
    assert_eq!(r.json()["id"], serde_json::Value::Null);

    let r = send(
        Method::POST,
        &url,
        &[a, ("content-type", "text/plain"), ACCEPT],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = send(
        Method::POST,
        &url,
        &[a, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "missing Accept");
    let r = send(
        Method::POST,
        &url,
        &[a, JSON, ("accept", "text/html")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let r = send(Method::POST, &url, &[a, JSON, ACCEPT], big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    let r = send(
        Method::POST,
        &url,
        &[a, JSON, ACCEPT],
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batch"));

    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"run_shell","arguments":{}}}"#;
    let r = send(Method::POST, &url, &[a, JSON, ACCEPT], dup).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("duplicate key"));

    // A tools/call disguised as a ping for last-wins parsers never passes as a ping.
    let smuggled = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_shell","arguments":{"command":"id"}},"method":"ping"}"#;
    let r = send(Method::POST, &url, &[a, JSON, ACCEPT], smuggled).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );

    let r = send(
        Method::POST,
        &proxy.url("/mcp/nope"),
        &[a, JSON, ACCEPT],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = send(Method::PUT, &url, &[a], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);

    // Still serving after all of that.
    let mut agent = Agent::new(&proxy, "demo", token("agent-b", &[]));
    let ok = agent
        .call_stateless("echo", json!({ "text": "still here" }))
        .await;
    assert_eq!(ok.message()["result"]["content"][0]["text"], "still here");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_resource_metadata() {
    let proxy = start(Options::default()).await;
    let url = proxy.url("/mcp/demo");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let t = now();
    let cases = [
        ("missing", None),
        (
            "expired",
            Some(token_with(
                json!({ "sub": "a", "exp": t - 3600, "iat": t - 7200 }),
                SECRET,
            )),
        ),
        (
            "not yet valid",
            Some(token_with(
                json!({ "sub": "a", "exp": t + 3600, "nbf": t + 1800 }),
                SECRET,
            )),
        ),
        (
            "wrong signature",
            Some(token_with(
                json!({ "sub": "a", "exp": t + 3600 }),
                "another-secret-another-secret-xx",
            )),
        ),
        ("garbage", Some("not.a.jwt".to_owned())),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&json!({ "sub": "a", "exp": t + 3600 }).to_string())
            )),
        ),
    ];
    for (name, tok) in cases {
        let auth = tok.map(|t| format!("Bearer {t}"));
        let mut headers = vec![JSON, ACCEPT];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let r = send(Method::POST, &url, &headers, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer ")
                && challenge.contains(&format!(
                    "resource_metadata=\"http://{}/.well-known/oauth-protected-resource/mcp/demo\"",
                    proxy.addr
                )),
            "{name}: {challenge}"
        );
        match name {
            "missing" => assert!(
                !challenge.contains("error="),
                "RFC 6750: no error code without credentials: {challenge}"
            ),
            "garbage" => assert!(
                challenge.contains("error=\"invalid_request\""),
                "{name}: {challenge}"
            ),
            _ => assert!(
                challenge.contains("error=\"invalid_token\""),
                "{name}: {challenge}"
            ),
        }
    }
    // The metadata document itself (RFC 9728).
    let meta = send(
        Method::GET,
        &proxy.url("/.well-known/oauth-protected-resource/mcp/demo"),
        &[],
        "",
    )
    .await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(
        meta.json()["resource"],
        format!("http://{}/mcp/demo", proxy.addr)
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_checked_when_configured() {
    let proxy = start(Options {
        auth_toml: "issuer = \"https://idp.test\"\naudience = \"toolgate\"".into(),
        ..Default::default()
    })
    .await;
    let url = proxy.url("/mcp/demo");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let t = now();
    let good = token_with(
        json!({ "sub": "a", "exp": t + 60, "aud": "toolgate", "iss": "https://idp.test" }),
        SECRET,
    );
    let wrong_aud = token_with(
        json!({ "sub": "a", "exp": t + 60, "aud": "someone-else", "iss": "https://idp.test" }),
        SECRET,
    );
    let wrong_iss = token_with(
        json!({ "sub": "a", "exp": t + 60, "aud": "toolgate", "iss": "https://evil.test" }),
        SECRET,
    );
    for (tok, want) in [
        (good, StatusCode::OK),
        (wrong_aud, StatusCode::UNAUTHORIZED),
        (wrong_iss, StatusCode::UNAUTHORIZED),
    ] {
        let auth = format!("Bearer {tok}");
        let r = send(
            Method::POST,
            &url,
            &[JSON, ACCEPT, ("authorization", auth.as_str())],
            body,
        )
        .await;
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(&r.body));
    }
    proxy.stop().await;
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
