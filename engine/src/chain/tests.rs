//! Tests of the audit hash chain: golden vectors, the fast hashing path against its definition, every tamper case, and agreement with `tools/verify-audit.py`.

use super::*;
use crate::canonical::{sha256_hex, to_jcs};
use serde_json::json;

const INPUT_HASH: &str = "a445094a47c78c05fb152168e01ca4361ab1709999a762148252a7e50a314a3d";

/// The golden vectors: JCS strings written by hand, hashes computed with Python's hashlib over
/// `jcs.encode("utf-8") + previous_hash.encode("ascii")`. `docs/audit-format.md` shows the same numbers.
const GOLDEN_JCS_1: &str = r#"{"action":"read","agent_id":"a1","behavioral_score":"0.4","chain_id":"gw-01","dlp_action":null,"dlp_findings":[],"error":null,"event_type":"tool_call","extra":{"protocol_version":"2025-11-25","rpc_id":7},"id":"0193a5b2-7c1e-7d3f-9a4b-2c6d8e0f1a2b","input_hash":"a445094a47c78c05fb152168e01ca4361ab1709999a762148252a7e50a314a3d","latency_us":null,"mcp_server":"fs","policy_id":"fs.read.projects","policy_reason":"read inside the projects folder","policy_result":"allow","requester_id":null,"response_code":null,"seq":1,"session_id":"s-7f3c","target":"/home/projects/report.pdf","tenant_id":"t1","timestamp":"2026-11-22T20:15:00.123456Z","tool_name":"read_file","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","workflow_id":null}"#;
const GOLDEN_HASH_1: &str = "1c24c3c608b8addb96c4782c5f0d0811eecaca674dc6c3e8a0426316802bdea7";
const GOLDEN_JCS_2: &str = r#"{"action":"read","agent_id":"a1","behavioral_score":null,"chain_id":"gw-01","dlp_action":"redact","dlp_findings":[{"count":2,"path":"/content/0/text","severity":"medium","type":"email_address"}],"error":null,"event_type":"tool_result","extra":{"rpc_id":7,"upstream_message":"3 pages lues – \"été\""},"id":"0193a5b2-7c1f-7a01-8b5c-3d7e9f1a2b3c","input_hash":"a445094a47c78c05fb152168e01ca4361ab1709999a762148252a7e50a314a3d","latency_us":8446,"mcp_server":"fs","policy_id":"fs.read.projects","policy_reason":null,"policy_result":"allow","requester_id":null,"response_code":200,"seq":2,"session_id":"s-7f3c","target":"/home/projects/report.pdf","tenant_id":"t1","timestamp":"2026-11-22T20:15:00.131902Z","tool_name":"read_file","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","workflow_id":null}"#;
const GOLDEN_HASH_2: &str = "acf8611021d3367dcb2ddab0b334386db20975a5f849e64c8de042fa79eee9e7";

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn golden_call() -> EventDraft {
    EventDraft {
        id: "0193a5b2-7c1e-7d3f-9a4b-2c6d8e0f1a2b".into(),
        timestamp: "2026-11-22T20:15:00.123456Z".into(),
        event_type: "tool_call".into(),
        agent_id: some("a1"),
        session_id: some("s-7f3c"),
        tenant_id: some("t1"),
        tool_name: some("read_file"),
        mcp_server: some("fs"),
        action: some("read"),
        target: some("/home/projects/report.pdf"),
        input_hash: some(INPUT_HASH),
        policy_result: some("allow"),
        policy_id: some("fs.read.projects"),
        policy_reason: some("read inside the projects folder"),
        behavioral_score: some("0.4"),
        trace_id: some("4bf92f3577b34da6a3ce929d0e0e4736"),
        extra: json!({"protocol_version": "2025-11-25", "rpc_id": 7}),
        ..EventDraft::default()
    }
}

fn golden_result() -> EventDraft {
    EventDraft {
        id: "0193a5b2-7c1f-7a01-8b5c-3d7e9f1a2b3c".into(),
        timestamp: "2026-11-22T20:15:00.131902Z".into(),
        event_type: "tool_result".into(),
        agent_id: some("a1"),
        session_id: some("s-7f3c"),
        tenant_id: some("t1"),
        tool_name: some("read_file"),
        mcp_server: some("fs"),
        action: some("read"),
        target: some("/home/projects/report.pdf"),
        input_hash: some(INPUT_HASH),
        policy_result: some("allow"),
        policy_id: some("fs.read.projects"),
        dlp_findings: json!([{"type": "email_address", "severity": "medium", "path": "/content/0/text", "count": 2}]),
        dlp_action: some("redact"),
        response_code: Some(200),
        latency_us: Some(8446),
        trace_id: some("4bf92f3577b34da6a3ce929d0e0e4736"),
        extra: json!({"upstream_message": "3 pages lues – \"été\"", "rpc_id": 7}),
        ..EventDraft::default()
    }
}

