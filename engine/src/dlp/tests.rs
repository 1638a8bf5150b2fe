//! The detectors' behaviour: what each one finds, what it must not, and what findings may never carry.

use super::*;
use serde_json::json;

use super::financial::luhn_valid;
use super::generic::looks_random;
use super::text::is_wrapped_base64;

pub(super) const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(super) const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub(super) const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
pub(super) const GITHUB: &str = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s0Q";
pub(super) const SLACK: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
pub(super) const STRIPE_LIVE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
pub(super) const STRIPE_TEST: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
pub(super) const GOOGLE: &str = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q";
pub(super) const RANDOM: &str = "q8Xv2LmN7pRt4ZkW9yHc3JdF6sGb";
/// A real self-signed certificate (public material: its key was thrown away).
pub(super) const CERTIFICATE: &str = include_str!("../../tests/fixtures/dlp/certificate.pem");

pub(super) fn private_key_block() -> String {
    [
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z5WnyP0k4vU8qLd2XeR7sYtB",
        "c9fKp2Lm4Nq8Rs1Tu3Vw5Xy7Za0Bc2De4Fg6Hi8Jk0Lm2No4Pq6Rs8Tu0Vw2Xy4Z",
        "-----END RSA PRIVATE KEY-----",
    ]
    .join("\n")
}

/// Every scan in these tests is a redaction test too: see [`assert_redaction_agrees`].
fn scan(v: Value) -> Vec<Finding> {
    let scanner = Scanner::new();
    let found = scanner.scan(&v);
    assert_redaction_agrees(&scanner, &v, &found);
    found
}

/// The differential property over the whole corpus: `redact` returns what `scan` returns on the same value;
/// a value without findings comes out byte-identical; the redacted value holds nothing a scan finds; and
/// redacting it again finds nothing and changes nothing.
pub(super) fn assert_redaction_agrees(scanner: &Scanner, v: &Value, found: &[Finding]) {
    let mut redacted = v.clone();
    assert_eq!(
        scanner.redact(&mut redacted),
        found,
        "redact vs scan of {v}"
    );
    if found.is_empty() {
        assert_eq!(
            serde_json::to_string(&redacted).unwrap(),
            serde_json::to_string(v).unwrap()
        );
    }
    assert_eq!(
        scanner.scan(&redacted),
        vec![],
        "{v} redacted to {redacted}"
    );
    let mut again = redacted.clone();
    assert_eq!(scanner.redact(&mut again), vec![]);
    assert_eq!(again, redacted);
}

/// (kind, path, count) of every finding, for compact assertions.
fn kinds(v: Value) -> Vec<(String, String, u32)> {
    scan(v)
        .into_iter()
        .map(|f| (f.kind, f.path, f.count))
        .collect()
}

fn kinds_of(s: &str) -> Vec<String> {
    scan(json!({ "text": s }))
        .into_iter()
        .map(|f| f.kind)
        .collect()
}

fn one(kind: &str, path: &str, count: u32) -> Vec<(String, String, u32)> {
    vec![(kind.to_owned(), path.to_owned(), count)]
}

#[test]
fn severity_names_order_and_serde() {
    assert_eq!(Severity::Low.as_str(), "low");
    assert_eq!(Severity::Medium.as_str(), "medium");
    assert_eq!(Severity::High.as_str(), "high");
    assert_eq!(Severity::Critical.as_str(), "critical");
    assert!(Severity::Low < Severity::Medium && Severity::High < Severity::Critical);
    assert_eq!(
        serde_json::to_value(Severity::Critical).unwrap(),
        json!("critical")
    );
    let f = Finding {
        kind: "email".into(),
        severity: Severity::Medium,
        path: "/to".into(),
        count: 2,
    };
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(
        v,
        json!({"type": "email", "severity": "medium", "path": "/to", "count": 2})
    );
    assert_eq!(serde_json::from_value::<Finding>(v).unwrap(), f);
}

#[test]
fn scanner_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scanner>();
    let _ = Scanner::default();
}

