//! Secrets recognised by their shape: literal-prefixed tokens (AWS key ids, GitHub, Slack, Stripe, Google),
//! JWTs, PEM private key blocks, and AWS secret access keys (which need context to tell from a digest).

use serde::Deserialize;

use super::generic::normalize_name;
use super::keys::pem_block;
use super::kinds::{Kind, Tally};
use super::redact::is_marker_name;
use super::text::contains;
use super::text::{overlaps, overlaps_found, Claims, BASE64, CLASS};
use super::{Scanner, Severity};

/// Secrets with a fixed, literal prefix. One regex for all of them lets the regex crate's literal prefilter
/// skip text that contains none of the prefixes; which detector matched is read off the match's first bytes,
/// and exact lengths and boundaries are checked in code (cheaper than encoding them in the automaton).
pub(super) const PREFIXED_PATTERN: &str = concat!(
    r"(?:AKIA|ASIA)[A-Z0-9]+",
    r"|gh[pousr]_[A-Za-z0-9]+",
    r"|github_pat_[A-Za-z0-9_]+",
    r"|xox[abprs]-[A-Za-z0-9-]+",
    r"|[prs]k_(?:live|test)_[A-Za-z0-9]+",
    r"|AIza[A-Za-z0-9_-]+",
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    r"|-----BEGIN [A-Z0-9 ]{1,60}-----",
);

impl Scanner {
    pub(super) fn scan_prefixed(&self, b: &[u8], tally: &mut Tally, claims: &mut Claims) {
        for m in self.prefixed.find_iter(b) {
            let (start, end) = (m.start(), m.end());
            // Inside a key block already reported. A certificate's body (claimed as public) is still looked
            // at: an armour line is no reason to trust what it wraps, and the rules below are too strict to
            // fire on base64 by chance.
            if overlaps_found(claims, start, end) {
                continue;
            }
            let token = &b[start..end];
            let before = if start == 0 { None } else { Some(b[start - 1]) };
            let after = b.get(end).copied();
            // A token glued to a word before it (`tokenghp_…`) is still a token when its literal prefix is
            // distinctive; where the prefix is short, a glued one must also look machine-made (hold a digit).
            let glued = before.is_some_and(|c| c.is_ascii_alphanumeric());
            let after_alnum = after.is_some_and(|c| c.is_ascii_alphanumeric());
            let has_digit = |from: usize| token[from..].iter().any(u8::is_ascii_digit);
            let found =
                match token[0] {
                    b'A' if token.starts_with(b"AIza") => (token.len() == 4 + 35
                        && !after_alnum
                        && !before.is_some_and(|c| c == b'_' || c == b'-')
                        && (!glued || has_digit(4)))
                    .then_some((
                        Kind::GoogleApiKey,
                        Kind::GoogleApiKey.severity(),
                        start,
                        end,
                    )),
                    b'A' => aws_key_id(token).map(|(from, to)| {
                        (
                            Kind::AwsAccessKey,
                            Severity::Critical,
                            start + from,
                            start + to,
                        )
                    }),
                    b'g' if token.starts_with(b"github_pat_") => (token.len() >= 11 + 40)
                        .then_some((Kind::GithubToken, Severity::Critical, start, end)),
                    b'g' => (token.len() >= 4 + 36 && (!glued || has_digit(4))).then_some((
                        Kind::GithubToken,
                        Severity::Critical,
                        start,
                        end,
                    )),
                    b'x' => {
                        let tail = &token[5..];
                        (tail.len() >= 10
                            && tail.contains(&b'-')
                            && tail.iter().any(u8::is_ascii_digit))
                        .then_some((Kind::SlackToken, Severity::Critical, start, end))
                    }
                    b'p' => {
                        // A Stripe publishable key is public by design; claim it so it is not a random token.
                        claims.public(start, end);
                        None
                    }
                    b'r' | b's' => {
                        // A test-mode key cannot move money, but it still opens the account's test data.
                        let severity = if &token[3..7] == b"test" {
                            Severity::Medium
                        } else {
                            Severity::Critical
                        };
                        (token.len() >= 8 + 16).then_some((Kind::StripeKey, severity, start, end))
                    }
                    b'e' => jwt_end(b, start, end).map(|e| (Kind::Jwt, Severity::High, start, e)),
                    b'-' => pem_block(b, start, end, claims)
                        .map(|block_end| (Kind::PrivateKey, Severity::Critical, start, block_end)),
                    _ => None,
                };
            if let Some((kind, severity, claim_start, claim_end)) = found {
                tally.add(kind, severity);
                claims.found(claim_start, claim_end, kind);
            }
        }
    }
}

