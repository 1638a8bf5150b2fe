//! The normalised view of a string: the text a reader (a model, a browser, a shell) would make of it, so that a
//! secret cannot hide from the detectors behind small format changes that such a reader undoes.
//!
//! Three steps, in this order:
//! 1. percent-encoding is decoded once (`%41KIA…` -> `AKIA…`); escapes whose bytes would not form UTF-8 are
//!    decoded only where they stand for ASCII;
//! 2. invisible and format characters are dropped: zero-width space, joiners and non-joiners, word joiner,
//!    BOM, soft hyphen, bidi controls, tag characters, variation selectors, C1 controls, combining marks;
//! 3. each remaining character is folded by its Unicode compatibility decomposition (the mapping half of
//!    NFKC, from the `unicode-normalization` tables) when that decomposition is ASCII: full-width `ＡＫＩＡ`,
//!    `４１１１`, mathematical letters, circled digits, ligatures and accented letters become ASCII; other
//!    characters (CJK, Cyrillic, ...) are kept as they are. Composition, NFKC's other half, only rebuilds
//!    accented letters, which detectors of ASCII secrets never match.
//!
//! Every byte of the view remembers the range of the original string it came from, so a finding in the
//! view is redacted in the original. Strings that are ASCII and hold no `%` have no view (the fast path):
//! the scan of such a string costs two vectorised passes more than before, nothing else.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A normalised string and, for each of its bytes, the range of the original it stands for.
pub(super) struct View {
    pub(super) text: String,
    origin: Vec<(u32, u32)>,
    /// The original's length.
    len: usize,
}

impl View {
    /// The range of the original string that the view's bytes `start..end` came from, with the invisible
    /// characters dropped inside it and right after it (a key interleaved with zero-width spaces goes whole).
    pub(super) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let n = self.origin.len();
        if n == 0 {
            return (0, self.len);
        }
        let first = self.origin[start.min(n - 1)].0 as usize;
        let own_end = self.origin[end.clamp(1, n) - 1].1 as usize;
        let last = match self.origin.get(end) {
            Some(next) => own_end.max(next.0 as usize),
            None => self.len,
        };
        (first, last.max(first))
    }
}

/// Whether `s` takes the fast path: ASCII without `%` reads the same to every reader.
pub(super) fn is_plain(s: &str) -> bool {
    s.is_ascii() && !s.as_bytes().contains(&b'%')
}

/// The view of `s`, or `None` when normalising changes nothing (always for [`is_plain`] strings).
pub(super) fn view(s: &str) -> Option<View> {
    if is_plain(s) || s.len() > u32::MAX as usize {
        return None;
    }
    let (decoded, decoded_origin, mut changed) = percent_decode(s);
    let text: &str = &decoded;
    // Most strings that leave the fast path (prose with a `%`, text in other scripts) read the same
    // normalised: found out without building anything.
    if !changed && (s.is_ascii() || !text.chars().any(changes)) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut origin: Vec<(u32, u32)> = Vec::with_capacity(text.len());
    let source = |i: usize, len: usize| -> (u32, u32) {
        match &decoded_origin {
            Some(o) => (o[i].0, o[i + len - 1].1),
            None => (i as u32, (i + len) as u32),
        }
    };
    for (i, c) in text.char_indices() {
        if c.is_ascii() {
            out.push(c);
            origin.push(source(i, 1));
            continue;
        }
        let from = source(i, c.len_utf8());
        if is_invisible(c) || is_combining_mark(c) {
            changed = true;
            continue;
        }
        if keeps_as_is(c) {
            push_char(&mut out, &mut origin, c, from);
            continue;
        }
        match ascii_folding(c) {
            Some(folded) => {
                changed = true;
                for &b in &folded.bytes[..folded.len] {
                    out.push(char::from(b));
                    origin.push(from);
                }
            }
            None => push_char(&mut out, &mut origin, c, from),
        }
    }
    changed.then_some(View {
        text: out,
        origin,
        len: s.len(),
    })
}

/// Whether normalising changes the character.
fn changes(c: char) -> bool {
    !c.is_ascii()
        && (is_invisible(c)
            || is_combining_mark(c)
            || (!keeps_as_is(c) && ascii_folding(c).is_some()))
}

fn push_char(out: &mut String, origin: &mut Vec<(u32, u32)>, c: char, from: (u32, u32)) {
    out.push(c);
    for _ in 0..c.len_utf8() {
        origin.push(from);
    }
}

/// Scripts whose letters have no ASCII compatibility form: kept without a table lookup, so prose in CJK,
/// Cyrillic, Greek, Arabic or Hebrew costs little.
fn keeps_as_is(c: char) -> bool {
    matches!(c,
        '\u{0370}'..='\u{03FF}' // Greek
        | '\u{0400}'..='\u{052F}' // Cyrillic
        | '\u{0590}'..='\u{05FF}' // Hebrew
        | '\u{0620}'..='\u{064A}' // Arabic letters
        | '\u{3041}'..='\u{3096}' // Hiragana
        | '\u{30A1}'..='\u{30FA}' // Katakana
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{AC00}'..='\u{D7A3}' // Hangul syllables (they decompose, but into jamo, never ASCII)
    )
}

