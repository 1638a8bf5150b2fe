//! Small format changes that once slipped a secret past the detectors: a key glued to a word, dashed, split
//! by invisible characters, written in full-width letters or percent-encoded; cards as JSON numbers, dotted
//! or slashed; private keys without their armour or under another label. Each is found, reported at its
//! JSON pointer (never by value), and redacted so that nothing of it survives in the original bytes.

use serde_json::{json, Value};

use super::tests::{
    assert_redaction_agrees, private_key_block, AWS_KEY_ID, CERTIFICATE, GITHUB, GOOGLE,
    STRIPE_LIVE,
};
use super::*;

fn kinds_in(v: Value) -> Vec<(String, String)> {
    let scanner = Scanner::new();
    let found = scanner.scan(&v);
    assert_redaction_agrees(&scanner, &v, &found);
    found.into_iter().map(|f| (f.kind, f.path)).collect()
}

fn finds(kind: &str, text: &str) {
    let found = kinds_in(json!({ "t": text }));
    assert!(
        found.contains(&(kind.to_owned(), "/t".to_owned())),
        "{kind} not found in {text:?}: {found:?}"
    );
}

/// `s` with `sep` between every character.
fn interleave(s: &str, sep: &str) -> String {
    s.chars().map(|c| format!("{c}{sep}")).collect()
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            c => c,
        })
        .collect()
}

#[test]
fn keys_glued_to_a_word() {
    finds("aws_access_key", &format!("token{AWS_KEY_ID}"));
    finds("aws_access_key", &format!("KEY{AWS_KEY_ID}"));
    finds("aws_access_key", &format!("{AWS_KEY_ID}key"));
    finds("aws_access_key", &format!("{AWS_KEY_ID}END"));
    finds("aws_access_key", &format!("AKIA{AWS_KEY_ID}"));
    finds("github_token", &format!("key{GITHUB}"));
    finds("stripe_key", &format!("live{STRIPE_LIVE}"));
    finds("google_api_key", &format!("key{GOOGLE}"));
    finds("jwt", &format!("bearer{}", super::tests::JWT));
}

#[test]
fn keys_with_dashes_inside() {
    finds("aws_access_key", "AKIA-IOSF-ODNN-7EXA-MPLE");
    finds("aws_access_key", &interleave(AWS_KEY_ID, "-"));
    let dashed: String = GITHUB
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i > 4 && i % 5 == 0 {
                format!("-{c}")
            } else {
                c.to_string()
            }
        })
        .collect();
    finds("github_token", &dashed);
}

#[test]
fn keys_split_by_invisible_characters() {
    for sep in [
        "\u{200B}",
        "\u{200C}",
        "\u{200D}",
        "\u{2060}",
        "\u{FEFF}",
        "\u{00AD}",
        "\u{E0020}",
        "\u{E0041}",
        "\u{202E}",
        "\u{2066}",
        "\u{200E}",
    ] {
        finds("aws_access_key", &interleave(AWS_KEY_ID, sep));
        finds("github_token", &format!("x {} y", interleave(GITHUB, sep)));
    }
    // Mixed, and as an object key.
    finds(
        "aws_access_key",
        "AKIA\u{200B}IOSF\u{200D}ODNN\u{FEFF}7EXA\u{00AD}MPLE",
    );
    let key = interleave(AWS_KEY_ID, "\u{200B}");
    assert_eq!(
        kinds_in(json!({ key: 1 })),
        vec![("aws_access_key".to_owned(), "/~redacted".to_owned())]
    );
}

#[test]
fn fullwidth_letters_and_digits() {
    finds("aws_access_key", &fullwidth(AWS_KEY_ID));
    finds("github_token", &fullwidth(GITHUB));
    finds("credit_card", &fullwidth("4111 1111 1111 1111"));
    finds(
        "credit_card",
        "カード番号：４１１１１１１１１１１１１１１１",
    );
}

#[test]
fn percent_encoded() {
    finds("aws_access_key", &format!("%41{}", &AWS_KEY_ID[1..]));
    let all: String = AWS_KEY_ID.bytes().map(|b| format!("%{b:02X}")).collect();
    finds("aws_access_key", &all);
    finds(
        "github_token",
        &format!("https://example.com/?t=%67hp_{}", &GITHUB[4..]),
    );
    finds("credit_card", "card=4111%201111%201111%201111");
    finds("email", "to=alice%40example.com");
}

#[test]
fn card_numbers_as_json_numbers() {
    for v in [
        json!(4111111111111111u64),
        json!(-4111111111111111i64),
        serde_json::from_str::<Value>("4111111111111111.0").unwrap(),
        serde_json::from_str::<Value>("4.111111111111111e15").unwrap(),
        json!([5555555555554444u64]),
    ] {
        let found = kinds_in(json!({ "n": v }));
        assert!(
            found.iter().any(|(k, _)| k == "credit_card"),
            "{v}: {found:?}"
        );
    }
    // A float with a fraction, or a number of another length, is no card.
    assert!(kinds_in(json!({"n": 4111111111111111.5f64, "m": 1700000000000u64})).is_empty());
}

