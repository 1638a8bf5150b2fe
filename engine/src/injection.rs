//! Prompt-injection and tool-poisoning markers: which kinds of instruction aimed at the model a value holds
//! (an MCP result, prompt messages, a tool definition), never the text that showed it.
//!
//! Each string (and object key) is folded first: Unicode tag characters are decoded back to the ASCII they
//! smuggle, zero-width characters and bidi controls are dropped, full-width ASCII is narrowed and exotic
//! spaces and quotes become plain ones, so `ig\u{200B}nore previous instructions` reads as what the model
//! would understand. The folded text then goes through one [`regex::bytes::RegexSet`] (a linear-time DFA:
//! no pattern here can backtrack) whose patterns each stand for one marker, plus a scan of HTML comments.

mod patterns;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A kind of prompt-injection / tool-poisoning marker. Names are part of the policy contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// An instruction block aimed at the model: `<IMPORTANT>`, `[INST]`, "do not tell the user", ...
    HiddenInstruction,
    /// An attempt to override the model's instructions: "ignore previous instructions", ...
    IgnoreInstructions,
    /// A request to read or pass on credentials: "read ~/.ssh/id_rsa", "include the API key", ...
    CredentialRequest,
    /// A request to send data out: "send it to https://...", `?data=`, a markdown image with a query, ...
    Exfiltration,
    /// Unicode tag characters (U+E0000..=U+E007F), which spell out ASCII invisibly.
    UnicodeTag,
    /// Runs of zero-width characters, or bidi overrides and isolates.
    InvisibleText,
}

impl Marker {
    /// Every marker, in the order [`markers`] and [`poisoning`] return them.
    pub const ALL: [Marker; 6] = [
        Marker::HiddenInstruction,
        Marker::IgnoreInstructions,
        Marker::CredentialRequest,
        Marker::Exfiltration,
        Marker::UnicodeTag,
        Marker::InvisibleText,
    ];

    /// The name used in the Rego input, the audit log and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Marker::HiddenInstruction => "hidden_instruction",
            Marker::IgnoreInstructions => "ignore_instructions",
            Marker::CredentialRequest => "credential_request",
            Marker::Exfiltration => "exfiltration",
            Marker::UnicodeTag => "unicode_tag",
            Marker::InvisibleText => "invisible_text",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Markers found in every string (and object key) of a value, e.g. an MCP result or prompt messages.
/// Sorted (in [`Marker::ALL`] order), each at most once.
pub fn markers(value: &Value) -> Vec<Marker> {
    let mut found = Found::default();
    found.value(value);
    found.into_markers()
}

/// The fields of a tool definition that reach the model, as an upstream lists the tool.
const TOOL_FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Markers found in a tool definition as an upstream lists it (`name`, `title`, `description`,
/// `inputSchema` and `outputSchema` including nested descriptions/titles/defaults/enums, `annotations`).
/// Sorted (in [`Marker::ALL`] order), each at most once.
pub fn poisoning(tool: &Value) -> Vec<Marker> {
    let mut found = Found::default();
    if let Value::Object(map) = tool {
        for field in TOOL_FIELDS {
            if let Some(v) = map.get(field) {
                found.value(v);
            }
        }
    }
    found.into_markers()
}

/// Markers seen so far, one bit each.
#[derive(Default)]
struct Found(u8);

impl Found {
    fn add(&mut self, m: Marker) {
        self.0 |= m.bit();
    }

    fn into_markers(self) -> Vec<Marker> {
        Marker::ALL
            .into_iter()
            .filter(|m| self.0 & m.bit() != 0)
            .collect()
    }

    fn value(&mut self, value: &Value) {
        // An explicit stack rather than recursion: a `Value` built in code has no depth limit.
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => self.text(s),
                Value::Array(items) => stack.extend(items.iter().rev()),
                Value::Object(map) => {
                    for (k, v) in map {
                        self.text(k);
                        stack.push(v);
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    fn text(&mut self, s: &str) {
        let folded = fold(s, self);
        let b: &[u8] = folded.as_bytes();
        if b.len() < patterns::SHORTEST {
            return;
        }
        let rules = rules();
        for i in rules.set.matches(b).iter() {
            self.add(rules.markers[i]);
        }
        if html_comment_instructs(&folded) {
            self.add(Marker::HiddenInstruction);
        }
    }
}

/// The compiled patterns and, for each, the marker it stands for.
struct Rules {
    set: RegexSet,
    markers: Vec<Marker>,
}

fn rules() -> &'static Rules {
    static RULES: LazyLock<Rules> = LazyLock::new(|| {
        let rules = patterns::rules();
        // Constant patterns: failure here is a programming error caught by every test, not an input error.
        let set = RegexSet::new(rules.iter().map(|(_, p)| p.as_str()))
            .expect("the injection patterns are valid regexes");
        Rules {
            set,
            markers: rules.into_iter().map(|(m, _)| m).collect(),
        }
    });
    &RULES
}

fn comment_imperative() -> &'static Regex {
    static IMPERATIVE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(patterns::COMMENT_IMPERATIVE).expect("the comment pattern is a valid regex")
    });
    &IMPERATIVE
}

/// Zero-width and invisible formatting characters: harmless alone (a soft hyphen, a BOM), a sign of hidden
/// text in a run.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

/// Bidi overrides and isolates: they make text display in an order other than the one the model reads.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters folding changes or notes: zero-width and invisible characters, bidi controls, tag
/// characters, full-width ASCII, typographic quotes and non-ASCII spaces. Text between them is copied as
/// is, so folding costs little more than the search for them.
const SPECIAL: &str = concat!(
    r"[\x{85}\x{A0}\x{AD}\x{2BC}\x{1680}\x{2000}-\x{200F}\x{2018}\x{2019}\x{201C}\x{201D}\x{2028}-\x{202F}",
    r"\x{205F}-\x{2064}\x{2066}-\x{2069}\x{3000}\x{FEFF}\x{FF01}-\x{FF5E}\x{E0000}-\x{E007F}]",
);

fn special() -> &'static regex::Regex {
    static SPECIAL_CHARS: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(SPECIAL).expect("the special-character class is a valid regex")
    });
    &SPECIAL_CHARS
}

