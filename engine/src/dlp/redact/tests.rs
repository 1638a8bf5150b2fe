//! Redaction: what is replaced, what is kept byte for byte, and that a redacted value stays clean.

use serde_json::{json, Value};

use super::super::kinds::Kind;
use super::super::tests::{
    assert_redaction_agrees, private_key_block, AWS_KEY_ID, AWS_SECRET, CERTIFICATE, GITHUB, JWT,
    RANDOM, SLACK, STRIPE_LIVE,
};
use super::marker;
use crate::dlp::{Finding, Scanner};

/// Redacts a copy, checks the differential property, and returns the copy and the findings.
fn redact(v: &Value) -> (Value, Vec<Finding>) {
    let scanner = Scanner::new();
    let mut out = v.clone();
    let found = scanner.redact(&mut out);
    assert_redaction_agrees(&scanner, v, &found);
    (out, found)
}

fn text_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

#[test]
fn prose_around_an_aws_key_and_an_email_is_kept() {
    let (out, found) = redact(&text_result(&format!(
        "Deploy with {AWS_KEY_ID}, then mail alice@example.com about it."
    )));
    assert_eq!(
        out,
        text_result("Deploy with [REDACTED:aws_access_key], then mail [REDACTED:email] about it.")
    );
    let kinds: Vec<_> = found
        .iter()
        .map(|f| (f.kind.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("aws_access_key", "/content/0/text"),
            ("email", "/content/0/text")
        ]
    );
}

#[test]
fn a_private_key_block_is_replaced_whole() {
    let pem = private_key_block();
    let (out, _) = redact(&json!({ "file": format!("key:\n{pem}\ndone") }));
    assert_eq!(out, json!({"file": "key:\n[REDACTED:private_key]\ndone"}));
    // A certificate is public: left as it is.
    let cert = CERTIFICATE;
    let (out, found) = redact(&json!({ "file": cert }));
    assert!(found.is_empty());
    assert_eq!(out, json!({ "file": cert }));
}

#[test]
fn nested_arrays_and_numbers() {
    let v = json!([
        ["x", ["bob@example.com", 4111111111111111u64, 42]],
        {"a": [[GITHUB, "plain"]], "n": 3.5}
    ]);
    let (out, found) = redact(&v);
    assert_eq!(
        out,
        json!([
            ["x", ["[REDACTED:email]", "[REDACTED:credit_card]", 42]],
            {"a": [["[REDACTED:github_token]", "plain"]], "n": 3.5}
        ])
    );
    let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["/0/1/0", "/0/1/1", "/1/a/0/0"]);
}

#[test]
fn a_key_that_is_a_secret_is_renamed() {
    let v = json!({ "creds": { AWS_KEY_ID: { "note": "frank@example.com" } } });
    let (out, found) = redact(&v);
    assert_eq!(
        out,
        json!({ "creds": { "[REDACTED:aws_access_key]": { "note": "[REDACTED:email]" } } })
    );
    assert_eq!(found[0].path, "/creds/~redacted");
    // Renames never overwrite a member: the name taken gets `#2`, `#3`.
    let v = json!({
        "[REDACTED:aws_access_key]": 1,
        AWS_KEY_ID: 2,
        "ASIAY34FZKBOKMUTVV7A": 3,
        "ok": AWS_KEY_ID
    });
    let (out, _) = redact(&v);
    let Value::Object(map) = &out else {
        panic!("{out}")
    };
    let key_of = |n: Value| map.iter().find(|(_, v)| **v == n).map(|(k, _)| k.as_str());
    assert_eq!(map.len(), 4);
    assert_eq!(key_of(json!(1)), Some("[REDACTED:aws_access_key]"));
    let mut renamed = vec![key_of(json!(2)).unwrap(), key_of(json!(3)).unwrap()];
    renamed.sort_unstable();
    assert_eq!(
        renamed,
        vec!["[REDACTED:aws_access_key]#2", "[REDACTED:aws_access_key]#3"]
    );
    assert_eq!(map["ok"], json!("[REDACTED:aws_access_key]"));
}

#[test]
fn values_under_a_renamed_key_are_not_judged_by_its_new_name() {
    // `[REDACTED:generic_secret]` ends like a secret's name; the values under it were clean under the
    // original key and must stay clean (and unchanged) under the new one.
    for key in [RANDOM, GITHUB, SLACK] {
        for value in [
            json!("plainvalue99"),
            json!(["abcdefgh1234", {"note": "zyxwvuts9876"}]),
        ] {
            let (out, found) = redact(&json!({ key: value.clone(), "other": "x" }));
            assert_eq!(found.len(), 1, "{found:?}");
            let renamed = out
                .as_object()
                .unwrap()
                .keys()
                .find(|k| k.starts_with("[REDACTED:"))
                .unwrap();
            assert_eq!(out[renamed], value);
        }
    }
}

#[test]
fn a_key_and_its_value_report_together_and_both_go() {
    // The key's context (an AWS secret name) still applies to its value, as the scan judged it.
    let v = json!({ "aws_secret_access_key": AWS_SECRET, SLACK: "x" });
    let (out, found) = redact(&v);
    assert_eq!(
        out,
        json!({ "aws_secret_access_key": "[REDACTED:aws_secret_key]", "[REDACTED:slack_token]": "x" })
    );
    assert_eq!(found.len(), 2);
}

