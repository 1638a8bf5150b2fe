//! JSON-RPC framing and MCP protocol eras for the demo server: one message per line, errors, versions.

use std::io::{self, BufRead, Write};

use serde_json::{json, Map, Value};

pub(super) const SERVER_NAME: &str = "toolgate-demo";
/// Newest first; the handshake era answers `initialize`, 2026-07-28 is the stateless era.
pub(super) const SUPPORTED_VERSIONS: [&str; 4] =
    ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];
/// What `initialize` falls back to: a handshake client must not be handed a handshake-free revision.
pub(super) const NEWEST_HANDSHAKE_VERSION: &str = "2025-11-25";
pub(super) const STATELESS_VERSION: &str = "2026-07-28";
/// Where a 2026-07-28 request names its revision.
pub(super) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// A line is buffered whole before parsing; the cap keeps a runaway writer from exhausting memory.
pub(super) const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// 2026-07-28 cache hint for discovery and the tool list, which never change while the process lives.
pub(super) const CACHE_TTL_MS: u64 = 300_000;
pub(super) const INSTRUCTIONS: &str =
    "Demo server bundled with toolgate. File tools and file:// resources act only inside a sandbox folder; \
run_shell, fetch_url and send_email only describe what they would do. Some sandbox files and \
demo://config/credentials hold fake credentials, so toolgate's redaction can be seen.";

/// Failures that become JSON-RPC errors. Tool failures are not here: they are `isError` results.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProtocolError {
    #[error("parse error: the line is not valid JSON")]
    Parse,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("method not found: {0}")]
    MethodNotFound(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("unsupported protocol version")]
    UnsupportedVersion { requested: String },
    /// No such resource, or one outside the sandbox: the two are not told apart, so a caller cannot probe
    /// the host's files through `resources/read`.
    #[error("resource not found")]
    ResourceNotFound { uri: String },
    /// The resource exists but cannot be served (too large, not UTF-8 text).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProtocolError {
    fn code(&self) -> i64 {
        match self {
            Self::Parse => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) => -32602,
            // 2026-07-28 UnsupportedProtocolVersionError.
            Self::UnsupportedVersion { .. } => -32022,
            // MCP's "resource not found".
            Self::ResourceNotFound { .. } => -32002,
            Self::Internal(_) => -32603,
        }
    }

    fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        match self {
            Self::UnsupportedVersion { requested } => {
                error.insert(
                    "data".into(),
                    json!({"supported": SUPPORTED_VERSIONS, "requested": requested}),
                );
            }
            Self::ResourceNotFound { uri } => {
                error.insert("data".into(), json!({ "uri": uri }));
            }
            _ => {}
        }
        Value::Object(error)
    }
}

pub(super) fn skip_rest_of_line<R: BufRead>(input: &mut R) -> io::Result<()> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            input.consume(end + 1);
            return Ok(());
        }
        let len = buffer.len();
        input.consume(len);
    }
}

pub(super) fn write_message<W: Write>(output: &mut W, message: &Value) -> io::Result<()> {
    // serde_json escapes control characters inside strings, so one message is always one line.
    let mut bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    bytes.push(b'\n');
    output.write_all(&bytes)?;
    output.flush()
}

pub(super) fn error_response(id: Value, error: &ProtocolError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

/// Whether the request speaks the stateless 2026-07-28 revision, read from its `_meta`.
pub(super) fn stateless_request(params: &Map<String, Value>) -> Result<bool, ProtocolError> {
    let meta = match params.get("_meta") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(meta)) => meta,
        Some(_) => {
            return Err(ProtocolError::InvalidParams(
                "`_meta` must be an object".into(),
            ))
        }
    };
    match meta.get(META_PROTOCOL_VERSION) {
        None => Ok(false),
        Some(Value::String(version)) if version == STATELESS_VERSION => Ok(true),
        Some(Value::String(version)) if SUPPORTED_VERSIONS.contains(&version.as_str()) => Ok(false),
        Some(Value::String(version)) => Err(ProtocolError::UnsupportedVersion {
            requested: version.clone(),
        }),
        Some(_) => Err(ProtocolError::InvalidParams(format!(
            "`_meta.{META_PROTOCOL_VERSION}` must be a string"
        ))),
    }
}

pub(super) fn initialize(params: &Map<String, Value>) -> Result<Value, ProtocolError> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ProtocolError::InvalidParams("`protocolVersion` must be a string".into()))?;
    let version = SUPPORTED_VERSIONS
        .into_iter()
        .find(|supported| *supported == requested)
        .unwrap_or(NEWEST_HANDSHAKE_VERSION);
    Ok(json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    }))
}

pub(super) fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": false},
        // Files come and go in the sandbox, so the resource list can change; the prompts are fixed.
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": false},
        "completions": {},
        "logging": {},
    })
}

/// RFC 5424 severities, the values `logging/setLevel` accepts.
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// `logging/setLevel`: a valid level is acknowledged. The demo sends no log notifications, so there is no
/// threshold to keep.
pub(super) fn set_log_level(params: &Map<String, Value>) -> Result<Value, ProtocolError> {
    match params.get("level").and_then(Value::as_str) {
        Some(level) if LOG_LEVELS.contains(&level) => Ok(json!({})),
        _ => Err(ProtocolError::InvalidParams(format!(
            "`level` must be one of {}",
            LOG_LEVELS.join(", ")
        ))),
    }
}

/// A required string parameter of a request.
pub(super) fn string_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, ProtocolError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ProtocolError::InvalidParams(format!("`{name}` must be a string")))
}

/// An optional object parameter of a request; absent or `null` reads as empty.
pub(super) fn object_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, ProtocolError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(ProtocolError::InvalidParams(format!(
            "`{name}` must be an object"
        ))),
    }
}

pub(super) fn server_info() -> Value {
    json!({"name": SERVER_NAME, "title": "toolgate demo server", "version": env!("CARGO_PKG_VERSION")})
}
