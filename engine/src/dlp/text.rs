//! One string's pass: the order the detector families run in, the claims that keep them from reporting a
//! byte range twice, and the tokenizer that hands each run of token bytes to the detectors that can match it.

use super::financial::scan_digits;
use super::generic::{assignment_at, is_nontrivial, name_class, random_in_run};
use super::identity::scan_at_signs;
use super::keys::bare_key_at;
use super::kinds::{Kind, Tally};
use super::normalize;
use super::secrets::{aws_in_run, AwsContext};
use super::Scanner;

/// Byte ranges of the current string already attributed to a detector (or known not to be secret, such as
/// a certificate body), so the generic detector does not report them again. The ranges a detector found
/// are also what redaction replaces.
#[derive(Default)]
pub(super) struct Claims(Vec<Claim>);

struct Claim {
    start: usize,
    end: usize,
    /// The detector that matched, or `None` for text known to be public (left as it is by redaction).
    kind: Option<Kind>,
}

impl Claims {
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// `start..end` is a match of `kind`.
    pub(super) fn found(&mut self, start: usize, end: usize, kind: Kind) {
        self.0.push(Claim {
            start,
            end,
            kind: Some(kind),
        });
    }

    /// `start..end` is public material that only looks secret (a certificate, a publishable key).
    pub(super) fn public(&mut self, start: usize, end: usize) {
        self.0.push(Claim {
            start,
            end,
            kind: None,
        });
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.0.iter().any(|c| start < c.end && c.start < end)
    }

    fn overlaps_found(&self, start: usize, end: usize) -> bool {
        self.0
            .iter()
            .any(|c| c.kind.is_some() && start < c.end && c.start < end)
    }

    /// The ranges detectors matched, with their detector, in the order they were found.
    pub(super) fn secrets(&self) -> impl Iterator<Item = (usize, usize, Kind)> + '_ {
        self.0
            .iter()
            .filter_map(|c| c.kind.map(|k| (c.start, c.end, k)))
    }
}

impl Scanner {
    /// One string: the detectors over its bytes, then over its normalised view (see [`normalize`]) when it
    /// has one. A detector's count is the larger of the two passes' (what both see is one finding, not
    /// two); what only the view shows is claimed over the original bytes it came from, so redaction
    /// replaces those.
    pub(super) fn scan_text(
        &self,
        s: &str,
        key: Option<&str>,
        tally: &mut Tally,
        claims: &mut Claims,
    ) {
        claims.clear();
        // A key named `pass\u{200B}word` or `pass%77ord` names a password all the same.
        let key_view = key.and_then(normalize::view);
        let key = key_view.as_ref().map(|v| v.text.as_str()).or(key);
        let before = tally.clone();
        self.scan_bytes(s.as_bytes(), key, tally, claims);
        let Some(view) = normalize::view(s) else {
            return;
        };
        let mut seen = Tally::default();
        let mut view_claims = Claims::default();
        self.scan_bytes(view.text.as_bytes(), key, &mut seen, &mut view_claims);
        tally.add_unseen(&before, &seen);
        for (start, end, kind) in view_claims.secrets() {
            let (start, end) = view.original(start, end);
            claims.found(start, end, kind);
        }
    }

