//! toolgate's own Rego builtins, which regorus 0.14 lacks: hashes, HMACs and unverified JWT decoding.
//!
//! One table serves both evaluators. The interpreter (`policy test`, `policy eval`) gets them as regorus
//! extensions (`Engine::add_extension`); the VM (requests) gets them as registered host-await builtins:
//! the compiler turns each call into a `HostAwait` instruction, the VM suspends there, and
//! [`call`] computes the value the evaluator resumes it with. An extension error aborts the evaluation on
//! both paths (the call is denied with `toolgate.error`), so a policy cannot mistake a bad argument for a
//! false condition.

use base64::Engine as _;
use hmac::Mac;
use regorus::{Engine, Value};

use super::PolicyError;
use crate::input::json_to_value;

/// A builtin: its Rego name, its number of arguments, and its body.
struct Builtin {
    name: &'static str,
    nargs: u8,
    body: fn(&[Value]) -> Result<Value, String>,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "crypto.sha256",
        nargs: 1,
        body: |a| Ok(hex_digest::<sha2::Sha256>(string(a, 0)?)),
    },
    Builtin {
        name: "crypto.sha1",
        nargs: 1,
        body: |a| Ok(hex_digest::<sha1::Sha1>(string(a, 0)?)),
    },
    Builtin {
        name: "crypto.md5",
        nargs: 1,
        body: |a| Ok(hex_digest::<md5::Md5>(string(a, 0)?)),
    },
    Builtin {
        name: "crypto.hmac.sha256",
        nargs: 2,
        body: |a| hmac_hex::<hmac::Hmac<sha2::Sha256>>(string(a, 0)?, string(a, 1)?),
    },
    Builtin {
        name: "crypto.hmac.sha512",
        nargs: 2,
        body: |a| hmac_hex::<hmac::Hmac<sha2::Sha512>>(string(a, 0)?, string(a, 1)?),
    },
    Builtin {
        name: "crypto.hmac.equal",
        nargs: 2,
        body: |a| Ok(Value::from(constant_time_eq(string(a, 0)?, string(a, 1)?))),
    },
    Builtin {
        name: "io.jwt.decode",
        nargs: 1,
        body: |a| jwt_decode(string(a, 0)?),
    },
];

/// Names of toolgate's builtins, for documentation and tests.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

/// Adds every builtin to an interpreter.
pub(super) fn register(engine: &mut Engine) -> Result<(), PolicyError> {
    for builtin in BUILTINS {
        let body = builtin.body;
        let name = builtin.name;
        engine
            .add_extension(
                name.to_string(),
                builtin.nargs,
                Box::new(move |args: Vec<Value>| {
                    body(&args).map_err(|message| anyhow::anyhow!("{name}: {message}"))
                }),
            )
            .map_err(|err| PolicyError::Compile(format!("registering {name}: {err}")))?;
    }
    Ok(())
}

/// `(name, number of arguments)` of every builtin, for the VM compiler's host-await registration.
pub(super) fn host_await_builtins() -> Vec<(&'static str, usize)> {
    BUILTINS
        .iter()
        .map(|b| (b.name, usize::from(b.nargs)))
        .collect()
}

/// Runs the builtin a suspended VM asks for: `identifier` is its name, `arguments` the array of its inputs.
pub(super) fn call(identifier: &Value, arguments: &Value) -> Result<Value, PolicyError> {
    let fail = |message: String| PolicyError::Eval(message);
    let name = identifier
        .as_string()
        .map_err(|_| fail("host call without a builtin name".into()))?;
    let builtin = BUILTINS
        .iter()
        .find(|b| b.name == name.as_ref())
        .ok_or_else(|| fail(format!("unknown host builtin {name}")))?;
    let args = arguments
        .as_array()
        .map_err(|_| fail(format!("{name}: arguments are not an array")))?
        .to_vec();
    if args.len() != usize::from(builtin.nargs) {
        return Err(fail(format!(
            "{name}: expects {} arguments, got {}",
            builtin.nargs,
            args.len()
        )));
    }
    (builtin.body)(&args).map_err(|message| fail(format!("{name}: {message}")))
}

fn string(args: &[Value], at: usize) -> Result<&str, String> {
    match args.get(at) {
        Some(Value::String(s)) => Ok(s.as_ref()),
        Some(other) => Err(format!(
            "argument {} must be a string, got {}",
            at + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", at + 1)),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

fn hex_digest<D: sha2::Digest>(text: &str) -> Value {
    Value::from(hex::encode(D::digest(text.as_bytes())))
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(text: &str, key: &str) -> Result<Value, String> {
    let mut mac = <M as Mac>::new_from_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(text.as_bytes());
    Ok(Value::from(hex::encode(mac.finalize().into_bytes())))
}

/// Equal strings of equal length take the same time whatever their content, as OPA's `crypto.hmac.equal`.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `[header, payload, signature_hex]` of a compact JWS, as OPA's `io.jwt.decode`: nothing is verified, so
/// a policy must never trust these claims for authorisation (toolgate's own JWT check does that).
fn jwt_decode(token: &str) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT (three base64url parts separated by dots)".into());
    };
    let decode = |part: &str, what: &str| -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| format!("the {what} is not base64url: {e}"))
    };
    let json = |part: &str, what: &str| -> Result<Value, String> {
        let bytes = decode(part, what)?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("the {what} is not JSON: {e}"))?;
        if !json.is_object() {
            return Err(format!("the {what} is not a JSON object"));
        }
        Ok(json_to_value(&json))
    };
    let header = json(header, "header")?;
    let payload = json(payload, "payload")?;
    let signature = hex::encode(decode(signature, "signature")?);
    Ok(Value::from(vec![header, payload, Value::from(signature)]))
}
