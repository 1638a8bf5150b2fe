//! Target classification (`toolgate_engine::input::classify`). Input: the tool name on the first line, the
//! working directory on the second, the arguments after (JSON; anything else becomes `{"path": <text>}`).
//! The picked target is one of the targets, each (kind, value) is listed once, at most `MAX_TARGETS`, every
//! path is absolute and normalised, and every key is a JSON pointer to an argument that exists.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toolgate_engine::input::{classify, normalise_path, TargetKind, MAX_TARGETS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (tool, workdir, rest) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    let arguments =
        serde_json::from_str::<Value>(rest).unwrap_or_else(|_| serde_json::json!({ "path": rest }));
    let class = classify(tool, &arguments, workdir);

    if let Some(target) = &class.target {
        assert!(
            class.targets.iter().any(|t| &t.value == target),
            "target {target:?} is not among {:?}",
            class.targets
        );
    }
    assert!(class.targets.len() <= MAX_TARGETS);
    let mut seen = HashSet::new();
    for target in &class.targets {
        assert!(
            seen.insert((target.kind, target.value.as_str())),
            "listed twice: {target:?}"
        );
        assert!(
            arguments.pointer(&target.key).is_some(),
            "key {:?} names no argument",
            target.key
        );
        if target.kind == TargetKind::Path {
            assert!(toolgate_fuzz::is_normal_path(&target.value), "{target:?}");
            assert_eq!(normalise_path(&target.value, "/"), target.value);
        }
    }
    assert_eq!(
        class,
        classify(tool, &arguments, workdir),
        "not deterministic"
    );
});
