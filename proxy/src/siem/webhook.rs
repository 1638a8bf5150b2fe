//! `webhook`: the batch as one JSON array of events, POSTed with `X-Toolgate-Signature: sha256=<lowercase hex
//! HMAC-SHA256 of the body>` keyed with the sink's token, so the receiver knows the body came from toolgate
//! unaltered.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use toolgate_engine::chain::AuditEvent;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-toolgate-signature";

/// The body: a JSON array of the events, each exactly as the JSON export renders it.
pub fn encode(events: &[&AuditEvent]) -> Vec<u8> {
    // An AuditEvent holds only strings, integers and JSON values, which always serialise.
    serde_json::to_vec(events).unwrap_or_default()
}

/// `sha256=<hex>` of `body` keyed with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            signature(b"Jefe", b"what do ya want for nothing!"),
            signature(b"Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn the_body_is_an_array_of_the_events_with_their_hashes() {
        let (a, b) = (super::super::tests::event(1), super::super::tests::event(2));
        let body: serde_json::Value = serde_json::from_slice(&encode(&[&a, &b])).unwrap();
        assert_eq!(body.as_array().unwrap().len(), 2);
        assert_eq!(body[1]["event_hash"], b.event_hash.as_str());
        assert_eq!(body[0], serde_json::to_value(&a).unwrap());
    }
}
