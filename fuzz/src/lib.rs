//! Shared pieces of toolgate's fuzz targets (`fuzz_targets/`, run by `cargo fuzz`; see docs/fuzzing.md):
//! the proxy's parsers compiled from source ([`mcp`]), how a target turns raw bytes into the JSON it scans
//! ([`dlp_input`]), and the independent references the properties are checked against.

pub mod mcp;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Object keys the DLP and classification targets put a fuzzed string under: detectors and the classifier
/// read the key as context (`{"password": "…"}` is judged differently from `{"text": "…"}`).
pub const KEYS: &[&str] = &[
    "text",
    "password",
    "api_key",
    "token",
    "secret",
    "card",
    "iban",
    "ssn",
    "email",
    "path",
    "url",
    "command",
    "content",
    "authorization",
    "private_key",
    "to",
];

/// The value a DLP target scans: with the first byte odd, the rest parsed as JSON (skipped when it is not);
/// with it even, the rest as a string (invalid UTF-8 replaced) either alone or under one of [`KEYS`].
pub fn dlp_input(data: &[u8]) -> Option<Value> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 1 {
        return serde_json::from_slice(rest).ok();
    }
    let text = Value::String(String::from_utf8_lossy(rest).into_owned());
    let pick = usize::from(mode >> 1);
    if pick >= KEYS.len() {
        return Some(text);
    }
    let mut object = serde_json::Map::new();
    object.insert(KEYS[pick].to_owned(), text);
    Some(Value::Object(object))
}

/// Every key that occurs more than once in some object of the JSON text, found independently of the proxy's
/// own check (a set per object). `Err` when serde_json does not accept the text (syntax, nesting beyond its
/// limit, trailing data).
pub fn duplicated_keys(text: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(text);
    AllDuplicates(&mut keys).deserialize(&mut de)?;
    de.end()?;
    Ok(keys)
}

struct AllDuplicates<'k>(&'k mut Vec<String>);

impl<'de> DeserializeSeed<'de> for AllDuplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AllDuplicates<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(AllDuplicates(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(AllDuplicates(self.0))?;
            if !seen.insert(key.clone()) {
                self.0.push(key);
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared as the doubles they denote: RFC 8785 writes every number as
/// ECMAScript prints its double, so `1.0` comes back as `1` and integers beyond 2^53 come back rounded.
pub fn same_json_as_doubles(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json_as_doubles(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| same_json_as_doubles(p, q)))
        }
        _ => a == b,
    }
}

/// Whether `normalised` is what `toolgate_engine::input::normalise_path` promises: absolute, and no empty,
/// `.` or `..` segment (so no `//`, no trailing `/` except the root itself).
pub fn is_normal_path(normalised: &str) -> bool {
    if normalised == "/" {
        return true;
    }
    let Some(rest) = normalised.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|s| !matches!(s, "" | "." | ".."))
}
