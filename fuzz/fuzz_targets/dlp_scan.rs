//! The DLP scanner (`toolgate_engine::dlp::Scanner::scan`) over arbitrary JSON and strings
//! (`toolgate_fuzz::dlp_input` says how bytes become a value): findings are sorted, counted, point at a
//! value that exists (or at a key replaced by `~redacted`), and a pointer never carries a key the scanner
//! reports, nor one that would be a finding as a value.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolgate_engine::dlp::{Scanner, REDACTED_SEGMENT};

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(Scanner::new)
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = toolgate_fuzz::dlp_input(data) else {
        return;
    };
    let findings = scanner().scan(&value);
    for pair in findings.windows(2) {
        let key = |f: &toolgate_engine::dlp::Finding| {
            (f.path.clone(), f.kind.clone(), f.severity, f.count)
        };
        assert!(
            key(&pair[0]) <= key(&pair[1]),
            "findings not sorted: {findings:?}"
        );
    }
    for finding in &findings {
        assert!(finding.count >= 1);
        let renamed_key = finding
            .path
            .split('/')
            .any(|segment| segment == REDACTED_SEGMENT);
        if !renamed_key {
            assert!(
                value.pointer(&finding.path).is_some(),
                "finding at a pointer that names nothing: {finding:?}"
            );
        }
        // The pointer is logged, audited and handed to the policy: no key in it may be one the scanner reports
        // as a key, nor one that would be a finding as a value (both are replaced by `~redacted`).
        for segment in finding.path.split('/').skip(1) {
            let key = segment.replace("~1", "/").replace("~0", "~");
            let mut object = serde_json::Map::new();
            object.insert(key.clone(), Value::Null);
            let leaked = scanner().scan(&Value::Object(object));
            assert!(
                leaked.is_empty(),
                "a finding's pointer holds a key with a finding: {leaked:?}"
            );
            assert!(
                scanner().scan(&Value::String(key)).is_empty(),
                "a finding's pointer holds a key that is a finding as a value: {finding:?}"
            );
        }
    }
    assert_eq!(findings, scanner().scan(&value), "not deterministic");
});
