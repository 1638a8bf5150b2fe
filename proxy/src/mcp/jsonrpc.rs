//! JSON-RPC 2.0 as MCP uses it: one message per body, its structure checked in one linear pass, then parsed;
//! the error codes toolgate answers with.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A policy denial (docs/mcp.md): `denied by policy <policy_id>: <reason>`.
pub const POLICY_DENIED: i64 = -31001;
/// An escalation still pending after the hold time: `escalation pending <id>: <reason>`.
pub const ESCALATION_PENDING: i64 = -31002;
/// The upstream could not be reached (connection refused, child process down).
pub const UPSTREAM_UNAVAILABLE: i64 = -31003;
/// The upstream did not answer within its timeout.
pub const UPSTREAM_TIMEOUT: i64 = -31004;
/// The audit log could not record the decision, so the call was refused (fail closed).
pub const AUDIT_UNAVAILABLE: i64 = -31005;
/// The upstream's answer was blocked by the policy's `result_decision`.
pub const RESULT_BLOCKED: i64 = -31006;
/// A forwarded HTTP header does not say what the body says, or carries what it must not (SEP-2243's code).
pub const HEADER_MISMATCH: i64 = -32001;

/// What kind of JSON-RPC message a body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A request: has `method` and `id`.
    Request { id: Value, method: String },
    /// A notification: has `method`, no `id`.
    Notification { method: String },
    /// A response from the client to a server request: `id` and `result` or `error`.
    Response { id: Value },
}

/// One parsed JSON-RPC message. The raw bytes are kept so passthrough forwards exactly what the agent sent.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub value: Value,
}

/// Why a body is not one acceptable JSON-RPC message; each maps to one JSON-RPC error.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RpcError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("batch requests are not supported: send one JSON-RPC message per request")]
    Batch,
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error("invalid request: duplicate key {0:?}: keys must be unique")]
    DuplicateKey(String),
    #[error("invalid request: the message nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("invalid request: the message has more than {MAX_KEYS} object keys")]
    TooManyKeys,
    #[error("invalid request: an object key is longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
}

impl RpcError {
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => PARSE_ERROR,
            RpcError::Batch
            | RpcError::Invalid(_)
            | RpcError::DuplicateKey(_)
            | RpcError::TooDeep
            | RpcError::TooManyKeys
            | RpcError::KeyTooLong => INVALID_REQUEST,
        }
    }
}

impl Message {
    /// Parses one message. A top-level array (a batch) is refused: MCP removed batching in 2025-06-18 and a
    /// batch would let one body smuggle several tool calls past a per-call decision.
    pub fn parse(body: &[u8]) -> Result<Message, RpcError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(RpcError::Batch);
        }
        // serde_json keeps the last of duplicate keys; another parser upstream may keep the first. Every message
        // is checked, not only tools/call: `{"method":"tools/call", …, "method":"ping"}` would be judged as a
        // ping here and run as a tool call by a first-wins upstream; a tools/call's name or arguments could
        // likewise mean one tool to toolgate and another to the upstream. Checked before the document is
        // built, so a body past the limits costs one linear walk and nothing more.
        check_structure(body)?;
        let value: Value =
            serde_json::from_slice(body).map_err(|e| RpcError::Parse(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or(RpcError::Invalid("the body is not a JSON object"))?;
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(RpcError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let id = obj.get("id").cloned();
        if let Some(id) = &id {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return Err(RpcError::Invalid("\"id\" must be a string or an integer"));
            }
        }
        let kind = match (obj.get("method"), id) {
            (Some(Value::String(m)), Some(id)) => Kind::Request {
                id,
                method: m.clone(),
            },
            (Some(Value::String(m)), None) => Kind::Notification { method: m.clone() },
            (Some(_), _) => return Err(RpcError::Invalid("\"method\" must be a string")),
            (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
                Kind::Response { id }
            }
            (None, _) => {
                return Err(RpcError::Invalid(
                    "neither a request, a notification nor a response",
                ))
            }
        };
        Ok(Message { kind, value })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&Value> {
        match &self.kind {
            Kind::Request { id, .. } | Kind::Response { id } => Some(id),
            Kind::Notification { .. } => None,
        }
    }

    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// The protocol version the message itself declares (stateless era: `params._meta`).
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.params()?
            .get("_meta")?
            .get(super::META_PROTOCOL_VERSION)?
            .as_str()
    }
}

