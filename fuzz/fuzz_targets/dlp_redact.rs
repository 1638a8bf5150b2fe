//! Result redaction (`toolgate_engine::dlp::Scanner::redact`): it reports exactly what `scan` reports on the
//! value as it was, scanning the redacted value finds nothing, a second redaction changes nothing, and the
//! value keeps its shape (same arrays, same number of members; only strings change, and numbers that held a
//! finding become marker strings), so an MCP result stays a well-formed result.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolgate_engine::dlp::Scanner;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::new)
}

fuzz_target!(|data: &[u8]| {
    let Some(original) = toolgate_fuzz::dlp_input(data) else {
        return;
    };
    let mut redacted = original.clone();
    let reported = scanner().redact(&mut redacted);
    assert_eq!(
        reported,
        scanner().scan(&original),
        "redact and scan disagree"
    );
    let left = scanner().scan(&redacted);
    assert!(left.is_empty(), "redaction left findings: {left:?}");
    if reported.is_empty() {
        assert_eq!(redacted, original, "changed a value with no finding");
    }
    assert_same_shape(&original, &redacted);
    let mut twice = redacted.clone();
    assert!(scanner().redact(&mut twice).is_empty());
    assert_eq!(twice, redacted, "a second redaction changed the value");
});

fn assert_same_shape(before: &Value, after: &Value) {
    match (before, after) {
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len());
            a.iter().zip(b).for_each(|(x, y)| assert_same_shape(x, y));
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(a.len(), b.len(), "members lost or added");
            // Members whose key was not renamed keep their place under the same key.
            for (key, value) in a {
                if let Some(other) = b.get(key) {
                    assert_same_shape(value, other);
                }
            }
        }
        (Value::String(_), Value::String(_)) => {}
        (Value::Number(_), Value::String(s)) => assert!(s.starts_with("[REDACTED:"), "{s:?}"),
        (x, y) => assert_eq!(x, y),
    }
}
