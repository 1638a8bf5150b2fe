//! Detectors over tool arguments -> findings (type, severity, JSON pointer, count); never raw values.
//!
//! The scanner walks the arguments once. Each string (and each object key, since a secret smuggled in as a
//! key is still a secret) goes through cheap byte-level pre-filters first; only candidates that survive them
//! are validated (Luhn, mod-97, SSA ranges, JWT header decoding, entropy). A finding carries the detector's
//! name, a severity, the JSON pointer of the value and how often the detector fired there: never the value,
//! nor a fragment of it. When an object key itself holds a finding, its pointer segment is replaced by
//! [`REDACTED_SEGMENT`] so the pointer cannot carry the secret either.
//!
//! Specific detectors run before `generic_secret` and claim the byte ranges they matched, so one value is
//! reported once, by its most precise name.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much a finding matters to the policy. Ordered, so policies and callers can take a maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The name used in the Rego input, the audit log and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One detector firing at one place in the arguments. Holds no part of the matched value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    /// RFC 6901 JSON pointer into the arguments ("" = the root).
    pub path: String,
    /// Occurrences of this kind at this path.
    pub count: u32,
}

/// Stands in for an object key that itself holds a finding. `~r` is not a valid RFC 6901 escape, so this
/// segment can never be confused with a real key (a real `~` is always written `~0`).
pub const REDACTED_SEGMENT: &str = "~redacted";

/// The detectors, in a fixed order used to index per-value tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    CreditCard,
    UsSsn,
    Iban,
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    Jwt,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    GenericSecret,
}

const KIND_COUNT: usize = 13;

impl Kind {
    const ALL: [Kind; KIND_COUNT] = [
        Kind::Email,
        Kind::CreditCard,
        Kind::UsSsn,
        Kind::Iban,
        Kind::AwsAccessKey,
        Kind::AwsSecretKey,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::GoogleApiKey,
        Kind::GenericSecret,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::CreditCard => "credit_card",
            Kind::UsSsn => "us_ssn",
            Kind::Iban => "iban",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::AwsSecretKey => "aws_secret_key",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::GoogleApiKey => "google_api_key",
            Kind::GenericSecret => "generic_secret",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Kind::Email => Severity::Medium,
            Kind::CreditCard | Kind::UsSsn | Kind::Iban | Kind::Jwt | Kind::GoogleApiKey => {
                Severity::High
            }
            Kind::GenericSecret => Severity::High,
            Kind::AwsAccessKey
            | Kind::AwsSecretKey
            | Kind::PrivateKey
            | Kind::GithubToken
            | Kind::SlackToken
            | Kind::StripeKey => Severity::Critical,
        }
    }
}

/// Counts per detector for the value being scanned; turned into findings once the value is done.
#[derive(Default)]
struct Tally {
    counts: [u32; KIND_COUNT],
    severity: [Option<Severity>; KIND_COUNT],
}

impl Tally {
    fn add(&mut self, kind: Kind, severity: Severity) {
        let i = kind as usize;
        self.counts[i] = self.counts[i].saturating_add(1);
        // Several hits of one kind at one path with different severities (a live and a test Stripe key)
        // are one finding; the worst one speaks for it.
        self.severity[i] = Some(self.severity[i].map_or(severity, |s| s.max(severity)));
    }

    fn hit(&mut self, kind: Kind) {
        self.add(kind, kind.severity());
    }

    fn count(&self, kind: Kind) -> u32 {
        self.counts[kind as usize]
    }

    fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    fn emit(&self, path: &str, out: &mut Vec<Finding>) {
        for kind in Kind::ALL {
            let i = kind as usize;
            if self.counts[i] > 0 {
                out.push(Finding {
                    kind: kind.name().to_owned(),
                    severity: self.severity[i].unwrap_or(kind.severity()),
                    path: path.to_owned(),
                    count: self.counts[i],
                });
            }
        }
    }
}

/// Secrets with a fixed, literal prefix. One regex for all of them lets the regex crate's literal prefilter
/// skip text that contains none of the prefixes; which detector matched is read off the match's first bytes,
/// and exact lengths and boundaries are checked in code (cheaper than encoding them in the automaton).
const PREFIXED_PATTERN: &str = concat!(
    r"(?:AKIA|ASIA)[A-Z0-9]+",
    r"|gh[pousr]_[A-Za-z0-9]+",
    r"|github_pat_[A-Za-z0-9_]+",
    r"|xox[abprs]-[A-Za-z0-9-]+",
    r"|[prs]k_(?:live|test)_[A-Za-z0-9]+",
    r"|AIza[A-Za-z0-9_-]+",
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    r"|-----BEGIN [A-Z0-9 ]{1,60}-----",
);

/// Compiled detectors, built once and shared (Send + Sync); `scan` takes `&self`.
#[derive(Debug, Clone)]
pub struct Scanner {
    prefixed: Regex,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

/// What the string being scanned is: values get the key-name and assignment rules, keys do not (a key has
/// no key of its own, and `key=value` text inside a key name is not an assignment anyone made).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Key,
    Value,
}

/// A JSON value still to visit, with what is needed to rebuild its pointer in the shared path buffer.
struct Frame<'a> {
    value: &'a Value,
    parent_len: usize,
    segment: Segment<'a>,
    /// The nearest enclosing object key; array elements inherit it (`{"tokens": ["..."]}`).
    key: Option<&'a str>,
}

enum Segment<'a> {
    Root,
    Index(usize),
    Key(&'a str),
}

/// Byte ranges of the current string already attributed to a detector (or known not to be secret, such as
/// a certificate body), so the generic detector does not report them again.
type Claims = Vec<(usize, usize)>;

