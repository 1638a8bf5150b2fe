//! RFC 8785 canonical JSON (`toolgate_engine::canonical::to_jcs`): the output is JSON denoting the same value
//! (numbers as the doubles JCS prints), canonicalising it again changes nothing, and it matches `serde_jcs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolgate_engine::canonical::{input_hash, sha256_hex, to_jcs};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let jcs = to_jcs(&value);
    let reparsed: Value = serde_json::from_str(&jcs).expect("JCS output is JSON");
    assert!(
        toolgate_fuzz::same_json_as_doubles(&value, &reparsed),
        "JCS changed the value: {jcs}"
    );
    assert_eq!(to_jcs(&reparsed), jcs, "JCS is not idempotent");
    if let Ok(reference) = serde_jcs::to_string(&value) {
        assert_eq!(jcs, reference, "differs from serde_jcs");
    }
    assert_eq!(input_hash(&value), sha256_hex(jcs.as_bytes()));
});
