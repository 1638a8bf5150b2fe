//! DLP rates, measured on corpora rather than on examples:
//! - the false-positive rate over `fixtures/dlp/benign.jsonl` (realistic tool arguments and results that
//!   hold no secret nor personal data; `generate_benign.py` writes it): no critical finding at all, since a
//!   critical finding denies the call under the shipped policy; and findings of any severity on at most 1 %
//!   of the strings, since a high one escalates the call to a human;
//! - the detection rate over the evasion corpus built here (every secret class in every small format change
//!   that once slipped through): 100 %, and each one redacted so that a scan of the result finds nothing and
//!   no piece of the secret survives, even normalised.
//!
//! Both rates are printed (`cargo test -p toolgate-engine --test dlp_corpus -- --nocapture`) and documented
//! in docs/dlp.md.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use toolgate_engine::dlp::{Scanner, Severity};
use unicode_normalization::UnicodeNormalization;

/// Strings of the benign corpus that may carry a finding of any severity, in percent.
const MAX_FALSE_POSITIVE_PERCENT: f64 = 1.0;

const CERTIFICATE: &str = include_str!("fixtures/dlp/certificate.pem");

fn benign() -> Vec<(String, Value)> {
    let mut rows: Vec<(String, Value)> = include_str!("fixtures/dlp/benign.jsonl")
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("a JSON line");
            (
                row["class"].as_str().unwrap().to_owned(),
                row["value"].clone(),
            )
        })
        .collect();
    rows.push(("certificate".into(), json!(CERTIFICATE)));
    rows.push((
        "certificate".into(),
        json!(format!(
            "{{\"cert\": \"{}\"}}",
            CERTIFICATE.replace('\n', "\\n")
        )),
    ));
    rows
}

#[test]
fn false_positive_rate_on_the_benign_corpus() {
    let scanner = Scanner::new();
    let rows = benign();
    assert!(rows.len() >= 300, "{} strings", rows.len());
    let mut by_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut flagged = Vec::new();
    let mut critical = Vec::new();
    for (class, value) in &rows {
        let found = scanner.scan(value);
        let entry = by_class.entry(class).or_default();
        entry.0 += 1;
        if !found.is_empty() {
            entry.1 += 1;
            flagged.push(format!("{class}: {found:?} in {value}"));
        }
        if found.iter().any(|f| f.severity == Severity::Critical) {
            critical.push(format!("{class}: {value}"));
        }
    }
    let rate = flagged.len() as f64 * 100.0 / rows.len() as f64;
    println!(
        "benign corpus: {} strings, {} with findings ({rate:.2} %), {} critical",
        rows.len(),
        flagged.len(),
        critical.len()
    );
    for (class, (n, f)) in &by_class {
        println!("  {class:<16} {n:>4} strings, {f} flagged");
    }
    for f in &flagged {
        println!("  flagged {f}");
    }
    assert!(
        critical.is_empty(),
        "critical findings on benign text: {critical:#?}"
    );
    assert!(
        rate <= MAX_FALSE_POSITIVE_PERCENT,
        "false-positive rate {rate:.2} % > {MAX_FALSE_POSITIVE_PERCENT} %: {flagged:#?}"
    );
}

/// Object keys are read as values are: the benign strings as keys are flagged no more often than as values
/// (an assignment moved into a key is found, so the false-positive rate must not grow with it).
#[test]
fn benign_strings_as_object_keys_are_flagged_no_more_than_as_values() {
    let scanner = Scanner::new();
    let (mut as_values, mut as_keys, mut keys) = (0usize, 0usize, 0usize);
    for (class, value) in &benign() {
        let Some(text) = value.as_str() else {
            continue;
        };
        keys += 1;
        let key = serde_json::json!({ text: 1 });
        let found = scanner.scan(&key);
        assert!(
            found.iter().all(|f| f.severity != Severity::Critical),
            "{class}: critical finding on a benign key {text:?}: {found:?}"
        );
        as_keys += usize::from(!found.is_empty());
        as_values += usize::from(!scanner.scan(value).is_empty());
    }
    println!(
        "benign corpus as object keys: {keys} keys, {as_keys} flagged ({as_values} as values)"
    );
    assert!(
        as_keys <= as_values,
        "{as_keys} keys flagged, {as_values} values"
    );
}

