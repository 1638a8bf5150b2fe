//! generic_secret: values under secret-like names, `name=value` assignments in text, and random-looking
//! tokens judged by entropy and shape.

use super::financial::has_personal_number;
use super::kinds::{Kind, Tally};
use super::redact::is_marker_name;
use super::secrets::{is_aws_secret_name, is_aws_secret_shape, AwsContext};
use super::text::{contains, contains_ignore_case, overlaps, Claims};

// ---------------------------------------------------------------------------------------------------------
// generic_secret: values under secret-like names, `name=value` assignments, random-looking tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameClass {
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
pub(super) fn normalize_name<'a>(name: &[u8], buf: &'a mut [u8]) -> &'a [u8] {
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
pub(super) const NOT_SECRET_TOKENS: [&[u8]; 9] = [
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

/// Whether the name's last three letters or digits could end a name [`name_class`] knows (`...ion`,
/// `...ord`, `...swd`, `...ase`, `...ken`, `...ret`, `...key`): most keys and most words before a `:`
/// are turned away here, without normalising the name.
fn has_secret_name_ending(name: &[u8]) -> bool {
    let mut tail = [0u8; 3];
    let mut n = 0;
    for &c in name.iter().rev() {
        if c.is_ascii_alphanumeric() {
            n += 1;
            tail[3 - n] = c.to_ascii_lowercase();
            if n == 3 {
                break;
            }
        }
    }
    n == 3
        && matches!(
            &tail,
            b"ion" | b"ord" | b"swd" | b"ase" | b"ken" | b"ret" | b"key"
        )
}

pub(super) fn name_class(name: &[u8]) -> Option<NameClass> {
    if is_marker_name(name) || !has_secret_name_ending(name) {
        return None;
    }
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

pub(super) fn trim(v: &[u8]) -> &[u8] {
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
pub(super) fn is_placeholder(v: &[u8]) -> bool {
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
pub(super) fn is_nontrivial(v: &[u8], class: NameClass) -> bool {
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

pub(super) fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// `name=value` and `name: value` inside text (env files, command lines, query strings, YAML, JSON held in a
/// string) where the name looks like a secret's. Code (`token = get_token()`), prose (`password: required`)
/// and placeholders are left alone.
pub(super) fn assignment_at(
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
        claims.found(start, end, Kind::AwsSecretKey);
    } else if is_nontrivial(value, class) && !has_personal_number(b, start, end) {
        *generic += 1;
        claims.found(start, end, Kind::GenericSecret);
    }
}

/// High-entropy tokens in the run `start..end`, split at `/` and `=` (so paths and query strings fall
/// apart into their words), judged by [`looks_random`].
pub(super) fn random_in_run(
    b: &[u8],
    start: usize,
    end: usize,
    claims: &mut Claims,
    generic: &mut u32,
) {
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
            claims.found(s, e, Kind::GenericSecret);
        }
        s = e + 1;
    }
}

fn is_hex(t: &[u8]) -> bool {
    t.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-')
}

/// Words of letters, each followed by `-` or `_`, then at least 16 hex digits (with dashes): an id such as
/// `upstream-session-7c0bbce1c9d5464a82fc5392dbdd08b6` or `req_3f2a…`, random only in its hex part.
fn is_named_hex(t: &[u8]) -> bool {
    let mut rest = t;
    let mut words = 0;
    while let Some(sep) = rest.iter().position(|c| *c == b'-' || *c == b'_') {
        let word = &rest[..sep];
        if word.is_empty() || !word.iter().all(u8::is_ascii_alphabetic) || is_hex(word) {
            break;
        }
        words += 1;
        rest = &rest[sep + 1..];
    }
    words > 0 && rest.len() >= 16 && is_hex(rest)
}

pub(super) fn char_class(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => 1,
        b'a'..=b'z' => 2,
        b'0'..=b'9' => 3,
        _ => 0,
    }
}

/// Whether a token (20-256 bytes of [A-Za-z0-9+_-]) looks like a machine-made secret rather than a word,
/// identifier or digest. All must hold:
/// - not hex (with dashes), alone or after words (`session-7c0b…`, `req_3f2a…`): UUIDs, digests and the ids made
///   of them are identifiers, not credentials;
/// - letters and digits;
/// - Shannon entropy of at least 0.8 * log2(min(len, 64)) bits per character;
/// - character classes (upper, lower, digit) change at >= 35% of adjacent pairs: `ProjectAlpha2024` changes
///   at word boundaries only, random base62 at about 60% of pairs;
/// - under 55% of the token covered by word-like runs (`Handler`, `abc`, `HTTP`).
///
/// Calibrated on random strings (~90% of 20-character and ~99% of 64-character base62 tokens pass) and on
/// identifiers from a large body of Rust sources.
pub(super) fn looks_random(t: &[u8]) -> bool {
    let n = t.len();
    if !(20..=256).contains(&n) {
        return false;
    }
    if is_hex(t) || is_named_hex(t) {
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
pub(super) fn word_coverage(t: &[u8]) -> usize {
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