/// An AWS access key id in a run of capitals and digits starting with `AKIA`/`ASIA`: the run itself when it
/// is 20 long, wherever it is glued (`tokenAKIA…`, `AKIA…key`); or, glued to more capitals, one whose 16
/// characters after the prefix are base32 (the alphabet of key ids) with a digit among them: at the run's
/// end (`KEYAKIA…`) or its start (`AKIA…END`). The range of the key id within the run.
fn aws_key_id(run: &[u8]) -> Option<(usize, usize)> {
    let n = run.len();
    if n == 20 {
        return Some((0, 20));
    }
    if n < 20 {
        return None;
    }
    let base32 = |id: &[u8]| {
        id[4..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c))
            && id[4..].iter().any(u8::is_ascii_digit)
    };
    let prefixed = |id: &[u8]| id.starts_with(b"AKIA") || id.starts_with(b"ASIA");
    let tail = &run[n - 20..];
    if prefixed(tail) && base32(tail) {
        return Some((n - 20, n));
    }
    (0..=n - 20)
        .find(|&p| prefixed(&run[p..]) && base32(&run[p..p + 20]))
        .map(|p| (p, p + 20))
}

// ---------------------------------------------------------------------------------------------------------
// JWT and PEM blocks

#[derive(Deserialize)]
pub(super) struct JwtHeader {
    // Only its presence, as a string, is checked.
    #[serde(rename = "alg")]
    _alg: String,
}

/// The end of a JWT (or 5-segment JWE) starting at `start`, if its header decodes to a JSON object with `alg`.
pub(super) fn jwt_end(b: &[u8], start: usize, mut end: usize) -> Option<usize> {
    let b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    // Glued to a word (`tokeneyJ…`) it is still a JWT; after a `.` it is a segment of something else.
    if start > 0 && matches!(b[start - 1], b'.' | b'-' | b'_') {
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

pub(super) fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
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

// ---------------------------------------------------------------------------------------------------------
// AWS secret access keys (need context: 40 base64 characters alone are just as likely a hash)

/// Whether the string being scanned is about AWS credentials: its key is named like an AWS secret, or it
/// holds an access key id. Decided lazily, since only a 40-character base64 candidate needs to know.
#[derive(Clone, Copy)]
pub(super) struct AwsContext<'a> {
    pub(super) key: Option<&'a str>,
    pub(super) access_key_seen: bool,
}

impl AwsContext<'_> {
    pub(super) fn applies(&self) -> bool {
        self.access_key_seen || self.key.is_some_and(|k| is_aws_secret_name(k.as_bytes()))
    }
}

pub(super) fn is_aws_secret_name(name: &[u8]) -> bool {
    if is_marker_name(name) {
        return false;
    }
    let mut buf = [0u8; 64];
    let norm = normalize_name(name, &mut buf);
    contains(norm, b"secretaccesskey") || (contains(norm, b"aws") && contains(norm, b"secret"))
}

pub(super) fn is_aws_secret_shape(t: &[u8]) -> bool {
    // Mixed case rules out hex digests (SHA-1 is 40 hex characters).
    t.len() == 40
        && t.iter().all(|&c| CLASS[usize::from(c)] & BASE64 != 0)
        && t.iter().any(u8::is_ascii_uppercase)
        && t.iter().any(u8::is_ascii_lowercase)
}

/// 40-character base64 pieces of the run `start..end` that sit in an AWS context.
pub(super) fn aws_in_run(
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
            claims.found(s, i, Kind::AwsSecretKey);
        }
    }
}

/// Whether the text just before `start` names an AWS secret (`aws_secret_access_key = `, `SecretAccessKey:`).
pub(super) fn aws_context_before(b: &[u8], start: usize) -> bool {
    let window = &b[start.saturating_sub(96)..start];
    let mut buf = [0u8; 96];
    let norm = normalize_name(window, &mut buf);
    contains(norm, b"secretaccesskey") || contains(norm, b"awssecret")
}
