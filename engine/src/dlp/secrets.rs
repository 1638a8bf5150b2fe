//! Secrets recognised by their shape: literal-prefixed tokens (AWS key ids, GitHub, Slack, Stripe, Google),
//! JWTs, PEM private key blocks, and AWS secret access keys (which need context to tell from a digest).

use serde::Deserialize;

use super::generic::normalize_name;
use super::kinds::{Kind, Tally};
use super::redact::is_marker_name;
use super::text::contains;
use super::text::{overlaps, Claims, BASE64, CLASS};
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
    pub(super) fn scan_prefixed(&self, s: &str, tally: &mut Tally, claims: &mut Claims) {
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
                    (bounded && token.len() >= 8 + 16).then_some((Kind::StripeKey, severity, end))
                }
                b'e' => jwt_end(b, start, end).map(|e| (Kind::Jwt, Severity::High, e)),
                b'-' => pem_block(b, start, end, claims)
                    .map(|block_end| (Kind::PrivateKey, Severity::Critical, block_end)),
                _ => None,
            };
            if let Some((kind, severity, claim_end)) = found {
                tally.add(kind, severity);
                claims.found(start, claim_end, kind);
            }
        }
    }
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

/// Handles a `-----BEGIN X-----` header at `start..header_end`. A private key with a body is reported (the
/// returned end covers the block); any other block (certificate, public key) is claimed as not secret, since
/// its base64 body would otherwise look like random tokens.
pub(super) fn pem_block(
    b: &[u8],
    start: usize,
    header_end: usize,
    claims: &mut Claims,
) -> Option<usize> {
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
        claims.public(start, block_end);
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
