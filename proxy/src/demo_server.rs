//! The bundled demo MCP server over stdio: tools act on a sandbox folder or only echo, never on the host.
//!
//! One JSON-RPC 2.0 message per line in, one per line out (MCP's stdio transport); the few log lines go to
//! stderr, because stdout belongs to the protocol. It is deliberately synchronous and single-threaded:
//! requests are answered in arrival order, so `echo`'s `delay_ms` behaves like a slow upstream.

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

const SERVER_NAME: &str = "toolgate-demo";
/// Newest first; the handshake era answers `initialize`, 2026-07-28 is the stateless era.
const SUPPORTED_VERSIONS: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];
/// What `initialize` falls back to: a handshake client must not be handed a handshake-free revision.
const NEWEST_HANDSHAKE_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
/// Where a 2026-07-28 request names its revision.
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// A line is buffered whole before parsing; the cap keeps a runaway writer from exhausting memory.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
const MAX_READ_BYTES: u64 = 1024 * 1024;
const MAX_DELAY_MS: u64 = 60_000;
/// 2026-07-28 cache hint for discovery and the tool list, which never change while the process lives.
const CACHE_TTL_MS: u64 = 300_000;
const INSTRUCTIONS: &str =
    "Demo server bundled with toolgate. File tools act only inside a sandbox folder; \
run_shell, fetch_url and send_email only describe what they would do.";

/// Failures that become JSON-RPC errors. Tool failures are not here: they are `isError` results.
#[derive(Debug, thiserror::Error)]
enum ProtocolError {
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
        }
    }

    fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        if let Self::UnsupportedVersion { requested } = self {
            error.insert(
                "data".into(),
                json!({"supported": SUPPORTED_VERSIONS, "requested": requested}),
            );
        }
        Value::Object(error)
    }
}

/// A tool that ran and failed; reported to the caller as a `CallToolResult` with `isError: true`.
/// Paths shown are the caller's own sandbox-relative view (`/a/b`), never the host location.
#[derive(Debug, thiserror::Error)]
enum ToolError {
    #[error("argument `{0}`: {1}")]
    Argument(&'static str, &'static str),
    #[error("path `{0}` escapes the sandbox")]
    Escapes(String),
    #[error("path `{0}` passes through a broken symbolic link")]
    BrokenLink(String),
    #[error("`{0}` not found")]
    NotFound(String),
    #[error("`{0}` is a directory")]
    IsDirectory(String),
    #[error("`{0}` is not a directory")]
    NotDirectory(String),
    #[error("`{0}` is larger than {max} bytes", max = MAX_READ_BYTES)]
    TooLarge(String),
    #[error("`{0}` is not UTF-8 text")]
    NotText(String),
    #[error("cannot {op} `{path}`: {kind}")]
    Io {
        op: &'static str,
        path: String,
        kind: io::ErrorKind,
    },
}

impl ToolError {
    fn io(op: &'static str, path: &str, error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::NotFound => Self::NotFound(path.to_owned()),
            kind => Self::Io {
                op,
                path: path.to_owned(),
                kind,
            },
        }
    }
}

/// The file a fresh sandbox starts with, so a first `read_file` has something to read.
const WELCOME_PATH: &str = "workspace/readme.txt";
const WELCOME_TEXT: &str = "Hello from the toolgate demo sandbox.\nThis file lives in the demo server's sandbox folder, never on the host.\n";

/// Runs until stdin closes. `sandbox` is the folder all file tools act in (created if missing, with a
/// `/workspace/readme.txt` to read).
pub fn run(sandbox: &Path) -> io::Result<()> {
    let welcome = sandbox.join(WELCOME_PATH);
    if !welcome.exists() {
        if let Some(parent) = welcome.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&welcome, WELCOME_TEXT)?;
    }
    eprintln!(
        "{SERVER_NAME}: serving MCP over stdio; file tools confined to {}",
        sandbox.display()
    );
    serve(sandbox, io::stdin().lock(), io::stdout().lock())
}

/// The same over any reader/writer, for tests.
pub fn serve<R: BufRead, W: Write>(sandbox: &Path, mut input: R, mut output: W) -> io::Result<()> {
    let server = DemoServer {
        sandbox: Sandbox::open(sandbox)?,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input)?;
            let error = ProtocolError::InvalidRequest("message longer than 8 MiB");
            write_message(&mut output, &error_response(Value::Null, &error))?;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(reply) = server.handle_line(&line) {
            write_message(&mut output, &reply)?;
        }
    }
}

