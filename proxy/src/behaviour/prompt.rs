//! The prompt hash an agent declares: header `Toolgate-Prompt-Hash`, or `_meta["io.toolgate/prompt_hash"]` in
//! the request's params. It is a hash, so it must look like one: 8 to 128 hex digits (any case, answered in
//! lower case). Anything else is refused with a clear message rather than pinned or compared.

use hyper::header::HeaderMap;
use serde_json::Value;

/// The header an agent declares its prompt hash in.
pub const PROMPT_HASH_HEADER: &str = "toolgate-prompt-hash";
/// The `_meta` key an agent declares its prompt hash in.
pub const PROMPT_HASH_META: &str = "io.toolgate/prompt_hash";

const MIN_LEN: usize = 8;
const MAX_LEN: usize = 128;

/// The declared prompt hash (the header first, then `_meta`), validated; `Err` says why it was refused.
pub fn declared_prompt_hash(
    headers: &HeaderMap,
    params: Option<&Value>,
) -> Result<Option<String>, String> {
    let declared = match headers.get(PROMPT_HASH_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| "the Toolgate-Prompt-Hash header is not ASCII".to_owned())?,
        ),
        None => match params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(PROMPT_HASH_META))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => {
                return Err(format!(
                    "_meta[\"{PROMPT_HASH_META}\"] must be a string of hex digits"
                ))
            }
        },
    };
    let Some(declared) = declared.map(str::trim) else {
        return Ok(None);
    };
    if !(MIN_LEN..=MAX_LEN).contains(&declared.len())
        || !declared.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(format!(
            "the declared prompt hash must be {MIN_LEN} to {MAX_LEN} hex digits"
        ));
    }
    Ok(Some(declared.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROMPT_HASH_HEADER, v.parse().unwrap());
        h
    }

    #[test]
    fn the_header_comes_first_then_meta() {
        let params = json!({"_meta": {PROMPT_HASH_META: "BBBBBBBBBBBB"}});
        assert_eq!(
            declared_prompt_hash(&headers("aaaaaaaa"), Some(&params)).unwrap(),
            Some("aaaaaaaa".into())
        );
        assert_eq!(
            declared_prompt_hash(&HeaderMap::new(), Some(&params)).unwrap(),
            Some("bbbbbbbbbbbb".into())
        );
        assert_eq!(
            declared_prompt_hash(&HeaderMap::new(), Some(&json!({}))).unwrap(),
            None
        );
    }

    #[test]
    fn what_is_not_a_hash_is_refused() {
        for bad in [
            "abc",
            "not-hex-at-all",
            &"a".repeat(129),
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            let err = declared_prompt_hash(&headers(bad), None).unwrap_err();
            assert!(err.contains("hex digits"), "{bad}: {err}");
            assert!(!err.contains(bad), "the refusal never echoes the value");
        }
        let err = declared_prompt_hash(
            &HeaderMap::new(),
            Some(&json!({"_meta": {PROMPT_HASH_META: 5}})),
        )
        .unwrap_err();
        assert!(err.contains("must be a string"));
    }
}
