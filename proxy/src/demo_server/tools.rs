//! The demo server's tools: their definitions, argument checks and what each one does.

use std::io;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::protocol::ProtocolError;
use super::sandbox::MAX_READ_BYTES;
use super::DemoServer;

const MAX_DELAY_MS: u64 = 60_000;

/// A tool that ran and failed; reported to the caller as a `CallToolResult` with `isError: true`.
/// Paths shown are the caller's own sandbox-relative view (`/a/b`), never the host location.
#[derive(Debug, thiserror::Error)]
pub(super) enum ToolError {
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
    pub(super) fn io(op: &'static str, path: &str, error: &io::Error) -> Self {
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

impl DemoServer {
    pub(super) fn call_tool(&self, params: &Map<String, Value>) -> Result<Value, ProtocolError> {
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

pub(super) fn tool_definitions() -> Value {
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