#[test]
fn a_value_found_by_its_key_name_is_replaced_whole() {
    let (out, _) = redact(&json!({"db": {"password": "correct horse battery"}}));
    assert_eq!(
        out,
        json!({"db": {"password": "[REDACTED:generic_secret]"}})
    );
    let (out, _) = redact(&json!({"env": "DB_PASSWORD=hunter22 DEBUG=1"}));
    assert_eq!(
        out,
        json!({"env": "DB_PASSWORD=[REDACTED:generic_secret] DEBUG=1"})
    );
}

#[test]
fn a_value_without_findings_is_byte_identical() {
    let v: Value = serde_json::from_str(
        r#"{"z":1,"a":{"text":"caf\u00e9 \u2603 \"quoted\" \\ back","pi":3.141592653589793,"big":18446744073709551615,
            "neg":-7,"e":1e-7,"list":[null,true,false,"",{}],"pk":"pk_live_4eC39HqLyjWDarjtT1zdp7dc"}}"#,
    )
    .unwrap();
    let before = serde_json::to_string(&v).unwrap();
    let (out, found) = redact(&v);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(serde_json::to_string(&out).unwrap(), before);
}

#[test]
fn markers_never_trigger_a_detector() {
    let scanner = Scanner::new();
    for kind in Kind::ALL {
        let m = marker(kind);
        let v = json!({
            "text": format!("see {m} and {m}{m}, id={m} password: {m}"),
            "password": m,
            "client_secret": m,
            "aws_secret_access_key": m,
            "headers": {"Authorization": format!("Bearer {m}")},
            "url": format!("https://user:{m}@example.com/?access_token={m}"),
            "env": format!("API_TOKEN={m}\nAWS_SECRET_ACCESS_KEY='{m}'"),
            m.clone(): format!("{m}#2"),
        });
        assert_eq!(scanner.scan(&v), vec![], "{m}");
    }
}

#[test]
fn text_glued_to_a_secret_does_not_survive_as_a_token() {
    // The AWS key's claim hid the rest of the run from the random-token detector; once the key is gone
    // the rest would stand alone. Redaction re-checks its output, so a second pass finds nothing.
    for text in [
        format!("{AWS_KEY_ID}_{RANDOM}"),
        format!("x {GITHUB}-{RANDOM} y"),
        format!("{STRIPE_LIVE}_{RANDOM}"),
        format!("Authorization: Bearer {JWT}"),
    ] {
        let (out, found) = redact(&json!({ "t": text }));
        assert!(!found.is_empty(), "{text}");
        assert!(!out["t"].as_str().unwrap().contains(RANDOM), "{out}");
    }
}

#[test]
fn an_mcp_result_stays_a_well_formed_result() {
    let v = json!({
        "content": [
            {"type": "text", "text": format!("token {GITHUB} for alice@example.com")},
            {"type": "resource", "resource": {"uri": "file:///srv/.env", "mimeType": "text/plain",
                "text": format!("AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n")}}
        ],
        "structuredContent": {"user": {"email": "alice@example.com", "card": 4111111111111111u64, "age": 41}},
        "isError": false
    });
    let (out, found) = redact(&v);
    assert_eq!(
        out,
        json!({
            "content": [
                {"type": "text", "text": "token [REDACTED:github_token] for [REDACTED:email]"},
                {"type": "resource", "resource": {"uri": "file:///srv/.env", "mimeType": "text/plain",
                    "text": "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]\n"}}
            ],
            "structuredContent": {"user": {"email": "[REDACTED:email]", "card": "[REDACTED:credit_card]", "age": 41}},
            "isError": false
        })
    );
    assert_eq!(found.len(), 6, "{found:?}");
    // The redacted result holds none of the secrets.
    let text = out.to_string();
    for secret in [
        GITHUB,
        AWS_KEY_ID,
        AWS_SECRET,
        "alice@example.com",
        "4111111111111111",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn generated_mixtures_redact_like_they_scan() {
    // Secrets glued to each other and to punctuation in every order a fixed xorshift stream picks: the
    // differential property must hold on text nobody wrote by hand.
    let pem = private_key_block();
    let pieces = [
        AWS_KEY_ID,
        AWS_SECRET,
        JWT,
        GITHUB,
        SLACK,
        STRIPE_LIVE,
        RANDOM,
        "4111111111111111",
        "4111 1111 1111 1111",
        "536-22-1234",
        "DE89370400440532013000",
        "alice@example.com",
        "password=hunter22",
        "aws_secret_access_key = ",
        "https://u:Sup3rS3cret@db.example.com",
        pem.as_str(),
        "token: ",
        "Bearer ",
        "[REDACTED:email]",
        "-",
        "_",
        "/",
        "=",
        " ",
        "\n",
        "\"",
        ":",
        "@",
        "é",
        "word",
        "\u{200B}",
        "\u{FEFF}",
        "%41",
        "%",
        "ＡＫＩＡ",
        "４１１１",
        "AKIA-IOSF",
        "4111.1111.1111.1111",
    ];
    let keys = [
        "text",
        "password",
        "aws_secret_access_key",
        "api_key",
        "Authorization",
    ];
    let scanner = Scanner::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for _ in 0..400 {
        let len = 1 + next(8);
        let text: String = (0..len).map(|_| pieces[next(pieces.len())]).collect();
        let key = keys[next(keys.len())];
        let v = json!({ key: text.clone(), "list": [text.clone()], text.clone(): 1 });
        let found = scanner.scan(&v);
        assert_redaction_agrees(&scanner, &v, &found);
    }
}