/// A JSON-RPC error response echoing `id` (null when the request's id is unknown).
pub fn error_response(
    id: Option<&Value>,
    code: i64,
    message: impl Into<String>,
    data: Option<Value>,
) -> Value {
    let mut error = json!({ "code": code, "message": message.into() });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error })
}

/// A JSON-RPC success response.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// The structure every message must fit (docs/mcp.md, "Structure limits"): generous for any MCP traffic, tight enough
/// that one body cannot cost more than a linear walk. Nesting matches the classifier's `MAX_DEPTH`, so the
/// arguments of a call that passes here are never too deep to judge.
pub const MAX_DEPTH: usize = 64;
/// Object keys in the whole message (each object's keys count towards it).
pub const MAX_KEYS: usize = 100_000;
/// Bytes of one object key (a key is a name; PATH_MAX on Linux is 4096).
pub const MAX_KEY_BYTES: usize = 4096;

/// Walks the message once, in time linear in its size: each object's keys go into a hash set (a repeated key
/// is refused) and the walk stops at the first limit crossed.
fn check_structure(body: &[u8]) -> Result<(), RpcError> {
    let mut budget = Budget {
        keys: 0,
        exceeded: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Walk {
        depth: 0,
        budget: &mut budget,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (walked, budget.exceeded) {
        (_, Some(refusal)) => Err(refusal),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(RpcError::Parse(e.to_string())),
    }
}

/// What the walk has counted so far, and the refusal that stopped it.
struct Budget {
    keys: usize,
    exceeded: Option<RpcError>,
}

impl Budget {
    /// Records why the walk stops; the deserializer error that carries the stop is then ignored.
    fn refuse<E: serde::de::Error>(&mut self, refusal: RpcError) -> E {
        let error = E::custom(&refusal);
        self.exceeded = Some(refusal);
        error
    }
}

/// One value of the walk, `depth` containers below the message.
struct Walk<'b> {
    depth: usize,
    budget: &'b mut Budget,
}

impl Walk<'_> {
    fn child(&mut self) -> Walk<'_> {
        Walk {
            depth: self.depth + 1,
            budget: self.budget,
        }
    }

    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.budget.refuse(RpcError::TooDeep));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
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
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter::<A::Error>()?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter::<A::Error>()?;
        let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            self.budget.keys += 1;
            if self.budget.keys > MAX_KEYS {
                return Err(self.budget.refuse(RpcError::TooManyKeys));
            }
            if key.len() > MAX_KEY_BYTES {
                return Err(self.budget.refuse(RpcError::KeyTooLong));
            }
            if keys.contains(&key) {
                return Err(self.budget.refuse(RpcError::DuplicateKey(key.into_owned())));
            }
            keys.insert(key);
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Request {
                id: json!(7),
                method: "tools/list".into()
            }
        );
        let m =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Notification {
                method: "notifications/initialized".into()
            }
        );
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(m.kind, Kind::Response { id: json!("a") });
    }

    #[test]
    fn refuses_bad_bodies_precisely() {
        assert_eq!(Message::parse(b"  [{}]").unwrap_err(), RpcError::Batch);
        assert!(matches!(
            Message::parse(b"{not json").unwrap_err(),
            RpcError::Parse(_)
        ));
        assert_eq!(
            Message::parse(b"{not json").unwrap_err().code(),
            PARSE_ERROR
        );
        assert!(matches!(
            Message::parse(b"42").unwrap_err(),
            RpcError::Invalid(_)
        ));
        assert!(matches!(
            Message::parse(br#"{"id":1,"method":"x"}"#).unwrap_err(),
            RpcError::Invalid(_)
        ));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#).unwrap_err(),
            RpcError::Invalid(_)
        ));
    }

    #[test]
    fn duplicate_keys_are_refused_in_every_message() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"run_shell","arguments":{}}}"#;
        assert_eq!(
            Message::parse(body).unwrap_err(),
            RpcError::DuplicateKey("name".into())
        );
        let nested = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[{"p":1,"p":2}]}}}"#;
        assert_eq!(
            Message::parse(nested).unwrap_err(),
            RpcError::DuplicateKey("p".into())
        );
        // The method itself smuggled past the policy: judged as a ping by a last-wins parser.
        let smuggled = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_shell","arguments":{}},"method":"ping"}"#;
        assert_eq!(
            Message::parse(smuggled).unwrap_err(),
            RpcError::DuplicateKey("method".into())
        );
        let fine = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":{"name":1}}}}"#;
        assert!(
            Message::parse(fine).is_ok(),
            "the same key in different objects is fine"
        );
    }

    /// A tools/call whose arguments hold `keys` distinct keys in one object.
    fn wide(keys: usize) -> Vec<u8> {
        let mut body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"#
                .to_vec();
        for i in 0..keys {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(format!(r#""k{i}":0"#).as_bytes());
        }
        body.extend_from_slice(b"}}}");
        body
    }

    /// A message `levels` containers deep: the message, its params, then nested arrays.
    fn deep(levels: usize) -> Vec<u8> {
        let arrays = levels - 2;
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}{}}}}}"#,
            "[".repeat(arrays),
            "]".repeat(arrays)
        )
        .into_bytes()
    }

    #[test]
    fn many_distinct_keys_pass_and_too_many_are_refused() {
        // 60,000 keys took seconds with the quadratic duplicate check; a hash set makes it one pass.
        let m = Message::parse(&wide(60_000)).unwrap();
        assert_eq!(
            m.params().unwrap()["arguments"].as_object().unwrap().len(),
            60_000
        );
        // The envelope's own keys count too (jsonrpc, id, method, params, name, arguments).
        assert!(Message::parse(&wide(MAX_KEYS - 6)).is_ok());
        assert_eq!(
            Message::parse(&wide(MAX_KEYS - 5)).unwrap_err(),
            RpcError::TooManyKeys
        );
        let refused = Message::parse(&wide(200_000)).unwrap_err();
        assert_eq!(refused, RpcError::TooManyKeys);
        assert_eq!(refused.code(), INVALID_REQUEST);
        // A repeated key is still found among many.
        let mut body = wide(50_000);
        let end = body.len() - 3;
        body.splice(end..end, br#","k49999":1"#.iter().copied());
        assert_eq!(
            Message::parse(&body).unwrap_err(),
            RpcError::DuplicateKey("k49999".into())
        );
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(Message::parse(&deep(MAX_DEPTH)).is_ok());
        let refused = Message::parse(&deep(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(refused, RpcError::TooDeep);
        assert_eq!(refused.code(), INVALID_REQUEST);
        // Far past serde_json's own recursion limit (128): still our refusal, not a parse error.
        assert_eq!(
            Message::parse(&deep(10_000)).unwrap_err(),
            RpcError::TooDeep
        );
    }

    #[test]
    fn long_keys_are_refused() {
        let key = "k".repeat(MAX_KEY_BYTES);
        let fits = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"{key}":1}}}}"#);
        assert!(Message::parse(fits.as_bytes()).is_ok());
        let long = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"{key}k":1}}}}"#);
        assert_eq!(
            Message::parse(long.as_bytes()).unwrap_err(),
            RpcError::KeyTooLong
        );
    }

    #[test]
    fn trailing_bytes_are_a_parse_error() {
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#).unwrap_err(),
            RpcError::Parse(_)
        ));
    }

    #[test]
    fn reads_the_stateless_protocol_version() {
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(m.meta_protocol_version(), Some("2026-07-28"));
    }

    #[test]
    fn error_response_echoes_the_id() {
        let v = error_response(
            Some(&json!("r1")),
            POLICY_DENIED,
            "denied by policy p: r",
            None,
        );
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"r1","error":{"code":-31001,"message":"denied by policy p: r"}})
        );
    }
}