fn draft(chain: &str, n: usize, event_type: &str) -> EventDraft {
    EventDraft {
        id: format!("{chain}-event-{n}"),
        timestamp: format!("2026-11-22T20:15:{:02}.000000Z", n % 60),
        event_type: event_type.into(),
        agent_id: some("a1"),
        session_id: some("s1"),
        tool_name: some("echo"),
        ..EventDraft::default()
    }
}

/// A chain of `len` events: session_start, then tool_call / tool_result pairs.
fn chain(chain_id: &str, len: usize) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis(chain_id);
    (0..len)
        .map(|n| {
            let event_type = match n {
                0 => "session_start",
                n if n % 2 == 1 => "tool_call",
                _ => "tool_result",
            };
            head.seal(draft(chain_id, n, event_type))
        })
        .collect()
}

fn bad_row(events: &[AuditEvent]) -> BadRow {
    let report = verify(events);
    assert!(!report.chain_intact, "expected a broken chain");
    assert_eq!(report.events_verified, events.len() as u64);
    report.first_bad_row.unwrap()
}

#[test]
fn golden_vectors_jcs_and_event_hash() {
    let mut head = ChainHead::genesis("gw-01");
    let first = head.seal(golden_call());
    assert_eq!(to_jcs(&first.hashed_object()), GOLDEN_JCS_1);
    assert_eq!(first.previous_hash, GENESIS_HASH);
    assert_eq!(first.event_hash, GOLDEN_HASH_1);
    let second = head.seal(golden_result());
    assert_eq!(to_jcs(&second.hashed_object()), GOLDEN_JCS_2);
    assert_eq!(second.previous_hash, GOLDEN_HASH_1);
    assert_eq!(second.event_hash, GOLDEN_HASH_2);
    assert_eq!(
        head,
        ChainHead {
            chain_id: "gw-01".into(),
            seq: 2,
            hash: GOLDEN_HASH_2.into()
        }
    );
    assert!(verify([&first, &second]).chain_intact);
}

#[test]
fn event_hash_is_sha256_of_jcs_then_previous_hash() {
    let events = chain("c", 3);
    for event in &events {
        let bytes = format!("{}{}", to_jcs(&event.hashed_object()), event.previous_hash);
        assert_eq!(event.compute_hash(), sha256_hex(bytes.as_bytes()));
    }
}

#[test]
fn hashed_object_has_exactly_the_contract_fields_but_the_hashes() {
    let event = ChainHead::genesis("c").seal(golden_result());
    let object = event.hashed_object();
    let mut keys: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected: Vec<&str> = AuditEvent::FIELDS[..26].to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
}

#[test]
fn absent_values_hash_as_null_and_differ_from_empty_strings() {
    let mut head = ChainHead::genesis("c");
    let absent = head.clone().seal(draft("c", 0, "session_start"));
    assert_eq!(absent.hashed_object()["workflow_id"], Value::Null);
    assert_eq!(absent.hashed_object()["response_code"], Value::Null);
    let empty = head.seal(EventDraft {
        workflow_id: some(""),
        ..draft("c", 0, "session_start")
    });
    assert_ne!(absent.event_hash, empty.event_hash);
}