#[test]
fn email_detected_and_counted() {
    let f =
        scan(json!({"body": "write to alice.smith+tag@example.co.uk or (bob@mail.example.com)."}));
    assert_eq!(
        f,
        vec![Finding {
            kind: "email".into(),
            severity: Severity::Medium,
            path: "/body".into(),
            count: 2
        }]
    );
}

#[test]
fn email_false_positives() {
    for s in [
        "see icon@2x.png and logo@3x.svg",
        "git clone git@github.com:org/repo.git",
        "ping @alice about it",
        "npm install lodash@4.17.21",
        "root@localhost",
        "https://docs.example.com/user@host",
        "an email-shaped typo a@b",
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn credit_card_formats() {
    assert_eq!(
        kinds(json!({"c": "card 4111111111111111 exp 12/29"})),
        one("credit_card", "/c", 1)
    );
    assert_eq!(
        kinds(json!({"c": "5555 5555 5555 4444"})),
        one("credit_card", "/c", 1)
    );
    assert_eq!(
        kinds(json!({"c": "3782-822463-10005"})),
        one("credit_card", "/c", 1)
    );
    assert_eq!(
        kinds(json!({"c": "6011-1111-1111-1117, 4242 4242 4242 4242"})),
        one("credit_card", "/c", 2)
    );
    // Two spaced cards back to back are two cards, not one 32-digit number.
    assert_eq!(
        kinds(json!({"c": "4111 1111 1111 1111 5555 5555 5555 4444"})),
        one("credit_card", "/c", 2)
    );
    assert_eq!(
        kinds(json!({"c": 4111111111111111u64})),
        one("credit_card", "/c", 1)
    );
}

#[test]
fn credit_card_false_positives() {
    assert!(!luhn_valid(b"4111111111111112"));
    assert!(luhn_valid(b"1000000000000008") && luhn_valid(b"9999999999999995"));
    for s in [
        "order 4111111111111112 shipped",  // Visa prefix, fails Luhn
        "ref 1000000000000008",            // Luhn-valid, no issuer starts with 1
        "id 9999999999999995",             // Luhn-valid, no issuer starts with 9
        "41111111111111110000",            // 20 digits
        "pi is 3.4111111111111111",        // a decimal
        "ORD4111111111111111",             // glued to a word
        "ts 1700000000000 and 2024-01-15", // a timestamp and a date
        "4111 11 1111 1111 1111",          // irregular grouping
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
    assert!(scan(json!({"n": 1700000000000123u64, "f": 4.111111111111111})).is_empty());
}

#[test]
fn us_ssn_valid_and_ssa_invalid_ranges() {
    assert_eq!(
        kinds(json!({"s": "SSN: 536-22-1234."})),
        one("us_ssn", "/s", 1)
    );
    for s in [
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "536-00-1234",
        "536-22-0000",
        "1536-22-1234",
        "536-22-12345",
        "2024-01-15",
        "536221234",
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn iban_checksum_and_length() {
    assert_eq!(
        kinds(json!({"i": "pay DE89370400440532013000 today"})),
        one("iban", "/i", 1)
    );
    assert_eq!(
        kinds(json!({"i": "GB82 WEST 1234 5698 7654 32"})),
        one("iban", "/i", 1)
    );
    assert_eq!(
        kinds(json!({"i": "FR1420041010050500013M02606"})),
        one("iban", "/i", 1)
    );
    for s in [
        "DE88370400440532013000",  // checksum off by one
        "DE8937040044053201300",   // one short
        "DE893704004405320130001", // one long
        "ZZ89370400440532013000",  // no such country
        "XDE89370400440532013000", // glued to a word
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn aws_access_key() {
    assert_eq!(
        kinds(json!({"k": format!("id={AWS_KEY_ID}")})),
        one("aws_access_key", "/k", 1)
    );
    assert_eq!(
        kinds(json!({"k": "ASIAY34FZKBOKMUTVV7A"})),
        one("aws_access_key", "/k", 1)
    );
    // Glued to a word it is still a key (evasion_tests.rs); these are not key ids at all: too short, or a
    // longer run whose characters after the prefix are not base32.
    for s in [
        "AKIAIOSFODNN7EXAMPL",
        "AKIA1234567890ABCDEFG",
        "ASIAPACIFIC2024REGION01",
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn aws_secret_key_needs_context() {
    assert_eq!(
        kinds(json!({"aws_secret_access_key": AWS_SECRET})),
        one("aws_secret_key", "/aws_secret_access_key", 1)
    );
    assert_eq!(
        kinds(json!({"SecretAccessKey": AWS_SECRET})),
        one("aws_secret_key", "/SecretAccessKey", 1)
    );
    let env = format!("AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n");
    let mut f = kinds(json!({ "content": env }));
    f.sort();
    assert_eq!(
        f,
        vec![
            ("aws_access_key".into(), "/content".into(), 1),
            ("aws_secret_key".into(), "/content".into(), 1)
        ]
    );
    let ini = format!("[default]\naws_secret_access_key = {AWS_SECRET}");
    assert_eq!(
        kinds(json!({ "content": ini })),
        one("aws_secret_key", "/content", 1)
    );
    // No context: 40 base64 characters alone are not called an AWS key, and a SHA-1 never is.
    assert!(kinds_of(&format!("value {AWS_SECRET}"))
        .iter()
        .all(|k| k != "aws_secret_key"));
    assert!(kinds_of("aws_secret commit da39a3ee5e6b4b0d3255bfef95601890afd80709").is_empty());
}

#[test]
fn private_key_blocks() {
    let pem = private_key_block();
    assert_eq!(
        kinds(json!({ "file": format!("key:\n{pem}\n") })),
        one("private_key", "/file", 1)
    );
    let openssh = pem.replace("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY");
    assert_eq!(
        kinds(json!({ "file": openssh })),
        one("private_key", "/file", 1)
    );
    // Truncated (no footer) still counts; escaped newlines (`\n` as two characters) too.
    let truncated = pem.lines().take(2).collect::<Vec<_>>().join("\\n");
    assert_eq!(
        kinds(json!({ "file": truncated })),
        one("private_key", "/file", 1)
    );
    // A header alone, as in documentation, is not a key; a certificate is public.
    assert!(kinds_of("look for -----BEGIN PRIVATE KEY----- at the top of the file").is_empty());
    assert!(
        kinds_of(CERTIFICATE).is_empty(),
        "{:?}",
        kinds_of(CERTIFICATE)
    );
    // A key body under a certificate's label is a key all the same.
    let relabelled = pem.replace("RSA PRIVATE KEY", "CERTIFICATE");
    assert_eq!(
        kinds(json!({ "file": relabelled })),
        one("private_key", "/file", 1)
    );
}

#[test]
fn jwt_requires_a_header_with_alg() {
    assert_eq!(
        kinds(json!({ "auth": format!("Bearer {JWT}") })),
        one("jwt", "/auth", 1)
    );
    // eyJ + base64url of `{"typ":"x"}`: JSON, but no alg.
    assert!(kinds_of("eyJ0eXAiOiJ4In0.eyJzdWIiOiIxIn0.c2ln").is_empty());
    // eyJ followed by bytes that do not decode to JSON.
    assert!(kinds_of("eyJzzzz.abc.def").is_empty());
    assert!(kinds_of("version eyJx.y.z").is_empty());
}

#[test]
fn github_slack_stripe_google() {
    assert_eq!(kinds(json!({ "t": GITHUB })), one("github_token", "/t", 1));
    let pat = format!(
        "github_pat_11ABCDEFG0{}_{}",
        "a1B2c3D4e5F6g7H8i9J0kL", "m1N2o3P4q5R6s7T8u9V0w1X2y3Z4a5B6c7D8e9F0g1H2i3J4k5L6m7N8o9P"
    );
    assert_eq!(kinds(json!({ "t": pat })), one("github_token", "/t", 1));
    assert!(kinds_of("ghp_short1234").is_empty());
    assert_eq!(kinds(json!({ "t": SLACK })), one("slack_token", "/t", 1));
    assert!(kinds_of("xoxb-not-a-token").is_empty());
    let f = scan(
        json!({ "live": STRIPE_LIVE, "test": STRIPE_TEST, "pk": "pk_live_4eC39HqLyjWDarjtT1zdp7dc" }),
    );
    let sev: Vec<_> = f
        .iter()
        .map(|f| (f.kind.as_str(), f.path.as_str(), f.severity))
        .collect();
    assert_eq!(
        sev,
        vec![
            ("stripe_key", "/live", Severity::Critical),
            ("stripe_key", "/test", Severity::Medium)
        ]
    );
    // Live and test key in one value: one finding, count 2, the worse severity.
    let f = scan(json!({ "both": format!("{STRIPE_TEST} {STRIPE_LIVE}") }));
    assert_eq!((f[0].count, f[0].severity), (2, Severity::Critical));
    assert_eq!(
        kinds(json!({ "url": format!("https://maps.googleapis.com/api?key={GOOGLE}") })),
        one("google_api_key", "/url", 1)
    );
    assert!(kinds_of("AIzaTooShort123").is_empty());
}

#[test]
fn specific_detectors_are_not_also_generic() {
    for v in [
        json!({ "token": GITHUB }),
        json!({ "api_key": STRIPE_LIVE }),
        json!({ "password": format!("{JWT}") }),
    ] {
        let f = scan(v.clone());
        assert_eq!(f.len(), 1, "{v}: {f:?}");
        assert_ne!(f[0].kind, "generic_secret");
    }
    let f = kinds_of(&format!(
        "export GITHUB_TOKEN={GITHUB}\nSLACK_TOKEN=\"{SLACK}\""
    ));
    assert_eq!(f, vec!["github_token", "slack_token"]);
}

#[test]
fn generic_secret_by_key_name() {
    let v = json!({
        "db": {"password": "hunter22", "host": "db.internal"},
        "client_secret": "c3VwZXItc2VjcmV0LXZhbHVl",
        "X-Api-Key": "abcd1234efgh5678",
        "headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        "tokens": {"access_token": ["tok-abc-123-xyz"]}
    });
    let mut f = kinds(v);
    f.sort();
    let want: Vec<(String, String, u32)> = [
        "/X-Api-Key",
        "/client_secret",
        "/db/password",
        "/headers/Authorization",
        "/tokens/access_token/0",
    ]
    .iter()
    .map(|p| ("generic_secret".to_owned(), (*p).to_owned(), 1))
    .collect();
    assert_eq!(f, want);
}

#[test]
fn generic_secret_key_name_false_positives() {
    let v = json!({
        "password": "",
        "passwd": "****",
        "secret": "${DB_SECRET}",
        "api_key": "<your-api-key>",
        "token": "YOUR_TOKEN_HERE",
        "client_secret": "changeme",
        "pageToken": "CAoQAA-next-page-cursor",
        "_meta": {"progressToken": "progress-abc-123456"},
        "secret_ref": "projects/p/secrets/db/versions/latest",
        "secret_path": "/run/secrets/db_password",
        "max_tokens": "4096",
        "is_secret": "false",
        "token_url": "https://auth.example.com/oauth/token"
    });
    assert!(scan(v.clone()).is_empty(), "{:?}", scan(v));
}

#[test]
fn generic_secret_in_text_assignments() {
    assert_eq!(
        kinds(json!({"cmd": "mysql -u root --password=S3cr3tP4ss db"})),
        one("generic_secret", "/cmd", 1)
    );
    assert_eq!(
        kinds(json!({"env": "DEBUG=1\nDB_PASSWORD=hunter22\nAPI_TOKEN='tk-9f8e7d6c5b4a'\n"})),
        one("generic_secret", "/env", 2)
    );
    assert_eq!(
        kinds(json!({"yaml": "db:\n  password: hunter22\n"})),
        one("generic_secret", "/yaml", 1)
    );
    assert_eq!(
        kinds(json!({"json": "{\"client_secret\":\"s3cr3t-v4lue-xyz\"}"})),
        one("generic_secret", "/json", 1)
    );
    assert_eq!(
        kinds(json!({"url": "https://api.example.com/v1/me?access_token=a1b2c3d4e5f6"})),
        one("generic_secret", "/url", 1)
    );
    assert_eq!(
        kinds(json!({"url": "postgres://app:Sup3rS3cret@db.example.com:5432/app"})),
        one("generic_secret", "/url", 1)
    );
    // The assignment is seen first, but the card in its value is still called a card.
    assert_eq!(
        kinds(json!({"yaml": "password: 4111 1111 1111 1111"})),
        one("credit_card", "/yaml", 1)
    );
    for s in [
        "client = Client(api_key=api_key)",
        "password = os.environ[\"DB_PASSWORD\"]",
        "token=self.token",
        "if password == expected:",
        "Reset your password: required for login",
        "password: ${DB_PASSWORD}",
        "https://example.com/search?q=rust&page=2&token_type=bearer",
        "postgres://app@db.example.com:5432/app",
        "API_TOKEN=",
    ] {
        assert!(kinds_of(s).is_empty(), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn generic_secret_by_entropy() {
    assert_eq!(
        kinds(json!({"note": format!("use {RANDOM} for staging")})),
        one("generic_secret", "/note", 1)
    );
    assert_eq!(
        kinds(json!({"note": format!("{RANDOM}\n{}", "Zr7Qw2Tx9Lp4Mv8Kc3Bn6Hd1Fs5Gy0Ja")})),
        one("generic_secret", "/note", 2)
    );
}

#[test]
fn generic_secret_entropy_false_positives() {
    for s in [
        "The quick brown fox jumps over the lazy dog while 42 developers review pull request 1234.",
        "550e8400-e29b-41d4-a716-446655440000",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "/home/alice/projects/toolgate/engine/src/dlp.rs",
        "C:\\Users\\Alice\\Documents\\Quarterly_Report_2024_Final_v2.xlsx",
        "https://docs.rs/regex/1.13.2/regex/struct.RegexSet.html?search=find_iter#method.matches",
        "https://github.com/rust-lang/rust/pull/123456/files#diff-4f5e6d7c",
        "getUserAccountSettingsHandlerFactory2",
        "my-very-long-kebab-case-name-2024",
        "test_scan_nested_arrays_and_objects_2",
        "2026-11-22T20:15:00.123456Z",
        "x86_64-unknown-linux-gnu",
        "ubuntu-22.04-server-cloudimg-amd64.img",
        "integrity sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg==",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop",
    ] {
        assert!(kinds_of(s).iter().all(|k| k != "generic_secret"), "{s:?}: {:?}", kinds_of(s));
    }
}

#[test]
fn wrapped_base64_file_is_data_not_secrets() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let line = |x: &mut u64| -> String {
        (0..76)
            .map(|_| {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                char::from(alphabet[(*x % 64) as usize])
            })
            .collect()
    };
    let lines: Vec<String> = (0..12).map(|_| line(&mut x)).collect();
    let blob = format!("{}\nAAAA==", lines.join("\n"));
    assert!(is_wrapped_base64(blob.as_bytes()));
    assert!(scan(json!({ "content": blob })).is_empty());
    // The same random lines as separate values are each a random token.
    let f = kinds(json!({ "a": lines[0], "b": lines[1] }));
    assert_eq!(f.len(), 2, "{f:?}");
    // An env file is not a blob, even without spaces.
    assert!(!is_wrapped_base64(
        format!("A=1\n{}", lines.join("\n")).as_bytes()
    ));
}

#[test]
fn ids_of_words_and_hex_are_not_random() {
    // The hex part of such ids is random; the whole id is not a credential. Every one of these must pass, not
    // only most: a session id under `session_id` was redacted from the audit log now and then.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..500 {
        let hex: String = (0..32)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b"0123456789abcdef"[(x % 16) as usize])
            })
            .collect();
        for id in [
            format!("upstream-session-{hex}"),
            format!("req_{hex}"),
            format!("Trace-{}-{}", &hex[..16], &hex[16..]),
        ] {
            assert!(!looks_random(id.as_bytes()), "{id}");
        }
    }
    // Still random: a word before base62, hex before a word, words with digits in them.
    assert!(looks_random(b"session-Xk9pQ2mN7vR4tY8wZ1aB3cD5"));
    assert!(looks_random(b"sk_live_4eC39HqLyjWDarjtT1zdp7dc"));
    assert!(looks_random(b"a1b2c3d4e5f6a7b8c9d0-Zq8Rt5Wm2Kx9Lp3Nv"));
}

#[test]
fn random_tokens_are_mostly_caught() {
    // A fixed xorshift stream: deterministic, yet unlike anything hand-written.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (len, want) in [(24, 85), (32, 93), (48, 96)] {
        let mut caught = 0;
        for _ in 0..200 {
            let token: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % 62) as usize]
                })
                .collect();
            caught += usize::from(looks_random(&token));
        }
        assert!(caught * 100 >= want * 200, "length {len}: {caught}/200");
    }
}

#[test]
fn json_pointer_escaping_and_nesting() {
    let v = json!({
        "a/b": {"m~n": "alice@example.com"},
        "items": [{"body": "x"}, {"tags": ["a", "b", "bob@example.com"]}],
        "": "carol@example.com"
    });
    assert_eq!(
        kinds(v),
        vec![
            ("email".into(), "/".into(), 1),
            ("email".into(), "/a~1b/m~0n".into(), 1),
            ("email".into(), "/items/1/tags/2".into(), 1),
        ]
    );
    assert_eq!(kinds(json!("dave@example.com")), one("email", "", 1));
    assert_eq!(
        kinds(json!(["x", ["eve@example.com"]])),
        one("email", "/1/0", 1)
    );
}

#[test]
fn findings_sorted_by_path_then_kind_with_counts() {
    let v = json!({
        "z": format!("{AWS_KEY_ID} a@example.com b@example.com 536-22-1234"),
        "a": "c@example.com",
        "items": [format!("{GITHUB} {GITHUB}")]
    });
    let f = kinds(v);
    assert_eq!(
        f,
        vec![
            ("email".into(), "/a".into(), 1),
            ("github_token".into(), "/items/0".into(), 2),
            ("aws_access_key".into(), "/z".into(), 1),
            ("email".into(), "/z".into(), 2),
            ("us_ssn".into(), "/z".into(), 1),
        ]
    );
}

#[test]
fn secret_in_object_key_is_found_and_redacted_from_the_path() {
    let v = json!({ "creds": { AWS_KEY_ID: { "note": "frank@example.com" } } });
    let f = scan(v);
    let paths: Vec<_> = f
        .iter()
        .map(|f| (f.kind.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("aws_access_key", "/creds/~redacted"),
            ("email", "/creds/~redacted/note")
        ]
    );
}

#[test]
fn a_key_that_would_be_a_finding_as_a_value_never_reaches_a_pointer() {
    // The fuzzer's case: the key is an assignment, a generic secret as a value and so as a key too, and it
    // sits in the pointer of the finding under it.
    let key = "db_password=hunter2hunter2";
    let v = json!({ "outer": { key: [STRIPE_LIVE] } });
    let found = scan(v.clone());
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        (found[0].kind.as_str(), found[0].path.as_str()),
        ("generic_secret", "/outer/~redacted")
    );
    assert_eq!(
        (found[1].kind.as_str(), found[1].path.as_str()),
        ("stripe_key", "/outer/~redacted/0")
    );
    // Redaction reports the same.
    let mut redacted = v;
    let reported = Scanner::new().redact(&mut redacted);
    assert_eq!(reported, found);
    // An ordinary key stays as written.
    let plain = scan(json!({ "api_settings": [STRIPE_LIVE] }));
    assert_eq!(plain[0].path, "/api_settings/0");
}

#[test]
fn an_armoured_block_with_a_short_body_is_scanned_without_panicking() {
    // The fuzzer's case (dlp_scan and dlp_redact, minimised): `MIIB` decodes to 30 82 01, a DER SEQUENCE
    // header whose two-byte length is cut short, and the check for a public DER block sliced past the end of
    // it: a panic on any message holding these few bytes, in a value or (since keys are scanned) a key.
    for text in [
        "-----BEGIN X-----\nMIIB",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    ] {
        assert_eq!(scan(json!({ "text": text })), vec![], "{text:?}");
        assert_eq!(scan(json!({ text: 1 })), vec![], "{text:?}");
    }
}

#[test]
fn findings_never_contain_the_values() {
    let pem = private_key_block();
    let secrets = [
        AWS_KEY_ID,
        AWS_SECRET,
        JWT,
        GITHUB,
        SLACK,
        STRIPE_LIVE,
        GOOGLE,
        RANDOM,
        "4111111111111111",
        "536-22-1234",
        "DE89370400440532013000",
        "alice@example.com",
        "hunter22",
        pem.as_str(),
    ];
    let v = json!({
        "aws": {"aws_secret_access_key": AWS_SECRET, "id": AWS_KEY_ID},
        "list": [JWT, GITHUB, SLACK, STRIPE_LIVE, GOOGLE, RANDOM, "4111111111111111"],
        "text": "ssn 536-22-1234 iban DE89370400440532013000 mail alice@example.com",
        "password": "hunter22",
        "pem": pem,
        "hunter22@example.com": 1
    });
    let f = scan(v);
    assert!(f.len() >= 12, "{f:?}");
    let out = format!("{f:?}{}", serde_json::to_string(&f).unwrap());
    for secret in secrets {
        let secret = secret.as_bytes();
        // No fragment of six bytes or more either.
        for w in secret.windows(6.min(secret.len())) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!out.contains(w), "output leaks {w:?}: {out}");
        }
    }
}

