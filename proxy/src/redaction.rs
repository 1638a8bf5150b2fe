//! What toolgate writes about the traffic it sees (audit events, log lines, span attributes, metric labels) holds
//! nothing DLP flags and no unbounded value.
//!
//! Every value an agent, an upstream or a policy could have shaped goes through here before it is written
//! anywhere a person or another system reads it: each byte range a DLP detector matches becomes
//! `[REDACTED:<type>]` ([`toolgate_engine::dlp::Scanner::redact`], the same replacement results get), and a value
//! longer than its limit is cut to a prefix followed by `…[sha256:<hex> len:<n>]`, where `<hex>` is the SHA-256 of
//! the whole (redacted) value and `<n>` its length in bytes. Redaction runs first, so neither the kept prefix nor
//! the digest is ever taken over a secret; the capped value is at most the limit long, so capping it again
//! changes nothing.
//!
//! The audit log applies this to every event in one place (`crate::audit::stored`), before the event is hashed.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde_json::Value;
use sha2::{Digest, Sha256};
use toolgate_engine::dlp::Scanner;

/// Most bytes a stored text field (`tool_name`, `target`, `policy_reason`, `error`, ids) or a string inside
/// `extra` keeps, marker included.
pub const FIELD_LIMIT: usize = 1024;

/// What stands between a capped value's prefix and its digest.
pub const CAP_MARKER: &str = "…[sha256:";

/// One scanner for everything written out: it has no configuration, and the telemetry call sites (a span
/// attribute, a label) have no application state at hand.
static SCANNER: LazyLock<Scanner> = LazyLock::new(Scanner::new);

/// `value` with every DLP finding replaced by `[REDACTED:<type>]`. Takes the string by value so that the
/// common case (nothing found) moves it in and out without a copy.
pub fn redact(value: String) -> String {
    let mut wrapped = Value::String(value);
    SCANNER.redact(&mut wrapped);
    match wrapped {
        Value::String(s) => s,
        // `redact` rewrites strings in place; a string stays a string.
        other => other.to_string(),
    }
}

/// Redacts every string, key and number DLP flags inside `value`, in place.
pub fn redact_value(value: &mut Value) {
    SCANNER.redact(value);
}

/// `value` cut to at most `limit` bytes: unchanged when it fits, else the longest prefix (on a character
/// boundary) that leaves room for `…[sha256:<64 hex> len:<bytes>]`, the digest and length of the whole value.
pub fn cap(value: String, limit: usize) -> String {
    if value.len() <= limit {
        return value;
    }
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    let suffix = format!("{CAP_MARKER}{digest} len:{}]", value.len());
    let mut keep = limit.saturating_sub(suffix.len());
    while !value.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut capped = String::with_capacity(keep + suffix.len());
    capped.push_str(&value[..keep]);
    capped.push_str(&suffix);
    capped
}

/// A text field as the audit log stores it: redacted, then capped at [`FIELD_LIMIT`].
pub fn stored_text(value: String) -> String {
    cap(redact(value), FIELD_LIMIT)
}

/// A value as a log line or a span attribute carries it: redacted and capped like a stored field.
pub fn loggable(value: &str) -> Cow<'_, str> {
    let stored = stored_text(value.to_owned());
    if stored == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn findings_are_replaced_and_the_rest_kept() {
        assert_eq!(
            redact(format!("/tmp/{AWS}/x")),
            "/tmp/[REDACTED:aws_access_key]/x"
        );
        assert_eq!(redact("read_file".into()), "read_file");
    }

    #[test]
    fn a_long_value_keeps_a_prefix_and_the_digest_of_the_whole() {
        let long = "é".repeat(2000);
        let capped = cap(long.clone(), FIELD_LIMIT);
        assert!(capped.len() <= FIELD_LIMIT, "{}", capped.len());
        let digest = hex::encode(Sha256::digest(long.as_bytes()));
        assert!(
            capped.ends_with(&format!("…[sha256:{digest} len:4000]")),
            "{capped}"
        );
        assert!(capped.starts_with("éé"));
        assert_eq!(
            cap(capped.clone(), FIELD_LIMIT),
            capped,
            "capping is idempotent"
        );
        assert_eq!(cap("short".into(), FIELD_LIMIT), "short");
        let exact = "a".repeat(FIELD_LIMIT);
        assert_eq!(cap(exact.clone(), FIELD_LIMIT), exact);
    }

    #[test]
    fn redaction_comes_before_the_cap_so_no_prefix_cuts_a_secret_in_half() {
        // The key straddles the cut: capping first would keep its first bytes, which DLP no longer recognises.
        let value = format!("{}{AWS}{}", "a ".repeat(460), " b".repeat(400));
        let stored = stored_text(value);
        assert!(!stored.contains("AKIAIOSF"), "{stored}");
        assert!(stored.len() <= FIELD_LIMIT);
    }

    #[test]
    fn loggable_borrows_what_needs_no_change() {
        assert!(matches!(loggable("read_file"), Cow::Borrowed(_)));
        assert_eq!(
            loggable(&format!("key {AWS}")),
            "key [REDACTED:aws_access_key]"
        );
    }
}