#[test]
fn ndjson_line_has_the_contract_fields_in_order_and_round_trips() {
    let event = ChainHead::genesis("gw-01").seal(golden_call());
    let line = serde_json::to_string(&event).unwrap();
    assert!(!line.contains('\n'));
    let value: Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = AuditEvent::FIELDS.to_vec();
    expected.sort_unstable(); // serde_json's Map is sorted; the order check is on the raw line below
    assert_eq!(keys, expected);
    let positions: Vec<usize> = AuditEvent::FIELDS
        .iter()
        .map(|field| line.find(&format!("\"{field}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "fields out of contract order: {line}"
    );
    assert_eq!(value["workflow_id"], Value::Null);
    assert_eq!(value["event_hash"], GOLDEN_HASH_1);
    assert_eq!(serde_json::from_str::<AuditEvent>(&line).unwrap(), event);
}

#[test]
fn seal_numbers_links_and_normalises_empty_collections() {
    let mut head = ChainHead::genesis("c");
    let first = head.seal(draft("c", 0, "session_start"));
    let second = head.seal(draft("c", 1, "tool_call"));
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.previous_hash, GENESIS_HASH);
    assert_eq!(second.previous_hash, first.event_hash);
    assert_eq!(first.dlp_findings, json!([]));
    assert_eq!(first.extra, json!({}));
    assert_eq!(head, ChainHead::after(&second));
    assert_eq!(second.event_hash.len(), 64);
    assert!(second
        .event_hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn intact_chain_and_empty_input_verify() {
    let events = chain("c", 5);
    assert_eq!(
        verify(&events),
        VerifyReport {
            events_verified: 5,
            chain_intact: true,
            first_bad_row: None
        }
    );
    assert_eq!(
        verify(&[]),
        VerifyReport {
            events_verified: 0,
            chain_intact: true,
            first_bad_row: None
        }
    );
}

#[test]
fn modified_field_is_caught_by_its_own_hash() {
    let mut events = chain("c", 5);
    events[2].tool_name = some("run_shell");
    let recomputed = events[2].compute_hash();
    let bad = bad_row(&events);
    assert_eq!(
        bad,
        BadRow {
            id: "c-event-2".into(),
            chain_id: "c".into(),
            seq: 3,
            reason: format!(
                "event_hash mismatch: stored {}, recomputed {recomputed} (a hashed field was changed)",
                events[2].event_hash
            ),
        }
    );
}

#[test]
fn modified_json_values_and_null_changes_are_caught() {
    let mut events = chain("c", 3);
    events[1].extra = json!({"note": "added later"});
    assert!(bad_row(&events).reason.starts_with("event_hash mismatch"));
    let mut events = chain("c", 3);
    events[1].agent_id = None;
    assert!(bad_row(&events).reason.starts_with("event_hash mismatch"));
}

#[test]
fn modified_and_rehashed_row_breaks_the_next_link() {
    let mut events = chain("c", 4);
    events[1].policy_result = some("allow");
    events[1].event_hash = events[1].compute_hash();
    let bad = bad_row(&events);
    assert_eq!(bad.seq, 3);
    assert_eq!(
        bad.reason,
        format!(
            "previous_hash mismatch: expected {} (event_hash of seq 2), found {}",
            events[1].event_hash, events[2].previous_hash
        )
    );
}

#[test]
fn deleted_row_leaves_a_gap_and_a_broken_link() {
    let mut events = chain("c", 5);
    let removed = events.remove(2);
    let bad = bad_row(&events);
    assert_eq!((bad.id.as_str(), bad.seq), ("c-event-3", 4));
    assert_eq!(
        bad.reason,
        format!(
            "seq gap: expected 3, found 4 (1 row(s) missing); previous_hash mismatch: expected {} (event_hash of seq 2), found {}",
            events[1].event_hash, removed.event_hash
        )
    );
}

#[test]
fn deleted_first_row_means_the_chain_does_not_start_at_genesis() {
    let mut events = chain("c", 3);
    events.remove(0);
    let bad = bad_row(&events);
    assert_eq!(bad.seq, 2);
    assert_eq!(
        bad.reason,
        format!(
            "first event of the chain has seq 2, expected 1 (earlier rows missing, or a range that needs an anchor); previous_hash mismatch: expected the genesis hash, found {}",
            events[0].previous_hash
        )
    );
}

#[test]
fn chain_starting_at_seq_one_without_the_genesis_hash_is_caught() {
    let mut head = ChainHead {
        chain_id: "c".into(),
        seq: 0,
        hash: "ab".repeat(32),
    };
    let events = [head.seal(draft("c", 0, "session_start"))];
    assert_eq!(
        bad_row(&events).reason,
        format!(
            "previous_hash mismatch: expected the genesis hash, found {}",
            "ab".repeat(32)
        )
    );
}

#[test]
fn inserted_row_is_caught_even_when_forged_with_valid_hashes() {
    let mut events = chain("c", 4);
    let mut forger = ChainHead::after(&events[1]);
    let forged = forger.seal(draft("c", 99, "tool_call"));
    assert_eq!(forged.seq, 3);
    events.insert(2, forged.clone());
    let bad = bad_row(&events);
    assert_eq!((bad.id.as_str(), bad.seq), ("c-event-2", 3));
    assert_eq!(
        bad.reason,
        format!(
            "seq out of order: expected 4, found 3 (duplicate, inserted or reordered row); previous_hash mismatch: expected {} (event_hash of seq 3), found {}",
            forged.event_hash, events[1].event_hash
        )
    );
}

#[test]
fn reordered_rows_are_caught() {
    let mut events = chain("c", 5);
    events.swap(2, 3);
    let bad = bad_row(&events);
    assert_eq!(bad.seq, 4);
    assert!(bad
        .reason
        .starts_with("seq gap: expected 3, found 4 (1 row(s) missing); previous_hash mismatch"));

    // Swapping the seq values instead (rows read back ordered by seq) breaks both rows' own hashes.
    let mut events = chain("c", 5);
    events[2].seq = 4;
    events[3].seq = 3;
    events.swap(2, 3);
    let bad = bad_row(&events);
    assert_eq!(bad.seq, 3);
    assert!(
        bad.reason.starts_with("event_hash mismatch"),
        "{}",
        bad.reason
    );
    assert!(
        bad.reason.contains("; previous_hash mismatch"),
        "{}",
        bad.reason
    );
}

#[test]
fn verification_keeps_counting_and_reports_only_the_first_bad_row() {
    let mut events = chain("c", 6);
    events[1].error = some("x");
    events[4].error = some("y");
    let report = verify(&events);
    assert_eq!(report.events_verified, 6);
    assert_eq!(report.first_bad_row.unwrap().seq, 2);
}

#[test]
fn a_range_starting_mid_chain_verifies_only_with_the_right_anchor() {
    let events = chain("c", 6);
    let range = &events[3..];
    let mut anchored = Verifier::new();
    anchored.anchor(ChainHead::after(&events[2]));
    range.iter().for_each(|event| anchored.push(event));
    assert!(anchored.finish().chain_intact);

    assert_eq!(bad_row(range).seq, 4);

    let mut wrong = Verifier::new();
    wrong.anchor(ChainHead::after(&events[1]));
    range.iter().for_each(|event| wrong.push(event));
    let bad = wrong.finish().first_bad_row.unwrap();
    assert!(
        bad.reason.starts_with("seq gap: expected 3, found 4"),
        "{}",
        bad.reason
    );

    let mut genesis = Verifier::new();
    genesis.anchor(ChainHead::genesis("c"));
    range.iter().for_each(|event| genesis.push(event));
    let bad = genesis.finish().first_bad_row.unwrap();
    let expected = format!(
        "previous_hash mismatch: expected the genesis hash, found {}",
        events[3].previous_hash
    );
    assert!(bad.reason.ends_with(&expected), "{}", bad.reason);
}

#[test]
fn interleaved_chains_are_verified_each_against_its_own_head() {
    let a = chain("proxy-a", 4);
    let b = chain("proxy-b", 4);
    let interleaved: Vec<AuditEvent> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    assert_eq!(
        verify(&interleaved),
        VerifyReport {
            events_verified: 8,
            chain_intact: true,
            first_bad_row: None
        }
    );
    let mut broken = interleaved.clone();
    broken.remove(5); // proxy-b seq 3
    let bad = bad_row(&broken);
    assert_eq!((bad.chain_id.as_str(), bad.seq), ("proxy-b", 4));

    // An event moved into another chain: its own hash covers chain_id.
    let mut moved = interleaved;
    moved[2].chain_id = "proxy-b".into();
    assert!(bad_row(&moved).reason.starts_with("event_hash mismatch"));
}

#[test]
fn floats_in_hashed_values_are_reported_with_their_pointer() {
    let mut head = ChainHead::genesis("c");
    let event = head.seal(EventDraft {
        extra: json!({"a/b": {"ok": 1, "list": [1, 2.5]}}),
        ..draft("c", 0, "session_start")
    });
    assert_eq!(
        bad_row(&[event]).reason,
        "floating-point number in hashed value at /extra/a~1b/list/1"
    );
}

/// Runs `tools/verify-audit.py` on `ndjson`; `None` (with a notice) when python3 is absent.
fn run_python_verifier(name: &str, ndjson: &str) -> Option<(i32, Value)> {
    use std::process::Command;
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("NOTICE: python3 not found; skipping the tools/verify-audit.py check");
        return None;
    }
    let path = std::env::temp_dir().join(format!(
        "toolgate-chain-{}-{name}.ndjson",
        std::process::id()
    ));
    std::fs::write(&path, ndjson).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/verify-audit.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    Some((output.status.code().unwrap(), report))
}

fn ndjson(events: &[AuditEvent]) -> String {
    events
        .iter()
        .map(|event| serde_json::to_string(event).unwrap() + "\n")
        .collect()
}

/// The Python verifier must reach the engine's verdict, reason for reason, from the NDJSON lines alone.
fn assert_python_agrees(name: &str, events: &[AuditEvent], exit_code: i32) {
    let Some((code, report)) = run_python_verifier(name, &ndjson(events)) else {
        return;
    };
    assert_eq!(
        report,
        serde_json::to_value(verify(events)).unwrap(),
        "{name}"
    );
    assert_eq!(code, exit_code, "{name}");
}

fn python_chain() -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis("gw-01");
    let mut events = vec![head.seal(golden_call()), head.seal(golden_result())];
    events.extend((2..6).map(|n| head.seal(draft("gw-01", n, "tool_call"))));
    events
}

#[test]
fn python_verifier_accepts_an_intact_export() {
    let events = python_chain();
    assert_eq!(events[1].event_hash, GOLDEN_HASH_2);
    assert_python_agrees("intact", &events, 0);
}

#[test]
fn python_verifier_reports_the_same_bad_row_as_the_engine() {
    let mut modified = python_chain();
    modified[1].target = some("/etc/shadow");
    assert_python_agrees("modified", &modified, 1);

    let mut deleted = python_chain();
    deleted.remove(3);
    assert_python_agrees("deleted", &deleted, 1);

    let mut reordered = python_chain();
    reordered.swap(0, 1);
    assert_python_agrees("reordered", &reordered, 1);
}

#[test]
fn python_verifier_hashes_and_rejects_floats_like_the_engine() {
    let mut head = ChainHead::genesis("gw-01");
    let events = [head.seal(EventDraft {
        extra: json!({"score": 0.1, "big": 1e21, "zero": -0.0, "tiny": 1.5e-9}),
        ..draft("gw-01", 0, "session_start")
    })];
    let report = verify(&events);
    // The hash itself holds (both sides write floats the ECMAScript way); only the float is reported.
    assert_eq!(
        report.first_bad_row.as_ref().unwrap().reason,
        "floating-point number in hashed value at /extra/big"
    );
    assert_python_agrees("floats", &events, 1);
}

#[test]
fn python_verifier_reports_a_malformed_line() {
    let events = python_chain();
    let mut lines = ndjson(&events[..2]);
    lines.push_str("{\"id\": \"truncated\"\n");
    let Some((code, report)) = run_python_verifier("malformed", &lines) else {
        return;
    };
    assert_eq!(code, 1);
    assert_eq!(report["events_verified"], 3);
    let reason = report["first_bad_row"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("line 3: invalid JSON"), "{reason}");
}

/// Strings that stress the JCS string writer: escapes, controls, DEL, multi-byte and supplementary characters.
const TEXTS: [&str; 10] = [
    "",
    "plain",
    "q\" b\\ s/",
    "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
    "été – \"naïve\" ✓",
    "😀 \u{10ffff} \u{e000} \u{fb33} \u{ffff}",
    "line\nbreak\r\ttab",
    "</script>&'<>",
    "0193a5b2-7c1e-7d3f-9a4b-2c6d8e0f1a2b",
    "\\u0041 not an escape",
];

/// Integers around the ±2^53 edge, where JCS switches to the nearest double's form, and the i64 extremes.
const INTEGERS: [i64; 10] = [
    0,
    -1,
    200,
    9_007_199_254_740_991,
    9_007_199_254_740_992,
    9_007_199_254_740_993,
    -9_007_199_254_740_993,
    i64::MAX,
    i64::MIN,
    1_234_567_890_123,
];

/// A value for `extra` or `dlp_findings`: nested objects with keys that sort differently in UTF-8 and UTF-16,
/// arrays, every scalar kind, floats included (they hash; the verifier reports them separately).
fn varied_json(n: usize) -> Value {
    let keys = [
        "a", "B", "", "é", "\u{fb33}", "😀", "\u{e000}", "z\n", "10", "1",
    ];
    let leaves = [
        json!(null),
        json!(true),
        json!(false),
        json!(INTEGERS[n % INTEGERS.len()]),
        json!(u64::MAX),
        json!(1.5),
        json!(-2.25e-7),
        json!(1e21),
        json!(TEXTS[n % TEXTS.len()]),
    ];
    match n % 5 {
        0 => json!({}),
        1 => json!([]),
        2 => json!([leaves[n % leaves.len()].clone(), {"count": n, "path": "/content/0/text"}]),
        _ => {
            let mut object = Map::new();
            for i in 0..(n % 7 + 1) {
                let key = format!("{}{}", keys[(n + i) % keys.len()], i % 3);
                let leaf = leaves[(n * 3 + i) % leaves.len()].clone();
                let value = if i % 2 == 0 {
                    leaf
                } else {
                    json!({ keys[(n + 2 * i) % keys.len()]: [leaf, {}], "x": {"y": [n]} })
                };
                object.insert(key, value);
            }
            Value::Object(object)
        }
    }
}

/// An event whose every field varies with `n`: nulls, empty and odd strings, big and negative integers.
fn varied_event(n: usize) -> AuditEvent {
    let text = |k: usize| TEXTS[(n * 7 + k) % TEXTS.len()].to_owned();
    let opt_text = |k: usize| ((n + k) % 4 != 0).then(|| text(k));
    let opt_int = |k: usize| ((n + k) % 3 != 0).then(|| INTEGERS[(n + k) % INTEGERS.len()]);
    AuditEvent {
        id: text(1),
        chain_id: text(2),
        seq: INTEGERS[n % INTEGERS.len()],
        timestamp: text(3),
        event_type: text(4),
        agent_id: opt_text(5),
        session_id: opt_text(6),
        tenant_id: opt_text(7),
        workflow_id: opt_text(8),
        requester_id: opt_text(9),
        tool_name: opt_text(10),
        mcp_server: opt_text(11),
        action: opt_text(12),
        target: opt_text(13),
        input_hash: opt_text(14),
        policy_result: opt_text(15),
        policy_id: opt_text(16),
        policy_reason: opt_text(17),
        behavioral_score: opt_text(18),
        dlp_findings: varied_json(n),
        dlp_action: opt_text(19),
        response_code: opt_int(20),
        latency_us: opt_int(21),
        error: opt_text(22),
        trace_id: opt_text(23),
        extra: varied_json(n / 3 + 2),
        previous_hash: if n % 5 == 0 {
            GENESIS_HASH.to_owned()
        } else {
            text(24)
        },
        event_hash: String::new(),
    }
}

/// The fast path (fields written straight into a buffer, hashed incrementally) equals the definition
/// `sha256(JCS(hashed_object()) + previous_hash)` byte for byte, on many varied events.
#[test]
fn fast_hash_equals_the_definition_on_varied_events() {
    let mut buffer = Vec::new();
    for n in 0..2000 {
        let event = varied_event(n);
        let jcs = to_jcs(&event.hashed_object());
        buffer.clear();
        event.write_hashed_jcs(&mut buffer);
        assert_eq!(std::str::from_utf8(&buffer).unwrap(), jcs, "event {n}");
        let expected = sha256_hex(format!("{jcs}{}", event.previous_hash).as_bytes());
        assert_eq!(event.compute_hash(), expected, "event {n}");
        assert_eq!(
            &event.hash_hex(&mut buffer)[..],
            expected.as_bytes(),
            "event {n}"
        );
    }
}

/// The verifier's reused buffer and stack hex give the same verdicts as hashing each event afresh.
#[test]
fn verifier_checks_varied_events_against_their_definition_hash() {
    let mut verifier = Verifier::new();
    for n in 0..200 {
        let mut event = varied_event(n);
        event.chain_id = format!("chain-{n}");
        event.seq = 1;
        event.previous_hash = GENESIS_HASH.to_owned();
        event.extra = json!({"n": n, "text": TEXTS[n % TEXTS.len()]});
        event.dlp_findings = json!([]);
        let bytes = format!("{}{}", to_jcs(&event.hashed_object()), event.previous_hash);
        event.event_hash = sha256_hex(bytes.as_bytes());
        verifier.push(&event);
    }
    let report = verifier.finish();
    assert_eq!(report.events_verified, 200);
    assert!(report.chain_intact, "{report:?}");
}