    fn scan_bytes(&self, b: &[u8], key: Option<&str>, tally: &mut Tally, claims: &mut Claims) {
        let before = tally.total();

        // The shortest prefixed secret (a minimal JWT) is longer than this.
        if b.len() >= 10 {
            self.scan_prefixed(b, tally, claims);
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
        // for a random token, and no card, name or assignment can hide inside base64 text. A private key
        // body without its armour is the one thing such a file can be that is a secret.
        if !is_wrapped_base64(b) && !is_encoded_file(b) {
            scan_runs(self, b, aws, tally, claims, &mut generic);
        } else if let Some(end) = bare_key_at(b, 0) {
            tally.hit(Kind::PrivateKey);
            claims.found(0, end, Kind::PrivateKey);
        }
        let specific = tally.total() - before;

        // A value under a key named like a secret is one secret, whatever its shape: token-level rules
        // would only count it again.
        if specific == 0 && url_generic == 0 && b.len() >= 4 {
            if let Some(class) = key.and_then(|k| name_class(k.as_bytes())) {
                if is_nontrivial(b, class) {
                    generic = 1;
                    claims.found(0, b.len(), Kind::GenericSecret);
                }
            }
        }
        for _ in 0..generic {
            tally.hit(Kind::GenericSecret);
        }
    }
}

pub(super) fn overlaps(claims: &Claims, start: usize, end: usize) -> bool {
    claims.overlaps(start, end)
}

/// Whether `start..end` overlaps a range a detector matched (public material does not count).
pub(super) fn overlaps_found(claims: &Claims, start: usize, end: usize) -> bool {
    claims.overlaps_found(start, end)
}

pub(super) fn is_alnum(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

pub(super) fn contains_ignore_case(hay: &[u8], lower_needle: &[u8]) -> bool {
    hay.len() >= lower_needle.len()
        && hay.windows(lower_needle.len()).any(|w| {
            w.iter()
                .zip(lower_needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

pub(super) const TOKEN: u8 = 1;
pub(super) const BASE64: u8 = 2;
pub(super) const DIGIT: u8 = 4;
pub(super) const EQUALS: u8 = 8;
pub(super) const DASH: u8 = 16;

/// Byte classes for the tokenizer: token bytes are base64 and base64url characters plus `=`.
pub(super) const CLASS: [u8; 256] = {
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
        } else if c == b'_' {
            TOKEN
        } else if c == b'-' {
            TOKEN | DASH
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
pub(super) fn scan_runs(
    scanner: &Scanner,
    b: &[u8],
    aws: AwsContext<'_>,
    tally: &mut Tally,
    claims: &mut Claims,
    generic: &mut u32,
) {
    let n = b.len();
    let assignments = n >= 6;
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
            if end - start >= 32 {
                bare_key_in_run(b, start, tally, claims);
            }
            if seen & DASH != 0 {
                scanner.scan_dashed(b, start, end, tally, claims);
            }
            if end - start >= 40 {
                aws_in_run(b, start, end, aws, tally, claims);
            }
            random_in_run(b, start, end, claims, generic);
        }
    }
}

/// A private key body without armour at the start of the run (after a written line break, `\n` in JSON
/// held in a string, whose `n` the run starts with).
fn bare_key_in_run(b: &[u8], start: usize, tally: &mut Tally, claims: &mut Claims) {
    let start = if start > 0 && b[start - 1] == b'\\' && matches!(b[start], b'n' | b'r') {
        start + 1
    } else {
        start
    };
    if let Some(end) = bare_key_at(b, start) {
        if !claims.overlaps(start, end) {
            tally.hit(Kind::PrivateKey);
            claims.found(start, end, Kind::PrivateKey);
        }
    }
}

impl Scanner {
    /// Prefixed secrets written with dashes inside (`AKIA-IOSF-ODNN-7EXA-MPLE`): the run without its dashes
    /// goes through the prefixed detectors, and what they find is claimed over the dashed original. Only
    /// what the run holds beyond what was already found counts (a Slack token's own dashes change nothing).
    fn scan_dashed(
        &self,
        b: &[u8],
        start: usize,
        end: usize,
        tally: &mut Tally,
        claims: &mut Claims,
    ) {
        let dashes = b[start..end].iter().filter(|&&c| c == b'-').count();
        if end - start - dashes < 20 {
            return;
        }
        let mut squeezed = Vec::with_capacity(end - start);
        let mut origin = Vec::with_capacity(end - start);
        for (i, &c) in b[start..end].iter().enumerate() {
            if c != b'-' {
                squeezed.push(c);
                origin.push(start + i);
            }
        }
        if squeezed.len() < 20 {
            return;
        }
        let mut seen = Tally::default();
        let mut found = Claims::default();
        self.scan_prefixed(&squeezed, &mut seen, &mut found);
        for (s, e, kind) in found.secrets() {
            let (s, e) = (origin[s], origin[e - 1] + 1);
            if !claims.overlaps_found(s, e) {
                tally.add(kind, seen.severity_of(kind));
                claims.found(s, e, kind);
            }
        }
    }
}

/// Base64 of common binary file formats, as their first bytes encode (PNG, JPEG, GIF, PDF, ZIP, gzip, WebP).
const FILE_MAGIC: [&[u8]; 7] = [
    b"iVBORw0KGgo",
    b"/9j/",
    b"R0lGOD",
    b"JVBERi0",
    b"UEsDB",
    b"H4sI",
    b"UklGR",
];

/// Whether the text is nothing but the base64 of a binary file (an image an MCP result carries, say): data,
/// whose pieces would otherwise pass for random tokens, like a wrapped base64 file's lines.
fn is_encoded_file(b: &[u8]) -> bool {
    b.len() >= 64
        && FILE_MAGIC.iter().any(|m| b.starts_with(m))
        && b.iter()
            .all(|&c| CLASS[usize::from(c)] & BASE64 != 0 || matches!(c, b'=' | b'\n' | b'\r'))
}

/// Whether the text is base64 wrapped at a fixed width of 60-120 columns (MIME, PEM-like bodies): at least
/// four lines, all but the last exactly that wide, nothing but base64 characters.
pub(super) fn is_wrapped_base64(b: &[u8]) -> bool {
    if b.len() < 256 {
        return false;
    }
    // The first line (at most 120 columns and a `\r`) must end within 122 bytes: prose, whose first line
    // is usually the whole text, is turned away without splitting it.
    if !b[..122].contains(&b'\n') {
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
