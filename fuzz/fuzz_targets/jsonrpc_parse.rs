//! `Message::parse` (proxy/src/mcp/jsonrpc.rs) on arbitrary bodies: the envelope rules and the duplicate-key
//! check, against an independent duplicate finder (`toolgate_fuzz::duplicated_keys`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolgate_fuzz::mcp::jsonrpc::{Kind, Message, RpcError};

fuzz_target!(|body: &[u8]| {
    let parsed = Message::parse(body);
    let reference = toolgate_fuzz::duplicated_keys(body);
    match &parsed {
        Ok(message) => {
            // Accepted: JSON serde_json accepts, an object, no repeated key anywhere, and the kind read from
            // the value it carries.
            let duplicates = reference.expect("an accepted body is JSON");
            assert!(
                duplicates.is_empty(),
                "accepted a body repeating {duplicates:?}"
            );
            let again: Value = serde_json::from_slice(body).expect("an accepted body is JSON");
            assert_eq!(again, message.value);
            let object = message
                .value
                .as_object()
                .expect("an accepted body is an object");
            assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")));
            match &message.kind {
                Kind::Request { id, method } => {
                    assert_eq!(object.get("id"), Some(id));
                    assert_eq!(object.get("method"), Some(&Value::from(method.as_str())));
                    assert!(id.is_string() || id.is_i64() || id.is_u64());
                }
                Kind::Notification { method } => {
                    assert!(!object.contains_key("id"));
                    assert_eq!(object.get("method"), Some(&Value::from(method.as_str())));
                }
                Kind::Response { id } => {
                    assert_eq!(object.get("id"), Some(id));
                    assert!(!object.contains_key("method"));
                    assert!(object.contains_key("result") || object.contains_key("error"));
                }
            }
        }
        Err(RpcError::DuplicateKey(key)) => {
            // Refused for a duplicate: there is one, and the error names a key that really repeats.
            let duplicates = reference.expect("a body refused for a duplicate key is JSON");
            assert!(
                duplicates.contains(key),
                "named {key:?}, repeated {duplicates:?}"
            );
        }
        // Any other refusal is fine (syntax, not an object, batch, bad id, a size limit), but a body that
        // repeats a key must never get through: checked above by the Ok arm.
        Err(_) => {}
    }
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", Message::parse(body)),
        "not deterministic"
    );
});