fn skip_rest_of_line<R: BufRead>(input: &mut R) -> io::Result<()> {
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

fn write_message<W: Write>(output: &mut W, message: &Value) -> io::Result<()> {
    // serde_json escapes control characters inside strings, so one message is always one line.
    let mut bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    bytes.push(b'\n');
    output.write_all(&bytes)?;
    output.flush()
}

fn error_response(id: Value, error: &ProtocolError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

struct DemoServer {
    sandbox: Sandbox,
}

impl DemoServer {
    /// One incoming line to at most one reply; notifications and client responses get none.
    fn handle_line(&self, line: &[u8]) -> Option<Value> {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            return Some(error_response(Value::Null, &ProtocolError::Parse));
        };
        // Arrays land here too: MCP removed JSON-RPC batching in 2025-06-18.
        let Value::Object(message) = message else {
            let error = ProtocolError::InvalidRequest("expected one JSON-RPC object");
            return Some(error_response(Value::Null, &error));
        };
        let id = match message.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
            Some(_) => {
                let error = ProtocolError::InvalidRequest("`id` must be a string or a number");
                return Some(error_response(Value::Null, &error));
            }
        };
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // This server never sends requests, so a response from the client has nothing to match.
            if message.contains_key("result") || message.contains_key("error") {
                return None;
            }
            let error = ProtocolError::InvalidRequest("missing `method`");
            return Some(error_response(id.unwrap_or(Value::Null), &error));
        };
        // Every notification, known or not, needs no action from a server without state.
        let id = id?;
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            let error = ProtocolError::InvalidRequest("`jsonrpc` must be \"2.0\"");
            return Some(error_response(id, &error));
        }
        let no_params = Map::new();
        let params = match message.get("params") {
            None | Some(Value::Null) => &no_params,
            Some(Value::Object(params)) => params,
            Some(_) => {
                let error = ProtocolError::InvalidParams("`params` must be an object".into());
                return Some(error_response(id, &error));
            }
        };
        Some(match self.dispatch(method, params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => error_response(id, &error),
        })
    }

    fn dispatch(&self, method: &str, params: &Map<String, Value>) -> Result<Value, ProtocolError> {
        let stateless = stateless_request(params)?;
        let mut result = match method {
            "initialize" => initialize(params)?,
            "ping" => json!({}),
            "tools/list" => json!({"tools": tool_definitions()}),
            "tools/call" => self.call_tool(params)?,
            "server/discover" => json!({
                "supportedVersions": SUPPORTED_VERSIONS,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            }),
            other => return Err(ProtocolError::MethodNotFound(other.to_owned())),
        };
        // 2026-07-28 requires `resultType` on every result and cache hints on discovery and lists;
        // neither field exists in the handshake era, so those results stay as they were.
        let discover = method == "server/discover";
        if let Value::Object(fields) = &mut result {
            if stateless || discover {
                fields.insert("resultType".into(), json!("complete"));
            }
            if discover || (stateless && method == "tools/list") {
                fields.insert("ttlMs".into(), json!(CACHE_TTL_MS));
                fields.insert("cacheScope".into(), json!("public"));
            }
        }
        Ok(result)
    }

    fn call_tool(&self, params: &Map<String, Value>) -> Result<Value, ProtocolError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ProtocolError::InvalidParams("`name` must be a string".into()))?;
        let no_arguments = Map::new();
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => &no_arguments,
            Some(Value::Object(arguments)) => arguments,
            Some(_) => {
                return Err(ProtocolError::InvalidParams(
                    "`arguments` must be an object".into(),
                ))
            }
        };
        let outcome = self
            .run_tool(name, arguments)
            .ok_or_else(|| ProtocolError::InvalidParams(format!("unknown tool `{name}`")))?;
        let (text, is_error) = match outcome {
            Ok(text) => (text, false),
            Err(error) => (error.to_string(), true),
        };
        Ok(json!({"content": [{"type": "text", "text": text}], "isError": is_error}))
    }

    /// `None` for a tool this server does not have.
    fn run_tool(&self, name: &str, args: &Map<String, Value>) -> Option<Result<String, ToolError>> {
        let outcome = match name {
            "read_file" => string_arg(args, "path").and_then(|path| self.sandbox.read(path)),
            "write_file" => string_arg(args, "path").and_then(|path| {
                let content = string_arg(args, "content")?;
                self.sandbox.write(path, content)
            }),
            "list_dir" => string_arg(args, "path").and_then(|path| self.sandbox.list(path)),
            "run_shell" => {
                string_arg(args, "command").map(|command| format!("demo: would run: {command}"))
            }
            "fetch_url" => string_arg(args, "url").map(|url| format!("demo: would fetch {url}")),
            "send_email" => string_arg(args, "to").and_then(|to| {
                string_arg(args, "subject")?;
                string_arg(args, "body")?;
                Ok(format!("demo: would send email to {to}"))
            }),
            "echo" => echo(args),
            _ => return None,
        };
        Some(outcome)
    }
}