impl Scanner {
    pub fn new() -> Scanner {
        // A constant pattern: failure here is a programming error caught by every test, not an input error.
        let prefixed =
            Regex::new(PREFIXED_PATTERN).expect("the prefixed-secret pattern is a valid regex");
        Scanner { prefixed }
    }

    /// One pass over the arguments: every string value (and object keys where a detector needs them).
    /// Findings sorted by (path, kind).
    pub fn scan(&self, arguments: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut path = String::new();
        let mut claims = Claims::new();
        // An explicit stack rather than recursion: a `Value` built in code has no depth limit.
        let mut stack = vec![Frame {
            value: arguments,
            parent_len: 0,
            segment: Segment::Root,
            key: None,
        }];
        while let Some(frame) = stack.pop() {
            // Everything visited since this frame was pushed lies under its parent, so the buffer still
            // starts with the parent's pointer.
            path.truncate(frame.parent_len);
            let mut tally = Tally::default();
            match frame.segment {
                Segment::Root => {}
                Segment::Index(i) => push_index(&mut path, i),
                Segment::Key(k) => {
                    if k.len() >= 6 {
                        self.scan_text(k, None, Role::Key, &mut tally, &mut claims);
                    }
                    path.push('/');
                    if tally.total() == 0 {
                        push_escaped(&mut path, k);
                    } else {
                        path.push_str(REDACTED_SEGMENT);
                    }
                }
            }
            match frame.value {
                Value::String(s) => {
                    self.scan_text(s, frame.key, Role::Value, &mut tally, &mut claims)
                }
                Value::Number(n) => {
                    // Card numbers sent as JSON numbers are as sensitive as the same digits in a string.
                    if let Some(u) = n.as_u64() {
                        scan_number(u, &mut tally);
                    }
                }
                Value::Array(items) => {
                    let len = path.len();
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push(Frame {
                            value: item,
                            parent_len: len,
                            segment: Segment::Index(i),
                            key: frame.key,
                        });
                    }
                }
                Value::Object(map) => {
                    let len = path.len();
                    for (k, v) in map {
                        stack.push(Frame {
                            value: v,
                            parent_len: len,
                            segment: Segment::Key(k.as_str()),
                            key: Some(k.as_str()),
                        });
                    }
                }
                Value::Null | Value::Bool(_) => {}
            }
            if tally.total() > 0 {
                tally.emit(&path, &mut out);
            }
        }
        out.sort_unstable_by(|a, b| a.path.cmp(&b.path).then_with(|| a.kind.cmp(&b.kind)));
        out
    }

    fn scan_text(
        &self,
        s: &str,
        key: Option<&str>,
        role: Role,
        tally: &mut Tally,
        claims: &mut Claims,
    ) {
        let b = s.as_bytes();
        claims.clear();
        let before = tally.total();

        // The shortest prefixed secret (a minimal JWT) is longer than this.
        if b.len() >= 10 {
            self.scan_prefixed(s, tally, claims);
        }
        let mut generic = 0u32;
        if b.len() >= 5 && b.contains(&b'@') {
            scan_at_signs(b, tally, claims, &mut generic);
        }
        let url_generic = generic;
        let aws = AwsContext {
            key,
            access_key_seen: tally.count(Kind::AwsAccessKey) > 0,
        };
        // A base64-encoded file wrapped in fixed-width lines is data: each of its lines would otherwise pass
        // for a random token, and no card, name or assignment can hide inside base64 text.
        if !is_wrapped_base64(b) {
            scan_runs(b, role, aws, tally, claims, &mut generic);
        }
        let specific = tally.total() - before;

        // A value under a key named like a secret is one secret, whatever its shape: token-level rules
        // would only count it again.
        if role == Role::Value && specific == 0 && url_generic == 0 && b.len() >= 4 {
            if let Some(class) = key.and_then(|k| name_class(k.as_bytes())) {
                if is_nontrivial(b, class) {
                    generic = 1;
                }
            }
        }
        for _ in 0..generic {
            tally.hit(Kind::GenericSecret);
        }
    }

    fn scan_prefixed(&self, s: &str, tally: &mut Tally, claims: &mut Claims) {
        let b = s.as_bytes();
        for m in self.prefixed.find_iter(s) {
            let (start, end) = (m.start(), m.end());
            // Inside a certificate or key block already handled: its base64 may contain `AKIA`, `eyJ`, ...
            if overlaps(claims, start, end) {
                continue;
            }
            let token = &b[start..end];
            let before = if start == 0 { None } else { Some(b[start - 1]) };
            let after = b.get(end).copied();
            let bounded = !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric());
            let found = match token[0] {
                b'A' if token.starts_with(b"AIza") => (bounded
                    && token.len() == 4 + 35
                    && !before.is_some_and(|c| c == b'_' || c == b'-'))
                .then_some((Kind::GoogleApiKey, Kind::GoogleApiKey.severity(), end)),
                b'A' => (bounded && token.len() == 4 + 16).then_some((
                    Kind::AwsAccessKey,
                    Severity::Critical,
                    end,
                )),
                b'g' if token.starts_with(b"github_pat_") => (bounded && token.len() >= 11 + 40)
                    .then_some((Kind::GithubToken, Severity::Critical, end)),
                b'g' => (bounded && token.len() >= 4 + 36).then_some((
                    Kind::GithubToken,
                    Severity::Critical,
                    end,
                )),
                b'x' => {
                    let tail = &token[5..];
                    (bounded
                        && tail.len() >= 10
                        && tail.contains(&b'-')
                        && tail.iter().any(u8::is_ascii_digit))
                    .then_some((Kind::SlackToken, Severity::Critical, end))
                }
                b'p' => {
                    // A Stripe publishable key is public by design; claim it so it is not a random token.
                    claims.push((start, end));
                    None
                }
                b'r' | b's' => {
                    // A test-mode key cannot move money, but it still opens the account's test data.
                    let severity = if &token[3..7] == b"test" {
                        Severity::Medium
                    } else {
                        Severity::Critical
                    };
                    (bounded && token.len() >= 8 + 16).then_some((Kind::StripeKey, severity, end))
                }
                b'e' => jwt_end(b, start, end).map(|e| (Kind::Jwt, Severity::High, e)),
                b'-' => pem_block(b, start, end, claims)
                    .map(|block_end| (Kind::PrivateKey, Severity::Critical, block_end)),
                _ => None,
            };
            if let Some((kind, severity, claim_end)) = found {
                tally.add(kind, severity);
                claims.push((start, claim_end));
            }
        }
    }
}