const INVISIBLE: [char; 12] = [
    '\u{200B}',
    '\u{200C}',
    '\u{200D}',
    '\u{2060}',
    '\u{FEFF}',
    '\u{00AD}',
    '\u{E0020}',
    '\u{E007F}',
    '\u{202A}',
    '\u{202E}',
    '\u{2066}',
    '\u{2069}',
];

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            ' ' => '\u{3000}',
            c => c,
        })
        .collect()
}

fn interleave(s: &str, sep: char) -> String {
    s.chars().flat_map(|c| [c, sep]).collect()
}

fn middle(s: &str, sep: char) -> String {
    let mid = s.len() / 2;
    format!("{}{sep}{}", &s[..mid], &s[mid..])
}

fn dashed(s: &str, every: usize) -> String {
    s.as_bytes()
        .chunks(every)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("-")
}

fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Every small format change of a token: glued to words, dashed, invisible characters inside, full-width,
/// percent-encoded.
fn token_variants(token: &str) -> Vec<(String, Value)> {
    let mut out = vec![
        ("as is".into(), json!(token)),
        ("glued after a word".into(), json!(format!("token{token}"))),
        ("glued after a capital".into(), json!(format!("KEY{token}"))),
        (
            "glued in prose".into(),
            json!(format!("use key{token} now")),
        ),
        ("dashed by 4".into(), json!(dashed(token, 4))),
        ("dashed by 1".into(), json!(dashed(token, 1))),
        ("full-width".into(), json!(fullwidth(token))),
        (
            "first byte percent-encoded".into(),
            json!(format!("%{:02X}{}", token.as_bytes()[0], &token[1..])),
        ),
        ("percent-encoded".into(), json!(percent_all(token))),
        (
            "in a query string, percent-encoded".into(),
            json!(format!("https://example.com/cb?x={}", percent_all(token))),
        ),
    ];
    for c in INVISIBLE {
        out.push((
            format!("U+{:04X} between every character", c as u32),
            json!(interleave(token, c)),
        ));
        out.push((
            format!("U+{:04X} in the middle", c as u32),
            json!(middle(token, c)),
        ));
    }
    out
}

fn card_variants(card: &str) -> Vec<(String, Value)> {
    let grouped = |sep: &str| {
        if card.len() == 16 {
            dashed(card, 4).replace('-', sep)
        } else {
            format!("{}{sep}{}{sep}{}", &card[..4], &card[4..10], &card[10..])
        }
    };
    let n: u64 = card.parse().unwrap();
    vec![
        ("as is".into(), json!(card)),
        ("JSON number".into(), json!(n)),
        ("negative JSON number".into(), json!(-(n as i64))),
        (
            "JSON float".into(),
            serde_json::from_str(&format!("{n}.0")).unwrap(),
        ),
        (
            "JSON exponent".into(),
            serde_json::from_str(&format!("{}.{}e{}", &card[..1], &card[1..], card.len() - 1))
                .unwrap(),
        ),
        ("spaced".into(), json!(grouped(" "))),
        ("dashed".into(), json!(grouped("-"))),
        ("dotted".into(), json!(grouped("."))),
        ("slashed".into(), json!(grouped("/"))),
        ("full-width".into(), json!(fullwidth(card))),
        ("full-width spaced".into(), json!(fullwidth(&grouped(" ")))),
        (
            "zero-width spaces".into(),
            json!(interleave(card, '\u{200B}')),
        ),
        ("percent-encoded spaces".into(), json!(grouped("%20"))),
    ]
}

