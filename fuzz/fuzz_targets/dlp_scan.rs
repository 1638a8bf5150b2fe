//! The DLP scanner (`toolgate_engine::dlp::Scanner::scan`) over arbitrary JSON and strings
//! (`toolgate_fuzz::dlp_input` says how bytes become a value): findings are sorted, counted, point at a
//! value that exists (or at a key replaced by `~redacted`), and a pointer never carries what was found.
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
        // The pointer is logged, audited and handed to the policy: it must not itself be a secret.
        let leaked = scanner().scan(&Value::String(finding.path.clone()));
        assert!(
            leaked.is_empty(),
            "a finding's pointer holds a finding: {leaked:?}"
        );
    }
    assert_eq!(findings, scanner().scan(&value), "not deterministic");
});
