//! JSON-RPC 2.0 as MCP uses it: one message per body, parsed once; the error codes toolgate answers with.

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
}

impl RpcError {
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => PARSE_ERROR,
            RpcError::Batch | RpcError::Invalid(_) | RpcError::DuplicateKey(_) => INVALID_REQUEST,
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
        // serde_json keeps the last of duplicate keys; another parser upstream may keep the first. Every message
        // is checked, not only tools/call: `{"method":"tools/call", …, "method":"ping"}` would be judged as a
        // ping here and run as a tool call by a first-wins upstream; a tools/call's name or arguments could
        // likewise mean one tool to toolgate and another to the upstream.
        reject_duplicate_keys(body)?;
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

fn reject_duplicate_keys(body: &[u8]) -> Result<(), RpcError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    NoDuplicates.deserialize(&mut de).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix(DUP_PREFIX) {
            Some(rest) => {
                RpcError::DuplicateKey(rest.split(" at line").next().unwrap_or(rest).to_owned())
            }
            None => RpcError::Parse(msg),
        }
    })
}

const DUP_PREFIX: &str = "duplicate key ";

/// Walks a JSON document and fails on the first object with a repeated key.
struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
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
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if keys.iter().any(|k| *k == key) {
                return Err(serde::de::Error::custom(format!("{DUP_PREFIX}{key}")));
            }
            keys.push(key.into_owned());
            map.next_value_seed(NoDuplicates)?;
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