/// Appends `/` and an array index without going through `fmt`.
fn push_index(path: &mut String, i: usize) {
    let mut digits = [0u8; 20];
    let (mut n, mut v) = (digits.len(), i);
    loop {
        n -= 1;
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    path.push('/');
    for &d in &digits[n..] {
        path.push(char::from(d));
    }
}

/// Appends one RFC 6901 reference token.
fn push_escaped(path: &mut String, key: &str) {
    if !key.contains(['~', '/']) {
        path.push_str(key);
        return;
    }
    for ch in key.chars() {
        match ch {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn overlaps(claims: &Claims, start: usize, end: usize) -> bool {
    claims.iter().any(|&(s, e)| start < e && s < end)
}

fn is_alnum(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignore_case(hay: &[u8], lower_needle: &[u8]) -> bool {
    hay.len() >= lower_needle.len()
        && hay.windows(lower_needle.len()).any(|w| {
            w.iter()
                .zip(lower_needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

// ---------------------------------------------------------------------------------------------------------
// JWT and PEM blocks

#[derive(Deserialize)]
struct JwtHeader {
    // Only its presence, as a string, is checked.
    #[serde(rename = "alg")]
    _alg: String,
}

/// The end of a JWT (or 5-segment JWE) starting at `start`, if its header decodes to a JSON object with `alg`.
fn jwt_end(b: &[u8], start: usize, mut end: usize) -> Option<usize> {
    let b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    if start > 0 && (b64url(b[start - 1]) || b[start - 1] == b'.') {
        return None;
    }
    while end + 1 < b.len() && b[end] == b'.' && b64url(b[end + 1]) {
        end += 1;
        while end < b.len() && b64url(b[end]) {
            end += 1;
        }
    }
    let header_end = start + b[start..end].iter().position(|&c| c == b'.')?;
    let header = base64url_decode(&b[start..header_end])?;
    serde_json::from_slice::<JwtHeader>(&header).ok()?;
    Some(end)
}

fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Handles a `-----BEGIN X-----` header at `start..header_end`. A private key with a body is reported (the
/// returned end covers the block); any other block (certificate, public key) is claimed as not secret, since
/// its base64 body would otherwise look like random tokens.
fn pem_block(b: &[u8], start: usize, header_end: usize, claims: &mut Claims) -> Option<usize> {
    let label = &b[start + 11..header_end - 5];
    let private = label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK");
    let footer = b[header_end..]
        .windows(8)
        .position(|w| w == b"-----END")
        .map(|p| header_end + p);
    let body_end = footer.unwrap_or_else(|| {
        // A truncated key still leaks: its body runs as long as it looks like base64 or line breaks.
        header_end
            + b[header_end..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || b"+/=:,- \t\r\n\\".contains(&c)))
                .unwrap_or(b.len() - header_end)
    });
    let block_end = match footer {
        Some(f) => {
            let after = f + 8;
            b[after..]
                .windows(5)
                .position(|w| w == b"-----")
                .map_or(b.len(), |p| after + p + 5)
        }
        None => body_end,
    };
    if !private {
        claims.push((start, block_end));
        return None;
    }
    // A header alone (in documentation, say) is no key; a real one has at least a few lines of base64.
    let body = b[header_end..body_end]
        .iter()
        .filter(|c| c.is_ascii_alphanumeric() || **c == b'+' || **c == b'/')
        .count();
    (body >= 40).then_some(block_end)
}

// ---------------------------------------------------------------------------------------------------------
// Digits: payment cards, US social security numbers, IBANs

/// Cards, SSNs and IBANs whose first digit lies in `from..to` (one token run). Returns how far the text is
/// accounted for: a grouped card or IBAN reaches past the run into the next ones.
fn scan_digits(b: &[u8], from: usize, to: usize, tally: &mut Tally, claims: &mut Claims) -> usize {
    let mut i = from;
    let mut reach = to;
    while i < to {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let found = if i >= 2 && b[i - 2].is_ascii_uppercase() && b[i - 1].is_ascii_uppercase() {
            iban_at(b, i - 2).map(|end| (Kind::Iban, i - 2, end))
        } else {
            None
        };
        let found = found
            .or_else(|| ssn_at(b, i).map(|end| (Kind::UsSsn, i, end)))
            .or_else(|| card_at(b, i).map(|end| (Kind::CreditCard, i, end)));
        if let Some((kind, start, end)) = found {
            if !overlaps(claims, start, end) {
                tally.hit(kind);
                claims.push((start, end));
            }
            i = end;
            reach = reach.max(end);
            continue;
        }
        while i < to && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    reach
}

/// Whether `start..end` holds a card, SSN or IBAN: a `name: value` assignment is seen before its value's
/// digits are, and must leave them to their own, more precise detectors.
fn has_personal_number(b: &[u8], start: usize, end: usize) -> bool {
    (start..end).any(|i| {
        b[i].is_ascii_digit()
            && (i == start || !b[i - 1].is_ascii_digit())
            && (ssn_at(b, i).is_some()
                || card_at(b, i).is_some()
                || (i >= 2 && iban_at(b, i - 2).is_some()))
    })
}

/// Whether a number may start at `i`: not glued to a word, a decimal point or a longer dashed number.
fn number_starts_at(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let prev = b[i - 1];
    if prev.is_ascii_alphanumeric() || prev == b'_' {
        return false;
    }
    !(matches!(prev, b'.' | b'-' | b',') && i >= 2 && b[i - 2].is_ascii_digit())
}

/// Whether a number may end just before `i`.
fn number_ends_at(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => true,
        Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => false,
        Some(b'.' | b'-' | b',') => !b.get(i + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

fn digit_run(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|c| c.is_ascii_digit()).count()
}

fn ssn_at(b: &[u8], i: usize) -> Option<usize> {
    let s = b.get(i..i + 11)?;
    let shape = s.iter().enumerate().all(|(k, &c)| {
        if k == 3 || k == 6 {
            c == b'-'
        } else {
            c.is_ascii_digit()
        }
    });
    if !shape || !number_starts_at(b, i) || !number_ends_at(b, i + 11) {
        return None;
    }
    let area = &s[0..3];
    // SSA never issues area 000, 666 or 900-999, group 00 or serial 0000.
    if area == b"000"
        || area == b"666"
        || area[0] == b'9'
        || &s[4..6] == b"00"
        || &s[7..11] == b"0000"
    {
        return None;
    }
    Some(i + 11)
}

/// A payment card number starting at `i`: 13-19 digits, contiguous or in groups separated by single spaces
/// or dashes (first group of 4, the others 3-6 digits), Luhn-valid, with a known issuer prefix and length.
fn card_at(b: &[u8], i: usize) -> Option<usize> {
    if !number_starts_at(b, i) {
        return None;
    }
    let first = digit_run(b, i);
    let mut digits = [0u8; 19];
    let grouped = first == 4
        && matches!(b.get(i + 4), Some(b' ' | b'-'))
        && b.get(i + 5).is_some_and(u8::is_ascii_digit);
    if !grouped {
        if !(13..=19).contains(&first) || !number_ends_at(b, i + first) {
            return None;
        }
        digits[..first].copy_from_slice(&b[i..i + first]);
        return is_card(&digits[..first]).then_some(i + first);
    }
    let sep = b[i + 4];
    digits[..4].copy_from_slice(&b[i..i + 4]);
    let (mut n, mut pos, mut best) = (4, i + 4, None);
    while b.get(pos) == Some(&sep) && b.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        let len = digit_run(b, pos + 1);
        if !(3..=6).contains(&len) || n + len > 19 {
            break;
        }
        digits[n..n + len].copy_from_slice(&b[pos + 1..pos + 1 + len]);
        n += len;
        pos += 1 + len;
        if n >= 13 && number_ends_at(b, pos) && is_card(&digits[..n]) {
            best = Some(pos);
        }
    }
    best
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &c)| {
            let d = u32::from(c - b'0');
            if k % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Known issuer identification number ranges and the lengths their cards have.
fn known_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| {
        d[..k]
            .iter()
            .fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    match p1 {
        4 => matches!(n, 13 | 16 | 19),          // Visa
        5 if (51..=55).contains(&p2) => n == 16, // Mastercard
        5 if matches!(p4, 5018 | 5020 | 5038 | 5893) => (13..=19).contains(&n), // Maestro
        2 if (2221..=2720).contains(&p4) => n == 16, // Mastercard 2-series
        2 if (2200..=2204).contains(&p4) => (16..=19).contains(&n), // Mir
        3 if matches!(p2, 34 | 37) => n == 15,   // American Express
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&n), // JCB
        3 if (300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39) => {
            (14..=19).contains(&n)
        } // Diners
        6 if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 => (16..=19).contains(&n), // Discover
        6 if p2 == 62 || (622_126..=622_925).contains(&p6) => (16..=19).contains(&n), // UnionPay
        6 if matches!(p4, 6304 | 6759 | 6761 | 6762 | 6763) => (13..=19).contains(&n), // Maestro
        _ => false,
    }
}

fn is_card(digits: &[u8]) -> bool {
    known_issuer(digits) && luhn_valid(digits)
}

fn scan_number(u: u64, tally: &mut Tally) {
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut v = u;
    loop {
        buf[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf[..n].reverse();
    if (13..=19).contains(&n) && is_card(&buf[..n]) {
        tally.hit(Kind::CreditCard);
    }
}

/// ISO 13616 IBAN lengths by country code (SWIFT IBAN registry).
fn iban_length(cc: &[u8]) -> Option<usize> {
    let len = match cc {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HN" | b"HU" | b"LB" | b"NI" | b"PL"
        | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    };
    Some(len)
}

/// An IBAN at `s`, electronic (`DE89370400440532013000`) or printed in groups of four
/// (`DE89 3704 0044 0532 0130 00`), with its country's length and a valid mod-97 checksum.
fn iban_at(b: &[u8], s: usize) -> Option<usize> {
    if s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
        return None;
    }
    let want = iban_length(b.get(s..s + 2)?)?;
    if !b.get(s + 2..s + 4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut chars = [0u8; 34];
    let (mut n, mut pos) = (0, s);
    while n < want {
        match b.get(pos) {
            Some(&c) if c.is_ascii_digit() || c.is_ascii_uppercase() => {
                chars[n] = c;
                n += 1;
                pos += 1;
            }
            Some(b' ')
                if n % 4 == 0
                    && n > 0
                    && b.get(pos + 1).is_some_and(|c| c.is_ascii_alphanumeric()) =>
            {
                pos += 1
            }
            _ => return None,
        }
    }
    if is_alnum(b.get(pos).copied()) {
        return None;
    }
    // Move the country code and check digits to the end, read letters as 10..35, and the result mod 97 is 1.
    let mut rem = 0u32;
    for &c in chars[4..n].iter().chain(&chars[..4]) {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (rem == 1).then_some(pos)
}

// ---------------------------------------------------------------------------------------------------------
// '@': e-mail addresses and credentials in URLs

fn is_local_part_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Top-level "domains" that are really file extensions (`icon@2x.png`, `pkg@1.0.tgz`-like asset names).
const FILE_EXTENSIONS: [&[u8]; 16] = [
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"js", b"mjs", b"ts", b"css",
    b"json", b"html", b"txt", b"pdf",
];

fn scan_at_signs(b: &[u8], tally: &mut Tally, claims: &mut Claims, generic: &mut u32) {
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b'@') {
        let at = from + off;
        from = at + 1;
        if let Some((start, end)) = url_password(b, at) {
            if !overlaps(claims, start, end) {
                *generic += 1;
                claims.push((start, end));
            }
            continue;
        }
        if let Some((start, end)) = email_at(b, at) {
            if !overlaps(claims, start, end) {
                tally.hit(Kind::Email);
                claims.push((start, end));
            }
        }
    }
}

/// `scheme://user:password@host`: the range of the password, when there is a real one.
fn url_password(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    while i > 0
        && !matches!(
            b[i - 1],
            b'/' | b'@' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`'
        )
        && !b[i - 1].is_ascii_whitespace()
    {
        i -= 1;
    }
    if i < 3 || &b[i - 3..i] != b"://" {
        return None;
    }
    let colon = i + b[i..at].iter().position(|&c| c == b':')?;
    let password = &b[colon + 1..at];
    is_nontrivial(password, NameClass::UrlPassword).then_some((colon + 1, at))
}

fn email_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_local_part_byte(b[start - 1]) {
        start -= 1;
    }
    let local = &b[start..at];
    if local.is_empty()
        || local.len() > 64
        || local[0] == b'.'
        || local[local.len() - 1] == b'.'
        || contains(local, b"..")
    {
        return None;
    }
    // `user@host` after `://` or `:` is URL userinfo or an scp-style remote (`git@github.com:org/repo`).
    if (start > 0 && matches!(b[start - 1], b'/' | b':')) || local == b"git" {
        return None;
    }
    // Domain: labels of [A-Za-z0-9-] joined by single dots, ending in an alphabetic TLD of 2+ letters.
    let mut end = at + 1;
    let mut last_label;
    let mut labels = 0;
    loop {
        let label_start = end;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'-') {
            end += 1;
        }
        if end == label_start || b[label_start] == b'-' || b[end - 1] == b'-' {
            return None;
        }
        labels += 1;
        last_label = (label_start, end);
        if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_alphanumeric() {
            end += 1;
        } else {
            break;
        }
    }
    let tld = &b[last_label.0..last_label.1];
    if labels < 2 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext))
        || b.get(end) == Some(&b'_')
    {
        return None;
    }
    Some((start, end))
}

// ---------------------------------------------------------------------------------------------------------
// AWS secret access keys (need context: 40 base64 characters alone are just as likely a hash)

/// Whether the string being scanned is about AWS credentials: its key is named like an AWS secret, or it
/// holds an access key id. Decided lazily, since only a 40-character base64 candidate needs to know.
#[derive(Clone, Copy)]
struct AwsContext<'a> {
    key: Option<&'a str>,
    access_key_seen: bool,
}

impl AwsContext<'_> {
    fn applies(&self) -> bool {
        self.access_key_seen || self.key.is_some_and(|k| is_aws_secret_name(k.as_bytes()))
    }
}

fn is_aws_secret_name(name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let norm = normalize_name(name, &mut buf);
    contains(norm, b"secretaccesskey") || (contains(norm, b"aws") && contains(norm, b"secret"))
}

fn is_aws_secret_shape(t: &[u8]) -> bool {
    // Mixed case rules out hex digests (SHA-1 is 40 hex characters).
    t.len() == 40
        && t.iter().all(|&c| CLASS[usize::from(c)] & BASE64 != 0)
        && t.iter().any(u8::is_ascii_uppercase)
        && t.iter().any(u8::is_ascii_lowercase)
}

/// 40-character base64 pieces of the run `start..end` that sit in an AWS context.
fn aws_in_run(
    b: &[u8],
    start: usize,
    end: usize,
    aws: AwsContext<'_>,
    tally: &mut Tally,
    claims: &mut Claims,
) {
    let mut i = start;
    while i < end {
        if CLASS[usize::from(b[i])] & BASE64 == 0 {
            i += 1;
            continue;
        }
        let s = i;
        while i < end && CLASS[usize::from(b[i])] & BASE64 != 0 {
            i += 1;
        }
        if i - s == 40
            && is_aws_secret_shape(&b[s..i])
            && !overlaps(claims, s, i)
            && (aws.applies() || aws_context_before(b, s))
        {
            tally.hit(Kind::AwsSecretKey);
            claims.push((s, i));
        }
    }
}

/// Whether the text just before `start` names an AWS secret (`aws_secret_access_key = `, `SecretAccessKey:`).
fn aws_context_before(b: &[u8], start: usize) -> bool {
    let window = &b[start.saturating_sub(96)..start];
    let mut buf = [0u8; 96];
    let norm = normalize_name(window, &mut buf);
    contains(norm, b"secretaccesskey") || contains(norm, b"awssecret")
}

// ---------------------------------------------------------------------------------------------------------
// generic_secret: values under secret-like names, `name=value` assignments, random-looking tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameClass {
    /// password, passwd, passphrase: may be short and may contain spaces.
    Password,
    /// token, secret, api key, private key: a single word of some length.
    Token,
    /// authorization: `Scheme credentials`.
    Authorization,
    /// the password part of URL userinfo.
    UrlPassword,
}

/// Lower-cases and keeps only letters and digits, from the end (names are matched by suffix), so
/// `DB_PASSWORD`, `db-password` and `dbPassword` compare alike.
fn normalize_name<'a>(name: &[u8], buf: &'a mut [u8]) -> &'a [u8] {
    let mut n = 0;
    for &c in name.iter().rev() {
        if n == buf.len() {
            break;
        }
        if c.is_ascii_alphanumeric() {
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
    }
    buf[..n].reverse();
    &buf[..n]
}

/// Names that end like a secret's but hold something else: pagination cursors, MCP progress tokens,
/// idempotency keys.
const NOT_SECRET_TOKENS: [&[u8]; 9] = [
    b"pagetoken",
    b"nexttoken",
    b"continuationtoken",
    b"synctoken",
    b"cursortoken",
    b"resumetoken",
    b"progresstoken",
    b"idempotencytoken",
    b"clienttoken",
];

fn name_class(name: &[u8]) -> Option<NameClass> {
    let mut buf = [0u8; 64];
    let norm = normalize_name(name, &mut buf);
    if norm.ends_with(b"authorization") {
        return Some(NameClass::Authorization);
    }
    if [&b"password"[..], b"passwd", b"passphrase"]
        .iter()
        .any(|s| norm.ends_with(s))
    {
        return Some(NameClass::Password);
    }
    if NOT_SECRET_TOKENS.iter().any(|s| norm.ends_with(s)) {
        return None;
    }
    let token_like = [
        &b"token"[..],
        b"secret",
        b"secretkey",
        b"secretaccesskey",
        b"apikey",
        b"privatekey",
    ];
    token_like
        .iter()
        .any(|s| norm.ends_with(s))
        .then_some(NameClass::Token)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Placeholders and references that stand for a secret without being one.
fn is_placeholder(v: &[u8]) -> bool {
    let starts = |p: &[u8]| v.starts_with(p);
    if starts(b"${")
        || starts(b"{{")
        || starts(b"%(")
        || (starts(b"<") && v.ends_with(b">"))
        || (starts(b"%") && v.ends_with(b"%"))
    {
        return true;
    }
    if v[0] == b'$'
        && v[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return true;
    }
    if v.iter()
        .all(|c| matches!(c, b'*' | b'x' | b'X' | b'.' | b'#' | b'-' | b'_'))
    {
        return true;
    }
    const WORDS: [&[u8]; 14] = [
        b"null",
        b"none",
        b"nil",
        b"true",
        b"false",
        b"undefined",
        b"hidden",
        b"masked",
        b"secret",
        b"password",
        b"token",
        b"string",
        b"empty",
        b"required",
    ];
    if WORDS.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        return true;
    }
    ["redacted", "placeholder", "changeme", "example"]
        .iter()
        .any(|w| contains_ignore_case(v, w.as_bytes()))
        || v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"your")
}

/// Whether a value found by name is worth reporting: not empty, not a placeholder, shaped like its class.
fn is_nontrivial(v: &[u8], class: NameClass) -> bool {
    let v = trim(v);
    let min = match class {
        NameClass::Password => 4,
        NameClass::UrlPassword => 3,
        NameClass::Token | NameClass::Authorization => 8,
    };
    if v.len() < min || v.len() > 4096 || v.iter().all(|&c| c == v[0]) || is_placeholder(v) {
        return false;
    }
    match class {
        NameClass::Password => true,
        NameClass::UrlPassword => !v.iter().any(u8::is_ascii_whitespace),
        NameClass::Token => {
            // A path or URL under `secret` is a reference to where the secret lives, not the secret.
            !(v.iter().any(u8::is_ascii_whitespace)
                || v.starts_with(b"/")
                || v.starts_with(b"./")
                || v.starts_with(b"~/")
                || contains(v, b"://"))
        }
        NameClass::Authorization => {
            // `Bearer <credentials>` / `Basic <credentials>`, or a bare credential.
            let cred = v.rsplit(u8::is_ascii_whitespace).next().unwrap_or(v);
            cred.len() >= 8 && !is_placeholder(cred)
        }
    }
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// `name=value` and `name: value` inside text (env files, command lines, query strings, YAML, JSON held in a
/// string) where the name looks like a secret's. Code (`token = get_token()`), prose (`password: required`)
/// and placeholders are left alone.
fn assignment_at(
    b: &[u8],
    k: usize,
    aws: AwsContext<'_>,
    tally: &mut Tally,
    claims: &mut Claims,
    generic: &mut u32,
) {
    if k == 0 {
        return;
    }
    let op = b[k];
    let next = b.get(k + 1).copied();
    if op == b'='
        && (matches!(next, Some(b'=' | b'>'))
            || matches!(
                b[k - 1],
                b'=' | b'!'
                    | b'<'
                    | b'>'
                    | b'+'
                    | b'-'
                    | b'*'
                    | b'/'
                    | b'|'
                    | b'&'
                    | b'%'
                    | b'^'
                    | b':'
            ))
    {
        return;
    }
    if op == b':' && (next == Some(b':') || b[k - 1] == b':') {
        return;
    }
    let mut j = k;
    while j > 0 && b[j - 1] == b' ' {
        j -= 1;
    }
    let spaced_before = j < k;
    if j > 0 && matches!(b[j - 1], b'"' | b'\'') {
        j -= 1;
    }
    let name_end = j;
    while j > 0 && is_name_byte(b[j - 1]) {
        j -= 1;
    }
    if j == name_end {
        return;
    }
    let Some(class) = name_class(&b[j..name_end]) else {
        return;
    };
    let mut v = k + 1;
    while v < b.len() && b[v] == b' ' {
        v += 1;
    }
    let spaced_after = v > k + 1;
    let (start, end, quoted) = match b.get(v) {
        Some(&q) if q == b'"' || q == b'\'' => {
            let s = v + 1;
            let e = s + b[s..]
                .iter()
                .position(|&c| c == q || c == b'\n')
                .unwrap_or(b.len() - s);
            (s, e, true)
        }
        _ if class == NameClass::Authorization => (
            v,
            v + b[v..]
                .iter()
                .position(|&c| matches!(c, b'\n' | b'\r' | b'"' | b'\'' | b',' | b';'))
                .unwrap_or(b.len() - v),
            false,
        ),
        _ => {
            let e = v + b[v..]
                .iter()
                .position(|&c| c.is_ascii_whitespace() || b",;&\"'<>()[]{}".contains(&c))
                .unwrap_or(b.len() - v);
            (v, e, false)
        }
    };
    let value = &b[start..end];
    if value.is_empty() {
        return;
    }
    if !quoted && class != NameClass::Authorization {
        // `x = expr` is code; env files, flags and query strings write `x=value`.
        if op == b'=' && (spaced_before || spaced_after) {
            return;
        }
        // `api_key=api_key)`, `password=self.password`: an expression, not a literal.
        let identifier = (value[0].is_ascii_alphabetic() || value[0] == b'_')
            && value
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
        if identifier
            && (value.contains(&b'.') || matches!(b.get(end), Some(b'(' | b')' | b'[' | b',')))
        {
            return;
        }
        // `password: required` is prose or a schema; a secret has something besides letters.
        if op == b':' && value.iter().all(u8::is_ascii_alphabetic) {
            return;
        }
    }
    if overlaps(claims, start, end) {
        return;
    }
    // `AWS_SECRET_ACCESS_KEY=...` is an AWS key before it is a generic secret.
    if is_aws_secret_shape(value) && (aws.applies() || is_aws_secret_name(&b[j..name_end])) {
        tally.hit(Kind::AwsSecretKey);
        claims.push((start, end));
    } else if is_nontrivial(value, class) && !has_personal_number(b, start, end) {
        *generic += 1;
        claims.push((start, end));
    }
}

const TOKEN: u8 = 1;
const BASE64: u8 = 2;
const DIGIT: u8 = 4;
const EQUALS: u8 = 8;

/// Byte classes for the tokenizer: token bytes are base64 and base64url characters plus `=`.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() {
            TOKEN | BASE64 | DIGIT
        } else if c.is_ascii_alphabetic() || c == b'+' || c == b'/' {
            TOKEN | BASE64
        } else if c == b'=' {
            TOKEN | EQUALS
        } else if c == b'_' || c == b'-' {
            TOKEN
        } else {
            0
        };
        i += 1;
    }
    t
};

/// The one pass over a string's bytes after the prefixed and `@` detectors: it cuts the text into runs of
/// token bytes and hands each run only to the detectors that can match it (digits -> cards, SSNs, IBANs;
/// `=` or a `:` before it -> assignments; 20+ bytes -> AWS secrets and random tokens). Prose is mostly runs
/// of a few letters, which cost one table lookup per byte.
fn scan_runs(
    b: &[u8],
    role: Role,
    aws: AwsContext<'_>,
    tally: &mut Tally,
    claims: &mut Claims,
    generic: &mut u32,
) {
    let n = b.len();
    let assignments = role == Role::Value && n >= 6;
    let mut i = 0;
    while i < n {
        if CLASS[usize::from(b[i])] & TOKEN == 0 {
            if b[i] == b':' && assignments {
                assignment_at(b, i, aws, tally, claims, generic);
            }
            i += 1;
            continue;
        }
        let start = i;
        let mut seen = 0u8;
        while i < n {
            let f = CLASS[usize::from(b[i])];
            if f & TOKEN == 0 {
                break;
            }
            seen |= f;
            i += 1;
        }
        let end = i;
        if seen & DIGIT != 0 && n >= 9 {
            i = scan_digits(b, start, end, tally, claims);
        }
        if seen & EQUALS != 0 && assignments {
            for k in start..end {
                if b[k] == b'=' {
                    assignment_at(b, k, aws, tally, claims, generic);
                }
            }
        }
        if end - start >= 20 {
            if end - start >= 40 {
                aws_in_run(b, start, end, aws, tally, claims);
            }
            random_in_run(b, start, end, claims, generic);
        }
    }
}

/// Whether the text is base64 wrapped at a fixed width of 60-120 columns (MIME, PEM-like bodies): at least
/// four lines, all but the last exactly that wide, nothing but base64 characters.
fn is_wrapped_base64(b: &[u8]) -> bool {
    if b.len() < 256 {
        return false;
    }
    let mut lines = b
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(first) = lines.next() else {
        return false;
    };
    let width = first.len();
    let is_b64 = |l: &[u8]| {
        l.iter()
            .all(|&c| CLASS[usize::from(c)] & BASE64 != 0 || c == b'=')
    };
    if !(60..=120).contains(&width) || !is_b64(first) {
        return false;
    }
    let mut count = 1;
    let mut last_short = false;
    for line in lines {
        if last_short || line.len() > width || !is_b64(line) {
            return false;
        }
        last_short = line.len() < width;
        count += 1;
    }
    count >= 4
}

/// High-entropy tokens in the run `start..end`, split at `/` and `=` (so paths and query strings fall
/// apart into their words), judged by [`looks_random`].
fn random_in_run(b: &[u8], start: usize, end: usize, claims: &mut Claims, generic: &mut u32) {
    let run = &b[start..end];
    if run.len() > 512 {
        // A data blob (an encoded file), not a credential.
        return;
    }
    // Public material and digests that look random but are not secret: Subresource Integrity hashes,
    // data: URIs, SSH public key blobs.
    let sri = [&b"sha1-"[..], b"sha256-", b"sha384-", b"sha512-"]
        .iter()
        .any(|p| run.starts_with(p));
    let data_uri = start >= 7 && &b[start - 7..start] == b"base64,";
    let ssh_public = run.starts_with(b"AAAA")
        && start >= 1
        && b[start - 1] == b' '
        && contains(&b[start.saturating_sub(24)..start], b"ssh-")
        || run.starts_with(b"AAAAE2VjZHNh");
    if sri || data_uri || ssh_public {
        return;
    }
    let mut s = start;
    for piece in run.split(|&c| c == b'/' || c == b'=') {
        let e = s + piece.len();
        if piece.len() >= 20 && !overlaps(claims, s, e) && looks_random(piece) {
            *generic += 1;
            claims.push((s, e));
        }
        s = e + 1;
    }
}

fn char_class(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => 1,
        b'a'..=b'z' => 2,
        b'0'..=b'9' => 3,
        _ => 0,
    }
}

/// Whether a token (20-256 bytes of [A-Za-z0-9+_-]) looks like a machine-made secret rather than a word,
/// identifier or digest. All must hold:
/// - not hex (with dashes): UUIDs and digests are identifiers, not credentials;
/// - letters and digits;
/// - Shannon entropy of at least 0.8 * log2(min(len, 64)) bits per character;
/// - character classes (upper, lower, digit) change at >= 35% of adjacent pairs: `ProjectAlpha2024` changes
///   at word boundaries only, random base62 at about 60% of pairs;
/// - under 55% of the token covered by word-like runs (`Handler`, `abc`, `HTTP`).
///
/// Calibrated on random strings (~90% of 20-character and ~99% of 64-character base62 tokens pass) and on
/// identifiers from a large body of Rust sources.
fn looks_random(t: &[u8]) -> bool {
    let n = t.len();
    if !(20..=256).contains(&n) {
        return false;
    }
    if t.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-') {
        return false;
    }
    if !t.iter().any(u8::is_ascii_digit) || !t.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let (mut pairs, mut changes) = (0usize, 0usize);
    for w in t.windows(2) {
        let (a, b) = (char_class(w[0]), char_class(w[1]));
        if a != 0 && b != 0 {
            pairs += 1;
            changes += usize::from(a != b);
        }
    }
    if pairs == 0 || changes * 100 < pairs * 35 {
        return false;
    }
    if word_coverage(t) * 100 >= n * 55 {
        return false;
    }
    let mut counts = [0u16; 128];
    for &c in t {
        counts[usize::from(c & 0x7f)] += 1;
    }
    let nf = n as f64;
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * f64::from(c).log2())
        .sum();
    let entropy = nf.log2() - sum / nf;
    entropy >= 0.8 * (n.min(64) as f64).log2()
}

