use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use toolgate_engine::dlp::Scanner;

use super::{check, BadHeader, Fault};

const AWS: &str = "AKIAZ7QXKD3MPL4HWN2R";

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in pairs {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    headers
}

fn call() -> serde_json::Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execute_sql", "arguments": { "region": "us-west1", "limit": 10, "dry": true, "greeting": "Hello, 世界" } } })
}

fn fault(pairs: &[(&str, &str)]) -> Option<BadHeader> {
    check(&Scanner::new(), &map(pairs), Some(&call())).err()
}

#[test]
fn headers_that_mirror_the_body_pass() {
    assert_eq!(
        fault(&[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "execute_sql"),
            ("mcp-param-region", "us-west1"),
            ("mcp-param-limit", "10"),
            ("mcp-param-dry", "true"),
            ("mcp-param-greeting", "=?base64?SGVsbG8sIOS4lueVjA==?="),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ),
            ("mcp-session-id", "whatever: checked by the session store"),
            ("authorization", "Bearer not-forwarded"),
        ]),
        None
    );
    // A resource read names its uri.
    let read = json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": { "uri": "file:///workspace/a" } });
    assert!(check(
        &Scanner::new(),
        &map(&[("mcp-name", "file:///workspace/a")]),
        Some(&read)
    )
    .is_ok());
}

#[test]
fn a_secret_in_any_forwarded_header_is_refused_and_named_without_its_value() {
    let version = format!("2025-11-25 {AWS}");
    let accept = format!("application/json, {AWS}");
    let cases: Vec<(&str, String, &str, Fault)> = vec![
        (
            "mcp-protocol-version",
            version,
            "MCP-Protocol-Version",
            Fault::UnknownVersion,
        ),
        ("mcp-method", AWS.into(), "Mcp-Method", Fault::Mismatch),
        ("mcp-name", AWS.into(), "Mcp-Name", Fault::Mismatch),
        (
            "mcp-param-region",
            AWS.into(),
            "Mcp-Param-region",
            Fault::Mismatch,
        ),
        ("last-event-id", AWS.into(), "Last-Event-ID", Fault::Finding),
        ("accept", accept, "Accept", Fault::Finding),
        (
            "tracestate",
            format!("vendor={AWS}"),
            "tracestate",
            Fault::Finding,
        ),
        (
            "traceparent",
            format!("00-{AWS}-00f067aa0ba902b7-01"),
            "traceparent",
            Fault::BadSyntax,
        ),
        (
            "mcp-param-region",
            format!(
                "=?base64?{}?=",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, AWS)
            ),
            "Mcp-Param-region",
            Fault::Mismatch,
        ),
    ];
    for (name, value, shown, expected) in cases {
        let bad = fault(&[(name, &value)]).unwrap_or_else(|| panic!("{name} passed"));
        assert_eq!(bad.fault, expected, "{name}");
        assert_eq!(bad.header, shown, "{name}");
        assert!(bad.message().contains(shown));
        assert!(!bad.message().contains(AWS), "{}", bad.message());
    }
    // The key as an Mcp-Param name: refused, and not named either.
    let name = format!("mcp-param-{}", AWS.to_ascii_lowercase());
    let bad = fault(&[(&name, "us-west1")]).expect("refused");
    assert_eq!(bad.header, "Mcp-Param-*");
    assert_eq!(bad.fault, Fault::Finding);
}

#[test]
fn headers_that_could_be_read_two_ways_are_refused() {
    let bad = fault(&[("mcp-name", "execute_sql"), ("mcp-name", "other")]).unwrap();
    assert_eq!(bad.fault, Fault::Repeated);
    let bad = fault(&[
        ("mcp-param-region", "us-west1"),
        ("mcp-param-region", "us-west1"),
    ])
    .unwrap();
    assert_eq!(bad.fault, Fault::Repeated);
    let mut headers = HeaderMap::new();
    headers.insert(
        "last-event-id",
        HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    let bad = check(&Scanner::new(), &headers, Some(&call())).unwrap_err();
    assert_eq!(bad.fault, Fault::NotVisibleAscii);
    assert_eq!(
        fault(&[("mcp-param-region", "=?base64?not base64?=")]).map(|b| b.fault),
        Some(Fault::BadEncoding)
    );
    // An argument that is an object is never mirrored; a param on a method without
    // judged arguments mirrors nothing.
    let nested = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "t", "arguments": { "o": { "a": 1 } } } });
    assert!(check(
        &Scanner::new(),
        &map(&[("mcp-param-o", "{\"a\":1}")]),
        Some(&nested)
    )
    .is_err());
    // A prompt's arguments are mirrored like a tool's (the SDK clients do), and must match all the same.
    let prompt = json!({ "jsonrpc": "2.0", "id": 1, "method": "prompts/get",
        "params": { "name": "summarise", "arguments": { "text": "hello" } } });
    assert!(check(
        &Scanner::new(),
        &map(&[("mcp-param-text", "hello")]),
        Some(&prompt)
    )
    .is_ok());
    assert!(check(
        &Scanner::new(),
        &map(&[("mcp-param-text", "other")]),
        Some(&prompt)
    )
    .is_err());
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "arguments": { "a": "x" } } });
    assert!(check(&Scanner::new(), &map(&[("mcp-param-a", "x")]), Some(&ping)).is_err());
}

#[test]
fn without_a_body_nothing_can_be_mirrored() {
    let scanner = Scanner::new();
    assert!(check(
        &scanner,
        &map(&[
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "42")
        ]),
        None
    )
    .is_ok());
    for name in ["mcp-method", "mcp-name", "mcp-param-x"] {
        let bad = check(&scanner, &map(&[(name, "x")]), None).unwrap_err();
        assert_eq!(bad.fault, Fault::Mismatch, "{name}");
    }
}