#[test]
fn clean_arguments_have_no_findings() {
    let v = json!({
        "path": "/home/projects/report.pdf",
        "query": "SELECT id, name FROM users WHERE created_at > '2024-01-01' LIMIT 50",
        "content": "# Release notes\n\nVersion 1.13.2 fixes issue #4512 and improves throughput by 12%.\n",
        "count": 3, "enabled": true, "ratio": 0.25, "nothing": null
    });
    assert!(scan(v.clone()).is_empty(), "{:?}", scan(v));
}

#[test]
fn an_assignment_moved_into_a_key_is_the_same_finding_as_in_a_value() {
    let as_value = scan(json!({ "note": "db_password=hunter2hunter2" }));
    assert_eq!(as_value.len(), 1, "{as_value:?}");
    assert_eq!(as_value[0].kind, "generic_secret");
    for v in [
        json!({ "note": { "db_password=hunter2hunter2": 1 } }),
        json!({ "note": { "db_password=hunter2hunter2": { "x": true } } }),
        json!({ "note": [{ "api_key: hunter2hunter2": null }] }),
    ] {
        let found = scan(v.clone());
        assert_eq!(found.len(), 1, "{v}: {found:?}");
        assert_eq!(found[0].kind, as_value[0].kind, "{v}");
        assert_eq!(found[0].severity, as_value[0].severity, "{v}");
        assert!(found[0].path.ends_with("/~redacted"), "{found:?}");
        assert!(!found[0].path.contains("hunter2"), "{found:?}");
        // Redaction renames the key, reports the same, and leaves nothing to find.
        let mut redacted = v.clone();
        assert_eq!(Scanner::new().redact(&mut redacted), found);
        let text = redacted.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[REDACTED:generic_secret]"), "{text}");
        assert_eq!(scan(redacted), vec![]);
    }
    // Keys that only look like assignments stay clean.
    for key in [
        "a=b",
        "mode=fast",
        "password=",
        "sort_key=created_at",
        "x:y",
    ] {
        assert_eq!(scan(json!({ key: 1 })), vec![], "{key}");
    }
}