#[test]
fn card_numbers_dotted_or_slashed() {
    finds("credit_card", "4111.1111.1111.1111");
    finds("credit_card", "4111/1111/1111/1111");
    finds("credit_card", "paid with 5555.5555.5555.4444 today");
    for s in [
        "version 2024.0101.1234.5678",
        "4111.1111.1111.1112",
        "2026/11/27/1200",
    ] {
        assert!(kinds_in(json!({ "t": s })).is_empty(), "{s}");
    }
}

/// A PKCS#1 body whose first bytes are real DER and the rest filler (no real key is committed).
fn rsa_body() -> String {
    private_key_block()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn private_key_body_without_armour() {
    let body = rsa_body();
    finds("private_key", &body);
    finds("private_key", &format!("here it is:\n{body}\nbye"));
    finds("private_key", &body.replace('\n', "\\n"));
    finds(
        "private_key",
        &format!("key=\\n{}", body.replace('\n', "\\n")),
    );
    // One long line, and a body long enough to pass for a wrapped base64 file.
    finds("private_key", &body.replace('\n', ""));
    let long = format!(
        "{body}\n{}",
        (0..8)
            .map(|_| "A".repeat(64))
            .collect::<Vec<_>>()
            .join("\n")
    );
    finds("private_key", &long);
    // An OpenSSH key body: `openssh-key-v1\0` and more.
    finds(
        "private_key",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBvbGRfa2V5X2ZvcnRlc3RzX29ubHlfbm90X3JlYWwAAAA=",
    );
}

#[test]
fn private_key_under_another_label() {
    let pem = private_key_block();
    for label in ["FOO", "CERTIFICATE", "PUBLIC KEY", "DATA"] {
        finds("private_key", &pem.replace("RSA PRIVATE KEY", label));
    }
    finds(
        "private_key",
        &pem.replace("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY"),
    );
    finds(
        "private_key",
        &pem.replace(
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN rsa private key-----",
        ),
    );
    finds("private_key", &pem.replace("-----", "----"));
    let encrypted = pem.replace(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "-----BEGIN FOO-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123456789ABCDEF0123456789ABCDEF\n\n",
    );
    finds("private_key", &encrypted);
}

#[test]
fn armour_does_not_hide_what_it_wraps() {
    // A real certificate is public and stays quiet; a secret wrapped in certificate armour is found.
    assert!(kinds_in(json!({ "t": CERTIFICATE })).is_empty());
    let wrapped = format!("-----BEGIN CERTIFICATE-----\n{AWS_KEY_ID}\n-----END CERTIFICATE-----");
    finds("aws_access_key", &wrapped);
    let token =
        "-----BEGIN CERTIFICATE-----\nq8Xv2LmN7pRt4ZkW9yHc3JdF6sGb\n-----END CERTIFICATE-----";
    finds("generic_secret", token);
}

#[test]
fn what_only_the_normalised_view_shows_is_redacted_in_the_original() {
    let scanner = Scanner::new();
    let hidden = interleave(AWS_KEY_ID, "\u{200B}");
    let mut v = json!({ "t": format!("deploy with {hidden} now"), "u": format!("%41{}", &AWS_KEY_ID[1..]) });
    let found = scanner.redact(&mut v);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(v["t"], "deploy with [REDACTED:aws_access_key] now");
    assert_eq!(v["u"], "[REDACTED:aws_access_key]");
    // Full-width text around a full-width key keeps its own characters.
    let mut v = json!({ "t": format!("鍵：{}。", fullwidth(AWS_KEY_ID)) });
    scanner.redact(&mut v);
    assert_eq!(v["t"], "鍵：[REDACTED:aws_access_key]。");
    // A dashed key goes whole, dashes included.
    let mut v = json!({ "t": "id AKIA-IOSF-ODNN-7EXA-MPLE." });
    scanner.redact(&mut v);
    assert_eq!(v["t"], "id [REDACTED:aws_access_key].");
}

#[test]
fn findings_still_carry_pointers_and_never_values() {
    let v = json!({
        "a": {"b": [interleave(AWS_KEY_ID, "\u{2060}")]},
        "c": fullwidth(GITHUB),
        "d": rsa_body(),
    });
    let found = Scanner::new().scan(&v);
    let paths: Vec<_> = found
        .iter()
        .map(|f| (f.kind.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("aws_access_key", "/a/b/0"),
            ("github_token", "/c"),
            ("private_key", "/d")
        ]
    );
    let out = serde_json::to_string(&found).unwrap();
    for secret in [AWS_KEY_ID, &GITHUB[4..], &rsa_body()[..20]] {
        for w in secret.as_bytes().windows(6) {
            assert!(!out.contains(std::str::from_utf8(w).unwrap()), "{out}");
        }
    }
}