/// At most this many ASCII bytes come from one character (U+FDFA decomposes to 18 Arabic letters, but no
/// character decomposes to more ASCII than `U+33AF` SQUARE RAD OVER S SQUARED's 7).
const MAX_FOLD: usize = 18;

struct Folded {
    bytes: [u8; MAX_FOLD],
    len: usize,
}

/// The compatibility decomposition of `c` with combining marks dropped, when what remains is ASCII.
fn ascii_folding(c: char) -> Option<Folded> {
    let mut folded = Folded {
        bytes: [0; MAX_FOLD],
        len: 0,
    };
    let mut ascii = true;
    decompose_compatible(c, |d| {
        if is_combining_mark(d) {
            return;
        }
        if d.is_ascii() && folded.len < MAX_FOLD {
            folded.bytes[folded.len] = d as u8;
            folded.len += 1;
        } else {
            ascii = false;
        }
    });
    (ascii && folded.len > 0).then_some(folded)
}

/// Characters that render as nothing (or only steer rendering) and that readers skip: format characters
/// (Unicode category Cf), default-ignorable code points and C1 controls.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{0080}'..='\u{009F}' // C1 controls
        | '\u{00AD}' // soft hyphen
        | '\u{034F}' // combining grapheme joiner
        | '\u{061C}' // Arabic letter mark
        | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}' // Mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space, non-joiner, joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates, deprecated formats
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FEFF}' // BOM, zero-width no-break space
        | '\u{FFF0}'..='\u{FFFB}' // interlinear annotation
        | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}' // musical formatting
        | '\u{E0000}'..='\u{E007F}' // tag characters
        | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    )
}

/// Where each byte of a decoded string came from in the original.
type Origin = Vec<(u32, u32)>;

/// `s` with `%XX` decoded once, the origin of each decoded byte when anything was decoded, and whether it was.
fn percent_decode(s: &str) -> (std::borrow::Cow<'_, str>, Option<Origin>, bool) {
    let b = s.as_bytes();
    let escape = |i: usize| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    };
    if !s.match_indices('%').any(|(i, _)| escape(i)) {
        return (std::borrow::Cow::Borrowed(s), None, false);
    }
    // Decoding every escape first; if the bytes are not UTF-8 (`%FF`, a cut sequence), only escapes of ASCII.
    for ascii_only in [false, true] {
        let (bytes, origin) = decode_escapes(b, ascii_only);
        if bytes.len() == b.len() {
            return (std::borrow::Cow::Borrowed(s), None, false);
        }
        if let Ok(text) = String::from_utf8(bytes) {
            return (std::borrow::Cow::Owned(text), Some(origin), true);
        }
    }
    (std::borrow::Cow::Borrowed(s), None, false)
}

fn decode_escapes(b: &[u8], ascii_only: bool) -> (Vec<u8>, Origin) {
    let mut out = Vec::with_capacity(b.len());
    let mut origin = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex_value(c)),
                b.get(i + 2).and_then(|&c| hex_value(c)),
            ) {
                let byte = h << 4 | l;
                if !ascii_only || byte.is_ascii() {
                    out.push(byte);
                    origin.push((i as u32, (i + 3) as u32));
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        origin.push((i as u32, (i + 1) as u32));
        i += 1;
    }
    (out, origin)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<String> {
        view(s).map(|v| v.text)
    }

    #[test]
    fn plain_ascii_has_no_view() {
        assert!(text("AKIAIOSFODNN7EXAMPLE and some prose").is_none());
        assert!(text("100% sure").is_none(), "a lone % decodes nothing");
        assert!(text("漢字かな交じり文").is_none(), "CJK is kept as it is");
    }

    #[test]
    fn each_step() {
        assert_eq!(text("%41KIA").as_deref(), Some("AKIA"));
        assert_eq!(text("%2541").as_deref(), Some("%41"), "decoded once");
        assert_eq!(
            text("a%E2%80%8Bb").as_deref(),
            Some("ab"),
            "an encoded ZWSP"
        );
        assert_eq!(text("a%FFb%41").as_deref(), Some("a%FFbA"));
        assert_eq!(
            text("A\u{200B}K\u{200C}I\u{200D}A\u{2060}\u{FEFF}\u{00AD}").as_deref(),
            Some("AKIA")
        );
        assert_eq!(text("A\u{E0041}K\u{202E}IA").as_deref(), Some("AKIA"));
        assert_eq!(text("ＡＫＩＡ４１１１").as_deref(), Some("AKIA4111"));
        assert_eq!(text("𝐀𝐊𝐈𝐀 ①②").as_deref(), Some("AKIA 12"));
        assert_eq!(text("A\u{0301}KIA café").as_deref(), Some("AKIA cafe"));
        assert_eq!(text("x\u{00A0}y").as_deref(), Some("x y"));
    }

    #[test]
    fn view_bytes_map_back_to_the_original() {
        let s = "ab%41\u{200B}ＢＣ";
        let v = view(s).unwrap();
        assert_eq!(v.text, "abABC");
        // "A" came from "%41" (and the ZWSP dropped after it), and "AB" spans that ZWSP.
        assert_eq!(v.original(2, 3), (2, 8));
        let (start, end) = v.original(2, 4);
        assert_eq!(&s[start..end], "%41\u{200B}Ｂ");
        assert_eq!(v.original(0, v.text.len()), (0, s.len()));
    }
}