/// Whether the request speaks the stateless 2026-07-28 revision, read from its `_meta`.
fn stateless_request(params: &Map<String, Value>) -> Result<bool, ProtocolError> {
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

fn initialize(params: &Map<String, Value>) -> Result<Value, ProtocolError> {
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

fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

fn server_info() -> Value {
    json!({"name": SERVER_NAME, "title": "toolgate demo server", "version": env!("CARGO_PKG_VERSION")})
}

fn tool_definitions() -> Value {
    let path = json!({"type": "string", "description": "Path inside the sandbox; absolute paths are taken relative to the sandbox root."});
    json!([
        {
            "name": "read_file",
            "description": "Read a UTF-8 text file (up to 1 MiB) from the sandbox.",
            "inputSchema": {"type": "object", "properties": {"path": path}, "required": ["path"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        },
        {
            "name": "write_file",
            "description": "Write a text file in the sandbox, creating parent folders; replaces an existing file.",
            "inputSchema": {
                "type": "object",
                "properties": {"path": path, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "openWorldHint": false},
        },
        {
            "name": "list_dir",
            "description": "List a sandbox folder, one entry per line, folders ending in `/`.",
            "inputSchema": {"type": "object", "properties": {"path": path}, "required": ["path"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        },
        {
            "name": "run_shell",
            "description": "Demo only: describes the command it would run; never executes anything.",
            "inputSchema": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "openWorldHint": true},
        },
        {
            "name": "fetch_url",
            "description": "Demo only: describes the URL it would fetch; never makes a request.",
            "inputSchema": {
                "type": "object",
                "properties": {"url": {"type": "string"}},
                "required": ["url"],
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": true},
        },
        {
            "name": "send_email",
            "description": "Demo only: describes the email it would send; never sends anything.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "to": {"type": "string"},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
                "required": ["to", "subject", "body"],
            },
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "openWorldHint": true},
        },
        {
            "name": "echo",
            "description": "Return the text, optionally after waiting delay_ms milliseconds (at most 60000).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
                },
                "required": ["text"],
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        },
    ])
}

fn string_arg<'a>(args: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, ToolError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or(ToolError::Argument(name, "required, and must be a string"))
}

fn echo(args: &Map<String, Value>) -> Result<String, ToolError> {
    let text = string_arg(args, "text")?;
    let delay_ms = match args.get("delay_ms") {
        None | Some(Value::Null) => 0,
        Some(value) => {
            value
                .as_u64()
                .filter(|ms| *ms <= MAX_DELAY_MS)
                .ok_or(ToolError::Argument(
                    "delay_ms",
                    "must be a whole number of milliseconds from 0 to 60000",
                ))?
        }
    };
    if delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    Ok(text.to_owned())
}

/// The folder the file tools may touch. Every path is confined twice: lexically (no `..` above the
/// root) and on disk (no symbolic link leading out of the canonical root).
struct Sandbox {
    root: PathBuf,
}

/// A caller path resolved to a host path inside the sandbox, with the caller's view for messages.
struct Resolved {
    host: PathBuf,
    shown: String,
}

impl Sandbox {
    fn open(path: &Path) -> io::Result<Self> {
        fs::create_dir_all(path)?;
        // Canonical, so that a sandbox reached through a symlink (e.g. /tmp on macOS) still
        // contains the canonical targets of links inside it.
        Ok(Self {
            root: fs::canonicalize(path)?,
        })
    }

    fn resolve(&self, raw: &str) -> Result<Resolved, ToolError> {
        if raw.contains('\0') {
            return Err(ToolError::Argument("path", "must not contain a NUL byte"));
        }
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                // An absolute path names a place under the sandbox root, not on the host.
                Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(ToolError::Escapes(raw.to_owned()));
                    }
                }
                Component::Normal(part) => parts.push(part),
            }
        }
        let shown = format!(
            "/{}",
            parts
                .iter()
                .map(|part| part.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        );
        // Walk the existing part of the path one component at a time, so a link anywhere along it
        // is checked, not only in the last position.
        let mut host = self.root.clone();
        let mut remaining = parts.into_iter();
        while let Some(part) = remaining.next() {
            let next = host.join(part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = fs::canonicalize(&next)
                        .map_err(|_| ToolError::BrokenLink(shown.clone()))?;
                    if !target.starts_with(&self.root) {
                        return Err(ToolError::Escapes(raw.to_owned()));
                    }
                    host = target;
                }
                Ok(_) => host = next,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    // Nothing on disk from here on, so nothing left that could redirect the path.
                    host = next;
                    host.extend(remaining.by_ref());
                    break;
                }
                Err(error) => return Err(ToolError::io("open", &shown, &error)),
            }
        }
        Ok(Resolved { host, shown })
    }

    fn read(&self, raw: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        let meta = fs::metadata(&host).map_err(|e| ToolError::io("read", &shown, &e))?;
        if meta.is_dir() {
            return Err(ToolError::IsDirectory(shown));
        }
        let file = fs::File::open(&host).map_err(|e| ToolError::io("read", &shown, &e))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ToolError::io("read", &shown, &e))?;
        if bytes.len() as u64 > MAX_READ_BYTES {
            return Err(ToolError::TooLarge(shown));
        }
        String::from_utf8(bytes).map_err(|_| ToolError::NotText(shown))
    }

    fn write(&self, raw: &str, content: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        if host.is_dir() {
            return Err(ToolError::IsDirectory(shown));
        }
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ToolError::io("create folders for", &shown, &e))?;
        }
        fs::write(&host, content).map_err(|e| ToolError::io("write", &shown, &e))?;
        Ok(format!("wrote {} bytes to {shown}", content.len()))
    }

    fn list(&self, raw: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        let meta = fs::metadata(&host).map_err(|e| ToolError::io("list", &shown, &e))?;
        if !meta.is_dir() {
            return Err(ToolError::NotDirectory(shown));
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&host).map_err(|e| ToolError::io("list", &shown, &e))? {
            let entry = entry.map_err(|e| ToolError::io("list", &shown, &e))?;
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        Ok(names.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TOOL_NAMES: [&str; 7] = [
        "read_file",
        "write_file",
        "list_dir",
        "run_shell",
        "fetch_url",
        "send_email",
        "echo",
    ];

    /// Feeds the lines to `serve` and returns every reply, parsed.
    fn exchange(sandbox: &Path, lines: &[String]) -> Vec<Value> {
        let mut input = lines.join("\n");
        input.push('\n');
        let mut output = Vec::new();
        serve(sandbox, input.as_bytes(), &mut output).expect("in-memory I/O cannot fail");
        let text = String::from_utf8(output).expect("replies are UTF-8");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each reply line is one JSON value"))
            .collect()
    }

    fn request(id: i64, method: &str, params: Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    }

    fn only_reply(sandbox: &Path, line: String) -> Value {
        let mut replies = exchange(sandbox, &[line]);
        assert_eq!(replies.len(), 1, "expected exactly one reply: {replies:?}");
        replies.remove(0)
    }

    /// Calls a tool and returns (text, isError).
    fn call(sandbox: &Path, tool: &str, arguments: Value) -> (String, bool) {
        let reply = only_reply(
            sandbox,
            request(
                1,
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
            ),
        );
        let result = &reply["result"];
        assert_eq!(result["content"][0]["type"], "text", "reply: {reply}");
        let text = result["content"][0]["text"].as_str().expect("text content");
        let is_error = result["isError"].as_bool().expect("isError is a bool");
        (text.to_owned(), is_error)
    }

    fn sandbox() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = dir.path().join("sandbox");
        fs::create_dir_all(&sandbox).expect("create sandbox");
        (dir, sandbox)
    }

    #[test]
    fn initialize_echoes_each_supported_version() {
        let (_dir, sandbox) = sandbox();
        for version in SUPPORTED_VERSIONS {
            let reply = only_reply(
                &sandbox,
                request(
                    1,
                    "initialize",
                    json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
                ),
            );
            assert_eq!(reply["jsonrpc"], "2.0");
            assert_eq!(reply["id"], 1);
            assert_eq!(reply["result"]["protocolVersion"], version);
            assert_eq!(
                reply["result"]["capabilities"],
                json!({"tools": {"listChanged": false}})
            );
            assert_eq!(reply["result"]["serverInfo"]["name"], "toolgate-demo");
        }
    }

    #[test]
    fn initialize_falls_back_to_newest_2025_version() {
        let (_dir, sandbox) = sandbox();
        for version in ["2024-11-05", "2099-01-01", ""] {
            let reply = only_reply(
                &sandbox,
                request(2, "initialize", json!({"protocolVersion": version})),
            );
            assert_eq!(reply["result"]["protocolVersion"], "2025-11-25");
        }
    }

    #[test]
    fn initialize_without_protocol_version_is_invalid_params() {
        let (_dir, sandbox) = sandbox();
        let reply = only_reply(
            &sandbox,
            request(3, "initialize", json!({"capabilities": {}})),
        );
        assert_eq!(reply["error"]["code"], -32602);
        assert_eq!(reply["id"], 3);
        let reply = only_reply(&sandbox, request(4, "tools/list", json!([1, 2])));
        assert_eq!(reply["error"]["code"], -32602);
    }

    #[test]
    fn tools_list_names_every_tool_with_an_input_schema() {
        let (_dir, sandbox) = sandbox();
        let reply = only_reply(&sandbox, request(5, "tools/list", json!({})));
        let tools = reply["result"]["tools"].as_array().expect("tools array");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, TOOL_NAMES);
        for tool in tools {
            assert_eq!(tool["inputSchema"]["type"], "object", "tool {tool}");
            for required in tool["inputSchema"]["required"]
                .as_array()
                .expect("required")
            {
                let field = required.as_str().expect("field name");
                assert!(
                    tool["inputSchema"]["properties"].get(field).is_some(),
                    "tool {tool}"
                );
            }
        }
        // A handshake-era result carries no 2026-07-28 fields.
        assert!(reply["result"].get("resultType").is_none());
    }

    #[test]
    fn ping_answers_empty_object() {
        let (_dir, sandbox) = sandbox();
        let reply = only_reply(
            &sandbox,
            r#"{"jsonrpc":"2.0","id":"p-1","method":"ping"}"#.into(),
        );
        assert_eq!(reply, json!({"jsonrpc": "2.0", "id": "p-1", "result": {}}));
    }

    #[test]
    fn notifications_and_client_responses_get_no_answer() {
        let (_dir, sandbox) = sandbox();
        let replies = exchange(
            &sandbox,
            &[
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#
                    .into(),
                r#"{"jsonrpc":"2.0","method":"no/such/notification"}"#.into(),
                r#"{"jsonrpc":"2.0","id":99,"result":{}}"#.into(),
                String::new(),
                request(7, "ping", json!({})),
            ],
        );
        assert_eq!(
            replies,
            vec![json!({"jsonrpc": "2.0", "id": 7, "result": {}})]
        );
    }

    #[test]
    fn malformed_json_gets_parse_error_with_null_id_and_serving_continues() {
        let (_dir, sandbox) = sandbox();
        let replies = exchange(
            &sandbox,
            &[
                r#"{"jsonrpc":"2.0","id":1,"method":"#.into(),
                request(2, "ping", json!({})),
            ],
        );
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0]["error"]["code"], -32700);
        assert_eq!(replies[0]["id"], Value::Null);
        assert_eq!(replies[1]["id"], 2);
        assert_eq!(replies[1]["result"], json!({}));
    }

    #[test]
    fn invalid_utf8_is_a_parse_error() {
        let (_dir, sandbox) = sandbox();
        let mut output = Vec::new();
        serve(&sandbox, &b"{\"a\":\"\xff\"}\n"[..], &mut output).expect("serve");
        let reply: Value = serde_json::from_slice(&output).expect("one reply");
        assert_eq!(reply["error"]["code"], -32700);
    }

    #[test]
    fn batches_and_bad_ids_are_invalid_requests() {
        let (_dir, sandbox) = sandbox();
        let replies = exchange(
            &sandbox,
            &[
                format!("[{}]", request(1, "ping", json!({}))),
                r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#.into(),
                r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#.into(),
            ],
        );
        let codes: Vec<&Value> = replies.iter().map(|r| &r["error"]["code"]).collect();
        assert_eq!(codes, [-32600, -32600, -32600]);
        assert_eq!(replies[0]["id"], Value::Null);
        assert_eq!(replies[2]["id"], 3);
    }

    #[test]
    fn oversized_line_is_rejected_and_the_next_line_is_served() {
        let (_dir, sandbox) = sandbox();
        let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        let replies = exchange(&sandbox, &[huge, request(9, "ping", json!({}))]);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0]["error"]["code"], -32600);
        assert_eq!(replies[1]["id"], 9);
    }

    #[test]
    fn unknown_method_is_method_not_found() {
        let (_dir, sandbox) = sandbox();
        let reply = only_reply(&sandbox, request(11, "resources/list", json!({})));
        assert_eq!(reply["id"], 11);
        assert_eq!(reply["error"]["code"], -32601);
    }

    #[test]
    fn server_discover_reports_versions_capabilities_and_identity() {
        let (_dir, sandbox) = sandbox();
        let params = json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }});
        for params in [params, json!({})] {
            let reply = only_reply(&sandbox, request(12, "server/discover", params));
            let result = &reply["result"];
            assert_eq!(result["resultType"], "complete");
            assert_eq!(result["supportedVersions"], json!(SUPPORTED_VERSIONS));
            assert_eq!(
                result["capabilities"],
                json!({"tools": {"listChanged": false}})
            );
            assert_eq!(result["serverInfo"]["name"], "toolgate-demo");
            assert_eq!(result["ttlMs"], CACHE_TTL_MS);
            assert_eq!(result["cacheScope"], "public");
        }
    }

    #[test]
    fn stateless_requests_get_result_type_and_unknown_meta_is_ignored() {
        let (_dir, sandbox) = sandbox();
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "progressToken": "tok",
            "example.com/unknown": {"nested": true},
        });
        let reply = only_reply(&sandbox, request(13, "tools/list", json!({"_meta": meta})));
        assert_eq!(reply["result"]["resultType"], "complete");
        assert_eq!(reply["result"]["ttlMs"], CACHE_TTL_MS);
        assert_eq!(reply["result"]["tools"].as_array().map(Vec::len), Some(7));
        let reply = only_reply(
            &sandbox,
            request(
                14,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}),
            ),
        );
        assert_eq!(reply["result"]["resultType"], "complete");
        assert_eq!(reply["result"]["content"][0]["text"], "hi");
        // Only unknown keys in a handshake-era request: answered as usual.
        let reply = only_reply(
            &sandbox,
            request(
                15,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "yo"}, "_meta": {"progressToken": 5, "x.y/z": 1}}),
            ),
        );
        assert_eq!(reply["result"]["content"][0]["text"], "yo");
        assert!(reply["result"].get("resultType").is_none());
    }

    #[test]
    fn unsupported_meta_version_is_rejected_with_supported_list() {
        let (_dir, sandbox) = sandbox();
        let params = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2030-01-01"}});
        let reply = only_reply(&sandbox, request(16, "tools/list", params));
        assert_eq!(reply["error"]["code"], -32022);
        assert_eq!(reply["error"]["data"]["requested"], "2030-01-01");
        assert_eq!(
            reply["error"]["data"]["supported"],
            json!(SUPPORTED_VERSIONS)
        );
    }

    #[test]
    fn write_read_and_list_stay_inside_the_sandbox() {
        let (_dir, sandbox) = sandbox();
        let (text, is_error) = call(
            &sandbox,
            "write_file",
            json!({"path": "/workspace/notes/a.txt", "content": "hello"}),
        );
        assert!(!is_error, "{text}");
        assert_eq!(text, "wrote 5 bytes to /workspace/notes/a.txt");
        assert_eq!(
            fs::read_to_string(sandbox.join("workspace/notes/a.txt")).expect("written file"),
            "hello"
        );
        let (text, is_error) = call(
            &sandbox,
            "read_file",
            json!({"path": "workspace/./notes/a.txt"}),
        );
        assert_eq!((text.as_str(), is_error), ("hello", false));
        let (text, is_error) = call(
            &sandbox,
            "read_file",
            json!({"path": "/workspace/x/../notes/a.txt"}),
        );
        assert_eq!((text.as_str(), is_error), ("hello", false));
        let (text, is_error) = call(&sandbox, "list_dir", json!({"path": "/workspace/notes"}));
        assert_eq!((text.as_str(), is_error), ("a.txt", false));
        let (text, is_error) = call(&sandbox, "list_dir", json!({"path": "/"}));
        assert_eq!((text.as_str(), is_error), ("workspace/", false));
    }

    #[test]
    fn parent_dir_escapes_are_rejected() {
        let (dir, sandbox) = sandbox();
        fs::write(dir.path().join("outside.txt"), "secret").expect("outside file");
        for path in [
            "../../etc/passwd",
            "../outside.txt",
            "/workspace/../../outside.txt",
            "/..",
        ] {
            let (text, is_error) = call(&sandbox, "read_file", json!({"path": path}));
            assert!(is_error, "{path}: {text}");
            assert!(text.contains("escapes the sandbox"), "{path}: {text}");
        }
        let (text, is_error) = call(
            &sandbox,
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        );
        assert!(is_error && text.contains("escapes"), "{text}");
        assert!(!dir.path().join("escaped.txt").exists());
        let (text, is_error) = call(&sandbox, "list_dir", json!({"path": "a/../../"}));
        assert!(is_error && text.contains("escapes"), "{text}");
    }

    #[test]
    fn absolute_host_path_maps_into_the_sandbox_and_is_not_found() {
        let (_dir, sandbox) = sandbox();
        let (text, is_error) = call(&sandbox, "read_file", json!({"path": "/etc/passwd"}));
        assert!(is_error);
        assert_eq!(text, "`/etc/passwd` not found");
        fs::create_dir_all(sandbox.join("etc")).expect("mkdir");
        fs::write(sandbox.join("etc/passwd"), "sandboxed").expect("write");
        let (text, is_error) = call(&sandbox, "read_file", json!({"path": "/etc/passwd"}));
        assert_eq!((text.as_str(), is_error), ("sandboxed", false));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_out_of_the_sandbox() {
        use std::os::unix::fs::symlink;
        let (dir, sandbox) = sandbox();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).expect("outside dir");
        fs::write(outside.join("secret.txt"), "TOP-SECRET").expect("secret");
        symlink(&outside, sandbox.join("dirlink")).expect("dir link");
        symlink(outside.join("secret.txt"), sandbox.join("filelink")).expect("file link");
        symlink(outside.join("missing.txt"), sandbox.join("dangling")).expect("dangling link");

        for (tool, args) in [
            ("read_file", json!({"path": "dirlink/secret.txt"})),
            ("read_file", json!({"path": "/filelink"})),
            ("list_dir", json!({"path": "dirlink"})),
            (
                "write_file",
                json!({"path": "dirlink/new.txt", "content": "x"}),
            ),
            (
                "write_file",
                json!({"path": "filelink", "content": "overwritten"}),
            ),
            (
                "write_file",
                json!({"path": "dirlink/deep/new.txt", "content": "x"}),
            ),
        ] {
            let (text, is_error) = call(&sandbox, tool, args.clone());
            assert!(is_error, "{tool} {args}: {text}");
            assert!(
                text.contains("escapes the sandbox"),
                "{tool} {args}: {text}"
            );
            assert!(!text.contains("TOP-SECRET"), "{tool} {args}: {text}");
        }
        let (text, is_error) = call(
            &sandbox,
            "write_file",
            json!({"path": "dangling", "content": "x"}),
        );
        assert!(is_error && text.contains("broken symbolic link"), "{text}");
        assert!(!outside.join("missing.txt").exists());
        assert!(!outside.join("new.txt").exists());
        assert!(!outside.join("deep").exists());
        assert_eq!(
            fs::read_to_string(outside.join("secret.txt")).expect("secret"),
            "TOP-SECRET"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_within_the_sandbox_work() {
        use std::os::unix::fs::symlink;
        let (_dir, sandbox) = sandbox();
        fs::create_dir_all(sandbox.join("real")).expect("mkdir");
        fs::write(sandbox.join("real/a.txt"), "inside").expect("write");
        symlink(sandbox.join("real"), sandbox.join("alias")).expect("link");
        let (text, is_error) = call(&sandbox, "read_file", json!({"path": "/alias/a.txt"}));
        assert_eq!((text.as_str(), is_error), ("inside", false));
    }

    #[test]
    fn file_tool_failures_are_error_results() {
        let (_dir, sandbox) = sandbox();
        fs::create_dir_all(sandbox.join("d")).expect("mkdir");
        fs::write(sandbox.join("f.txt"), "x").expect("write");
        fs::write(
            sandbox.join("big.txt"),
            vec![b'a'; MAX_READ_BYTES as usize + 1],
        )
        .expect("write");
        fs::write(sandbox.join("bin"), [0xffu8, 0xfe]).expect("write");
        for (tool, args, expected) in [
            ("read_file", json!({"path": "d"}), "`/d` is a directory"),
            (
                "read_file",
                json!({"path": "big.txt"}),
                "`/big.txt` is larger than 1048576 bytes",
            ),
            (
                "read_file",
                json!({"path": "bin"}),
                "`/bin` is not UTF-8 text",
            ),
            (
                "list_dir",
                json!({"path": "f.txt"}),
                "`/f.txt` is not a directory",
            ),
            ("list_dir", json!({"path": "nope"}), "`/nope` not found"),
            (
                "write_file",
                json!({"path": "d", "content": "x"}),
                "`/d` is a directory",
            ),
            (
                "read_file",
                json!({}),
                "argument `path`: required, and must be a string",
            ),
            (
                "write_file",
                json!({"path": "a"}),
                "argument `content`: required, and must be a string",
            ),
        ] {
            let (text, is_error) = call(&sandbox, tool, args);
            assert!(is_error, "{tool}: {text}");
            assert_eq!(text, expected);
        }
    }

    #[test]
    fn side_effect_tools_only_describe_what_they_would_do() {
        let (_dir, sandbox) = sandbox();
        let marker = sandbox.join("pwned");
        let command = format!("touch {}", marker.display());
        let (text, is_error) = call(&sandbox, "run_shell", json!({"command": command}));
        assert_eq!(
            (text, is_error),
            (format!("demo: would run: {command}"), false)
        );
        assert!(!marker.exists(), "run_shell must never execute");
        let (text, is_error) = call(
            &sandbox,
            "fetch_url",
            json!({"url": "http://127.0.0.1:9/x"}),
        );
        assert_eq!(
            (text.as_str(), is_error),
            ("demo: would fetch http://127.0.0.1:9/x", false)
        );
        let (text, is_error) = call(
            &sandbox,
            "send_email",
            json!({"to": "a@example.com", "subject": "s", "body": "b"}),
        );
        assert_eq!(
            (text.as_str(), is_error),
            ("demo: would send email to a@example.com", false)
        );
        let (_, is_error) = call(&sandbox, "send_email", json!({"to": "a@example.com"}));
        assert!(is_error);
    }

    #[test]
    fn echo_returns_text_after_the_delay() {
        let (_dir, sandbox) = sandbox();
        let started = Instant::now();
        let (text, is_error) = call(&sandbox, "echo", json!({"text": "slow", "delay_ms": 120}));
        assert_eq!((text.as_str(), is_error), ("slow", false));
        assert!(started.elapsed() >= Duration::from_millis(120));
        for delay in [json!(60_001), json!(-1), json!(1.5), json!("10")] {
            let (text, is_error) = call(&sandbox, "echo", json!({"text": "t", "delay_ms": delay}));
            assert!(is_error, "{delay}: {text}");
            assert!(text.starts_with("argument `delay_ms`"), "{text}");
        }
    }

    #[test]
    fn unknown_tool_and_bad_call_params_are_invalid_params() {
        let (_dir, sandbox) = sandbox();
        for params in [
            json!({"name": "rm_rf", "arguments": {}}),
            json!({"arguments": {}}),
            json!({"name": "echo", "arguments": "text"}),
        ] {
            let reply = only_reply(&sandbox, request(20, "tools/call", params.clone()));
            assert_eq!(reply["error"]["code"], -32602, "{params}");
        }
    }

    #[test]
    fn missing_sandbox_is_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = dir.path().join("not/yet/here");
        let (text, is_error) = call(&sandbox, "list_dir", json!({"path": "/"}));
        assert_eq!((text.as_str(), is_error), ("", false));
        assert!(sandbox.is_dir());
    }
}
