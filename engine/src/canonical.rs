//! RFC 8785 (JCS) canonical JSON and the `input_hash` of tool arguments.
//!
//! Both the audit chain and `input_hash` hash canonical JSON, so the same value always yields the same bytes
//! whatever key order or whitespace it arrived with. The rules that matter (see `docs/audit-format.md`):
//! object members sorted by the UTF-16 code units of their names, no whitespace, strings escaped minimally
//! (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`; everything else as UTF-8), numbers
//! written as ECMAScript's `Number.prototype.toString` writes the IEEE 754 double they denote.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The RFC 8785 canonical form of `value`.
///
/// Written directly into one buffer: the audit chain hashes the JCS of every event it seals or verifies, and
/// going through `serde_jcs` for whole events cost about 15 µs each (`make bench`, chain/hash_event), capping
/// verify far below its goal. Numbers other than integers within ±2^53 (which ECMAScript prints as they are)
/// still go through `serde_jcs`, which implements the ECMAScript number formatting; a test checks this writer
/// against `serde_jcs` on many values.
pub fn to_jcs(value: &Value) -> String {
    let mut out = Vec::with_capacity(512);
    write_jcs(value, &mut out);
    // Only UTF-8 is ever written: literals, digits, and Rust strings copied in runs split at ASCII bytes.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Largest integer magnitude a double holds exactly; beyond it ECMAScript prints the nearest double.
const MAX_EXACT_INT: u64 = 1 << 53;

/// Appends the RFC 8785 form of `value` to `out` (the audit chain writes event fields around it).
pub(crate) fn write_jcs(value: &Value, out: &mut Vec<u8>) {
    write_canonical::<false>(value, out);
}

/// JCS, or with `EXACT` the same form but every number written as the exact value serde_json holds (integers
/// in all their digits, other numbers as the shortest text of their double, `1.0` apart from `1`).
fn write_canonical<const EXACT: bool>(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) if EXACT => write_exact_number(n, out),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical::<EXACT>(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's default map already iterates in byte order, which is the JCS order unless a key
            // holds a character of U+E000 or above; only then (or with `preserve_order`) is a sorted copy made.
            if in_jcs_order(map) {
                for (i, (key, item)) in map.iter().enumerate() {
                    write_member::<EXACT>(i, key, item, out);
                }
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| utf16_order(a.0, b.0));
                for (i, (key, item)) in members.into_iter().enumerate() {
                    write_member::<EXACT>(i, key, item, out);
                }
            }
            out.push(b'}');
        }
    }
}

fn write_member<const EXACT: bool>(index: usize, key: &str, item: &Value, out: &mut Vec<u8>) {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    write_canonical::<EXACT>(item, out);
}

/// True when iteration order is strictly ascending by bytes and no key needs the UTF-16 comparison.
fn in_jcs_order(map: &serde_json::Map<String, Value>) -> bool {
    let mut previous: Option<&[u8]> = None;
    for key in map.keys() {
        let key = key.as_bytes();
        if key.iter().any(|&byte| byte >= 0xEE) || previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) if i.unsigned_abs() <= MAX_EXACT_INT => {
            write_decimal(i < 0, i.unsigned_abs(), out)
        }
        (_, Some(u)) if u <= MAX_EXACT_INT => write_decimal(false, u, out),
        // serde_jcs fails only on a non-finite number, which a serde_json `Number` cannot hold (see below).
        _ => match serde_jcs::to_string(n) {
            Ok(text) => out.extend_from_slice(text.as_bytes()),
            Err(err) => unreachable!("JCS of a serde_json::Number cannot fail: {err}"),
        },
    }
}

/// An integer in all its digits; any other number as serde_json writes its double (the shortest text that reads
/// back as the same double, with `.0` or an exponent, so never the text of an integer).
fn write_exact_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => write_decimal(i < 0, i.unsigned_abs(), out),
        (_, Some(u)) => write_decimal(false, u, out),
        _ => out.extend_from_slice(n.to_string().as_bytes()),
    }
}

/// Appends the JCS number for the integer `value` (the nearest double's form beyond ±2^53, like `Value::from`).
pub(crate) fn write_i64(value: i64, out: &mut Vec<u8>) {
    if value.unsigned_abs() <= MAX_EXACT_INT {
        write_decimal(value < 0, value.unsigned_abs(), out);
    } else {
        write_number(&serde_json::Number::from(value), out);
    }
}

/// Decimal digits through a stack buffer: no `to_string` allocation per number.
fn write_decimal(negative: bool, mut magnitude: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `s` as a JCS string: `"`, `\\`, the two-letter forms of \b \f \n \r \t, other controls as
/// lowercase `\u00xx`, everything else (DEL and all non-ASCII included) as its UTF-8 bytes. Runs of bytes that
/// need no escape are copied whole. Tests pin this against serde_json and serde_jcs.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs an escape (most audit strings need none at all).
        if let Some(chunk) = bytes[i..].first_chunk::<8>() {
            if !needs_escape(u64::from_ne_bytes(*chunk)) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        i += 1;
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i - 1]);
        start = i;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `word` is a control (< 0x20), `"` or `\\`. Each test is the exact "has a zero byte" /