/// Bytes covered by word-like runs: 3+ lower-case letters (with a leading capital), or 3+ capitals.
fn word_coverage(t: &[u8]) -> usize {
    let (mut cov, mut i) = (0, 0);
    while i < t.len() {
        if t[i].is_ascii_uppercase() {
            let s = i;
            while i < t.len() && t[i].is_ascii_uppercase() {
                i += 1;
            }
            let ups = i - s;
            let l = i;
            while i < t.len() && t[i].is_ascii_lowercase() {
                i += 1;
            }
            let lows = i - l;
            if lows >= 3 {
                cov += lows + 1 + if ups > 3 { ups - 1 } else { 0 };
            } else if lows == 0 && ups >= 3 {
                cov += ups;
            } else if ups > 3 {
                cov += ups - 1;
            }
        } else if t[i].is_ascii_lowercase() {
            let s = i;
            while i < t.len() && t[i].is_ascii_lowercase() {
                i += 1;
            }
            if i - s >= 3 {
                cov += i - s;
            }
        } else {
            i += 1;
        }
    }
    cov
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const GITHUB: &str = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s0Q";
    const SLACK: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
    const STRIPE_LIVE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    const STRIPE_TEST: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
    const GOOGLE: &str = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q";
    const RANDOM: &str = "q8Xv2LmN7pRt4ZkW9yHc3JdF6sGb";

    fn private_key_block() -> String {
        [
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z5WnyP0k4vU8qLd2XeR7sYtB",
            "c9fKp2Lm4Nq8Rs1Tu3Vw5Xy7Za0Bc2De4Fg6Hi8Jk0Lm2No4Pq6Rs8Tu0Vw2Xy4Z",
            "-----END RSA PRIVATE KEY-----",
        ]
        .join("\n")
    }

    fn scan(v: Value) -> Vec<Finding> {
        Scanner::new().scan(&v)
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
        let f = scan(
            json!({"body": "write to alice.smith+tag@example.co.uk or (bob@mail.example.com)."}),
        );
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
        for s in [
            "AKIAIOSFODNN7EXAMPLEX",
            "xAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPL",
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
        let cert = pem.replace("RSA PRIVATE KEY", "CERTIFICATE");
        assert!(kinds_of(&cert).is_empty(), "{:?}", kinds_of(&cert));
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
}