/// The text as the patterns see it, noting tag characters and invisible text on the way. Text without
/// anything to fold (all ASCII text, most other text) is borrowed as is.
fn fold<'a>(s: &'a str, found: &mut Found) -> Cow<'a, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Byte offset just past the last zero-width character, and how many came back to back before it.
    let (mut invisible_end, mut invisible_run) = (usize::MAX, 0u32);
    for m in special().find_iter(s) {
        let Some(c) = m.as_str().chars().next() else {
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
        o.push_str(&s[copied..m.start()]);
        copied = m.end();
        if is_zero_width(c) {
            invisible_run = if m.start() == invisible_end {
                invisible_run + 1
            } else {
                1
            };
            invisible_end = m.end();
            if invisible_run >= 2 {
                found.add(Marker::InvisibleText);
            }
            continue;
        }
        match c {
            '\u{E0000}'..='\u{E007F}' => {
                found.add(Marker::UnicodeTag);
                // Tag characters mirror ASCII at U+E0000 + byte: read what they spell.
                let ascii = (c as u32 - 0xE0000) as u8;
                if (0x20..0x7F).contains(&ascii) {
                    o.push(char::from(ascii));
                }
            }
            c if is_bidi_control(c) => found.add(Marker::InvisibleText),
            '\u{FF01}'..='\u{FF5E}' => o.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
            '\u{2018}' | '\u{2019}' | '\u{02BC}' => o.push('\''),
            '\u{201C}' | '\u{201D}' => o.push('"'),
            // Every other character of the class is a space of some width.
            _ => o.push(' '),
        }
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Longest comment body looked at: an instruction is a sentence or two, and bounding the copy keeps a huge
/// comment linear.
const COMMENT_WINDOW: usize = 2048;

/// Whether an HTML comment (invisible once rendered, read by the model all the same) speaks to the model.
/// Comments in ordinary documents (`<!-- TODO -->`, `<!-- markdownlint-disable -->`, `<!-- do not edit:
/// generated -->`) do not.
fn html_comment_instructs(s: &str) -> bool {
    let mut from = 0;
    while let Some(open) = s[from..].find("<!--") {
        let body_start = from + open + 4;
        // No closing `-->` after this one means none after any later one either: stop, staying linear.
        let Some(close) = s[body_start..].find("-->") else {
            return false;
        };
        let body = &s.as_bytes()[body_start..body_start + close.min(COMMENT_WINDOW)];
        if comment_imperative().is_match(body) {
            return true;
        }
        from = body_start + close + 3;
    }
    false
}