/// Private keys: first bytes of real DER (or OpenSSH's magic), the rest filler. No real key is committed.
fn key_bodies() -> Vec<(&'static str, String)> {
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let filler = |n: usize| (0..n).map(|i| (i * 73 % 251) as u8).collect::<Vec<u8>>();
    let wrap = |s: String| {
        s.as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let der = |prefix: &[u8], n: usize| {
        let mut d = prefix.to_vec();
        d.extend(filler(n));
        wrap(b64(&d))
    };
    vec![
        (
            "PKCS#1 RSA",
            der(
                &[
                    0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00,
                ],
                300,
            ),
        ),
        (
            "PKCS#8 Ed25519",
            der(
                &[
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ],
                32,
            ),
        ),
        (
            "SEC1 P-256",
            der(&[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20], 112),
        ),
        (
            "encrypted PKCS#8",
            der(
                &[
                    0x30, 0x82, 0x01, 0x00, 0x30, 0x5b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                    0x0d, 0x01, 0x05, 0x0d,
                ],
                200,
            ),
        ),
        (
            "OpenSSH",
            der(b"openssh-key-v1\0\0\0\0\x04none\0\0\0\x04none", 200),
        ),
    ]
}

fn key_variants(body: &str) -> Vec<(String, Value)> {
    let armour = |label: &str, dashes: &str| {
        format!("{dashes}BEGIN {label}{dashes}\n{body}\n{dashes}END {label}{dashes}")
    };
    vec![
        ("labelled".into(), json!(armour("PRIVATE KEY", "-----"))),
        ("without armour".into(), json!(body)),
        (
            "without armour, in prose".into(),
            json!(format!("the key is:\n{body}\nkeep it safe")),
        ),
        ("on one line".into(), json!(body.replace('\n', ""))),
        (
            "escaped line breaks".into(),
            json!(format!("{{\"k\": \"{}\"}}", body.replace('\n', "\\n"))),
        ),
        ("relabelled FOO".into(), json!(armour("FOO", "-----"))),
        (
            "relabelled CERTIFICATE".into(),
            json!(armour("CERTIFICATE", "-----")),
        ),
        (
            "relabelled PUBLIC KEY".into(),
            json!(armour("PUBLIC KEY", "-----")),
        ),
        (
            "lower-case label".into(),
            json!(armour("rsa private key", "-----")),
        ),
        (
            "four-dash armour".into(),
            json!(armour("PRIVATE KEY", "----")),
        ),
        (
            "OPENSSH label".into(),
            json!(armour("OPENSSH PRIVATE KEY", "-----")),
        ),
    ]
}

fn evasions() -> Vec<(&'static str, String, Value, String)> {
    let mut out = Vec::new();
    let tokens = [
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
        ("github_token", "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s0Q"),
        ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("google_api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        (
            "slack_token",
            "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        ),
    ];
    for (kind, token) in tokens {
        for (how, v) in token_variants(token) {
            // A Slack token's own dashes are its syntax: dashing it again only makes another token.
            if kind == "slack_token" && how.starts_with("dashed") {
                continue;
            }
            out.push((kind, how, v, token.to_owned()));
        }
    }
    for card in ["4111111111111111", "5555555555554444", "378282246310005"] {
        for (how, v) in card_variants(card) {
            out.push(("credit_card", how, v, card.to_owned()));
        }
    }
    for (name, body) in key_bodies() {
        let first_line = body.lines().next().unwrap().to_owned();
        for (how, v) in key_variants(&body) {
            out.push((
                "private_key",
                format!("{name}, {how}"),
                v,
                first_line.clone(),
            ));
        }
    }
    out
}

/// What a reader could recover from text: percent-decoded once, NFKC, invisible characters dropped, only
/// letters and digits kept.
fn recoverable(s: &str) -> String {
    let b = s.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            decoded.push(
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&decoded)
        .nfkc()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

#[test]
fn detection_rate_on_the_evasion_corpus() {
    let scanner = Scanner::new();
    let corpus = evasions();
    let mut missed = Vec::new();
    let mut leaked = Vec::new();
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (kind, how, value, secret) in &corpus {
        let v = json!({ "v": value });
        let found = scanner.scan(&v);
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        if found.iter().any(|f| f.kind == *kind && f.path == "/v") {
            entry.1 += 1;
        } else {
            missed.push(format!("{kind} {how}: {found:?}"));
        }
        let mut redacted = v.clone();
        assert_eq!(scanner.redact(&mut redacted), found, "{kind} {how}");
        let rescan = scanner.scan(&redacted);
        let kept = recoverable(
            &redacted["v"]
                .as_str()
                .map_or_else(|| redacted["v"].to_string(), str::to_owned),
        );
        let core: String = recoverable(secret).chars().skip(4).take(12).collect();
        if !rescan.is_empty() || kept.contains(&core) {
            leaked.push(format!("{kind} {how}: {redacted} {rescan:?}"));
        }
    }
    let detected: usize = by_kind.values().map(|(_, d)| d).sum();
    println!(
        "evasion corpus: {} variants, {detected} detected ({:.1} %)",
        corpus.len(),
        detected as f64 * 100.0 / corpus.len() as f64
    );
    for (kind, (n, d)) in &by_kind {
        println!("  {kind:<16} {d}/{n}");
    }
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert!(leaked.is_empty(), "survived redaction: {leaked:#?}");
}
