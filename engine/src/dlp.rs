//! Detectors over a JSON value (tool arguments, message params, MCP results) -> findings (type, severity,
//! JSON pointer, count); never raw values. [`Scanner::redact`] replaces what they found, in the same walk.
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
//!
//! A string that is not plain ASCII, or holds a `%`, is scanned a second time as a reader would see it
//! (percent-decoded once, invisible characters dropped, compatibility forms folded: see `normalize`), so a
//! key split by zero-width spaces or written in full-width letters is found too; plain ASCII strings, most of
//! what tools exchange, skip that pass.

#[cfg(test)]
mod evasion_tests;
mod financial;
mod generic;
mod identity;
mod keys;
mod kinds;
mod normalize;
mod redact;
mod secrets;
#[cfg(test)]
mod tests;
mod text;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use financial::{card_candidate, scan_number};
use kinds::Tally;
use secrets::PREFIXED_PATTERN;
use text::Claims;

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

impl Scanner {
    pub fn new() -> Scanner {
        // A constant pattern: failure here is a programming error caught by every test, not an input error.
        let prefixed =
            Regex::new(PREFIXED_PATTERN).expect("the prefixed-secret pattern is a valid regex");
        Scanner { prefixed }
    }

    /// One pass over the arguments: every string value and every object key of six bytes or more, a key read
    /// as a value is (an agent can move `db_password=…` from a value into a key; the upstream reads both).
    /// A key's finding is reported at its own pointer, with the key as `~redacted`. Findings sorted by (path,
    /// kind).
    pub fn scan(&self, arguments: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut path = String::new();
        let mut claims = Claims::default();
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
                        self.scan_text(k, None, &mut tally, &mut claims);
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
                Value::String(s) => self.scan_text(s, frame.key, &mut tally, &mut claims),
                Value::Number(n) => {
                    // Card numbers sent as JSON numbers are as sensitive as the same digits in a string.
                    if let Some(u) = card_candidate(n) {
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
        self.seal_pointers(&mut out);
        sort_findings(&mut out);
        out
    }

    /// Hides, in every finding's pointer, each key that would be a finding as a value. The walk already writes
    /// `~redacted` for a key of six bytes or more that holds a finding; this also covers what the walk's
    /// per-key view cannot (a pointer is logged, audited and handed to the policy, so no key that is a finding
    /// may reach it). Only the pointers of findings are looked at: the cost is paid when something was found,
    /// never on a clean message.
    fn seal_pointers(&self, findings: &mut [Finding]) {
        for finding in findings.iter_mut() {
            if finding.path.is_empty() {
                continue;
            }
            let mut sealed = String::with_capacity(finding.path.len());
            let mut changed = false;
            for segment in finding.path.split('/').skip(1) {
                sealed.push('/');
                let key = segment.replace("~1", "/").replace("~0", "~");
                if segment != REDACTED_SEGMENT && self.holds_finding(&key) {
                    sealed.push_str(REDACTED_SEGMENT);
                    changed = true;
                } else {
                    sealed.push_str(segment);
                }
            }
            if changed {
                finding.path = sealed;
            }
        }
    }

    /// Whether `text`, as a value, holds a finding.
    fn holds_finding(&self, text: &str) -> bool {
        let mut tally = Tally::default();
        self.scan_text(text, None, &mut tally, &mut Claims::default());
        tally.total() > 0
    }

    /// Scans like [`Scanner::scan`] and, in the same walk, redacts what it finds: in every string, each byte
    /// range a detector matched becomes `[REDACTED:<type>]` (the rest of the string is kept); an object key
    /// holding a finding is renamed `[REDACTED:<type>]` (`#2`, `#3`... if that name is taken); a number
    /// holding one becomes the string `[REDACTED:<type>]`. Nothing else changes, so an MCP result stays a
    /// well-formed result. Returns exactly what `scan` returns for the value as it was; scanning the
    /// redacted value finds nothing.
    pub fn redact(&self, value: &mut Value) -> Vec<Finding> {
        redact::redact(self, value)
    }
}

/// Sorts findings by (path, kind); severity and count settle ties (two keys redacted under one object share
/// a path), so the order never depends on the walk's.
fn sort_findings(out: &mut [Finding]) {
    out.sort_unstable_by(|a, b| {
        (&a.path, &a.kind, a.severity, a.count).cmp(&(&b.path, &b.kind, b.severity, b.count))
    });
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