/// "has a byte below n" bit trick: a borrow only crosses bytes after a byte that already answers yes, and
/// bytes of 0x80 and above (UTF-8 beyond ASCII) never answer yes.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x;
    (below_space | has_zero(quote) | has_zero(backslash)) & HIGHS != 0
}

/// Lowercase hex of a SHA-256 digest into a stack buffer (the verifier compares it without allocating).
pub(crate) fn hex_lower(digest: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

/// Member order of RFC 8785: by UTF-16 code units. Below U+E000 a character is one UTF-16 unit equal to its
/// code point, and UTF-8 byte order is code point order, so bytes decide unless a lead byte of U+E000 or above
/// (0xEE..) appears, where supplementary characters (surrogates D800..DFFF) sort before U+E000..U+FFFF.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let high = |s: &str| s.bytes().any(|byte| byte >= 0xEE);
    if high(a) || high(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// Lowercase hex SHA-256 of `JCS(arguments)`: what the audit log stores instead of the arguments.
pub fn input_hash(arguments: &Value) -> String {
    sha256_hex(to_jcs(arguments).as_bytes())
}

/// SHA-256 of the exact canonical form of `value`: JCS's member order and string escapes, but numbers as
/// serde_json holds them (see `write_exact_number`). Unlike [`input_hash`], which follows JCS in rounding
/// integers beyond ±2^53 to the nearest double, it tells `9007199254740993` from `9007199254740992`; it is
/// what makes two calls "the same call" for an escalation's approval. Numbers serde_json itself parsed into one
/// double (integers beyond the 64-bit range, decimals with more digits than a double holds) it cannot tell
/// apart.
pub fn exact_hash(value: &Value) -> [u8; 32] {
    let mut out = Vec::with_capacity(512);
    write_canonical::<true>(value, &mut out);
    Sha256::digest(&out).into()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs_of(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        to_jcs(&value)
    }

    #[test]
    fn the_exact_hash_tells_apart_what_jcs_rounds() {
        let a: Value = serde_json::from_str(r#"{"id": 9007199254740993}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"id": 9007199254740992}"#).unwrap();
        assert_eq!(input_hash(&a), input_hash(&b), "JCS rounds beyond 2^53");
        assert_ne!(exact_hash(&a), exact_hash(&b));
        for (x, y) in [
            ("18446744073709551615", "18446744073709551614"),
            ("-9223372036854775808", "-9223372036854775807"),
            ("1", "1.0"),
            ("0.1", "0.30000000000000004"),
        ] {
            let x: Value = serde_json::from_str(x).unwrap();
            let y: Value = serde_json::from_str(y).unwrap();
            assert_ne!(exact_hash(&x), exact_hash(&y), "{x} vs {y}");
        }
        // Key order and whitespace still do not matter.
        let c: Value = serde_json::from_str(r#"{ "b": [1, 2.5], "a": "x" }"#).unwrap();
        let d: Value = serde_json::from_str(r#"{"a":"x","b":[1,2.5]}"#).unwrap();
        assert_eq!(exact_hash(&c), exact_hash(&d));
        // The limit, as documented: beyond 64 bits serde_json already holds one double for both.
        let e: Value = serde_json::from_str("36893488147419103232").unwrap();
        let f: Value = serde_json::from_str("36893488147419103233").unwrap();
        assert_eq!(exact_hash(&e), exact_hash(&f));
    }

    #[test]
    fn sha256_of_known_inputs() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The example of RFC 8785 section 3.2.2 (also covers number formatting of non-integers).
    #[test]
    fn rfc8785_main_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs_of(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 section 3.2.3: members sort by UTF-16 code units, so U+1F600 (surrogates D83D DE00) sorts
    /// before U+FB33, although its UTF-8 bytes and its code point sort after.
    #[test]
    fn keys_sort_by_utf16_code_units() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                        \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(jcs_of(input), expected);
    }

    #[test]
    fn nested_objects_sort_and_arrays_keep_order() {
        let value =
            json!({"b": [3, {"z": 1, "a": 2}, 1], "a": {"d": null, "c": true}, "B": "upper"});
        assert_eq!(
            to_jcs(&value),
            r#"{"B":"upper","a":{"c":true,"d":null},"b":[3,{"a":2,"z":1},1]}"#
        );
    }

    #[test]
    fn strings_escape_only_what_rfc8785_requires() {
        let value = json!("q\" b\\ s/ \u{8}\u{c}\n\r\t \u{1} \u{1f} \u{7f} é ✓ 😀 <>&'");
        assert_eq!(
            to_jcs(&value),
            "\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \\u0001 \\u001f \u{7f} é ✓ 😀 <>&'\""
        );
    }

    #[test]
    fn integers_print_as_ecmascript_numbers() {
        let value = json!([
            0,
            -1,
            42,
            1_000_000,
            -9_007_199_254_740_991_i64,
            9_007_199_254_740_991_i64
        ]);
        assert_eq!(
            to_jcs(&value),
            "[0,-1,42,1000000,-9007199254740991,9007199254740991]"
        );
        // Beyond 2^53 a JSON number is the nearest double, printed as ECMAScript prints it.
        assert_eq!(
            to_jcs(&json!(9_007_199_254_740_993_i64)),
            "9007199254740992"
        );
        assert_eq!(to_jcs(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(to_jcs(&json!(1e21)), "1e+21");
        assert_eq!(to_jcs(&json!(-0.0)), "0");
        assert_eq!(to_jcs(&json!(5.0)), "5");
    }

    #[test]
    fn whitespace_and_key_order_do_not_change_the_canonical_form() {
        let a = jcs_of("{ \"path\" : \"/tmp/x\",\n \"mode\": [1, 2] }");
        let b = jcs_of(r#"{"mode":[1,2],"path":"/tmp/x"}"#);
        assert_eq!(a, r#"{"mode":[1,2],"path":"/tmp/x"}"#);
        assert_eq!(a, b);
    }

    /// Golden vector computed outside this code: Python `hashlib.sha256(b'{"path":"/home/projects/report.pdf"}')`.
    #[test]
    fn input_hash_golden_vector() {
        let arguments = json!({"path": "/home/projects/report.pdf"});
        assert_eq!(
            to_jcs(&arguments),
            r#"{"path":"/home/projects/report.pdf"}"#
        );
        assert_eq!(input_hash(&arguments), INPUT_HASH_REPORT_PDF);
        let reordered: Value =
            serde_json::from_str("{ \"path\":\n\"/home/projects/report.pdf\" }").unwrap();
        assert_eq!(input_hash(&reordered), INPUT_HASH_REPORT_PDF);
        assert_ne!(
            input_hash(&json!({"path": "/home/projects/report.pdf "})),
            INPUT_HASH_REPORT_PDF
        );
    }

    const INPUT_HASH_REPORT_PDF: &str =
        "a445094a47c78c05fb152168e01ca4361ab1709999a762148252a7e50a314a3d";

    /// The direct writer agrees with serde_jcs on nested values with every kind of number, escapes and keys
    /// that sort differently in UTF-8 and UTF-16.
    #[test]
    fn agrees_with_serde_jcs() {
        let keys = [
            "a",
            "B",
            "",
            "\u{e9}",
            "\u{20ac}",
            "\u{fb33}",
            "\u{1f600}",
            "\u{ffff}",
            "\u{e000}",
            "z\n",
            "10",
            "1",
        ];
        let leaves = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-0.0),
            json!(1.5),
            json!(-2.25e-7),
            json!(1e21),
            json!(123456789.123),
            json!(9_007_199_254_740_992_u64),
            json!(9_007_199_254_740_993_u64),
            json!(-9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("q\" \\ \u{1} \u{7f} \u{1f600}"),
        ];
        let mut values = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            let mut object = serde_json::Map::new();
            for (j, key) in keys.iter().enumerate() {
                let nested = json!({ keys[(i + j) % keys.len()]: leaves[(i + j) % leaves.len()].clone(), "x": [leaf.clone(), {}] });
                object.insert(
                    (*key).to_owned(),
                    if j % 2 == 0 { leaf.clone() } else { nested },
                );
            }
            values.push(Value::Object(object));
            values.push(json!([leaf.clone(), [], [leaf.clone()]]));
        }
        for value in values {
            assert_eq!(
                to_jcs(&value),
                serde_jcs::to_string(&value).unwrap(),
                "{value}"
            );
        }
    }

    /// The string writer escapes every ASCII byte as serde_json does (which is what RFC 8785 requires) and
    /// copies everything else unchanged, at the start, middle and end of a string.
    #[test]
    fn string_writer_agrees_with_serde_json_on_every_ascii_byte() {
        for byte in 0u8..=0x7f {
            let c = char::from(byte);
            for text in [
                c.to_string(),
                format!("ab{c}cd"),
                format!("{c}é{c}{c}😀"),
                format!("\u{20ac}{c}"),
            ] {
                let mut out = Vec::new();
                write_string(&text, &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&text).unwrap(),
                    "{text:?}"
                );
            }
        }
    }

    /// The word test agrees with the byte test for every byte value at every position, with every other byte
    /// of the word both harmless and high (so borrows and UTF-8 bytes are covered).
    #[test]
    fn needs_escape_agrees_with_the_byte_test() {
        let byte_needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for filler in [b'a', 0x20, 0x21, 0x7f, 0x80, 0xe9, 0xff] {
            for position in 0..8 {
                for byte in 0u8..=255 {
                    let mut word = [filler; 8];
                    word[position] = byte;
                    assert_eq!(
                        needs_escape(u64::from_ne_bytes(word)),
                        byte_needs(byte) || byte_needs(filler),
                        "{word:?}"
                    );
                }
            }
        }
    }

    /// `to_jcs` relies on serde_json rejecting non-finite numbers; `arbitrary_precision` would accept them.
    #[test]
    fn serde_json_rejects_numbers_jcs_cannot_write() {
        assert!(serde_json::from_str::<Value>("1e400").is_err());
        assert!(serde_json::from_str::<Value>("[NaN]").is_err());
    }
}
