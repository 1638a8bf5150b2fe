//! The bundled demo MCP server over stdio: tools act on a sandbox folder or only echo, never on the host.
//!
//! One JSON-RPC 2.0 message per line in, one per line out (MCP's stdio transport); the few log lines go to
//! stderr, because stdout belongs to the protocol. It is deliberately synchronous and single-threaded:
//! requests are answered in arrival order, so `echo`'s `delay_ms` behaves like a slow upstream.
//!
//! Besides tools it serves what toolgate also judges: resources (the sandbox's files as `file://` URIs and a
//! fake credentials file), prompts, completion and logging. Some of that deliberately leaks fake
//! credentials (`deploy.env`, `demo://config/credentials`), so the proxy's redaction can be seen at work.

mod prompts;
mod protocol;
mod resources;
mod sandbox;
mod seed;
#[cfg(test)]
mod tests;
mod tools;

use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use prompts::prompt_definitions;
use protocol::{
    capabilities, error_response, initialize, server_info, set_log_level, skip_rest_of_line,
    stateless_request, write_message, ProtocolError, CACHE_TTL_MS, INSTRUCTIONS, MAX_LINE_BYTES,
    SERVER_NAME, SUPPORTED_VERSIONS,
};
use sandbox::Sandbox;
use tools::tool_definitions;

/// Runs until stdin closes. `sandbox` is the folder all file tools act in (created if missing). Each of
/// the starting files that is missing is written first: `/workspace/readme.txt`, `README.md`, `notes.txt`
/// and `deploy.env` (with fake AWS credentials).
pub fn run(sandbox: &Path) -> io::Result<()> {
    seed::seed(sandbox)?;
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
            "resources/list" => self.list_resources(params)?,
            "resources/templates/list" => self.resource_templates(),
            "resources/read" => self.read_resource(params)?,
            "resources/subscribe" | "resources/unsubscribe" => {
                self.acknowledge_subscription(params)?
            }
            "prompts/list" => prompt_definitions(),
            "prompts/get" => self.get_prompt(params)?,
            "completion/complete" => self.complete(params)?,
            "logging/setLevel" => set_log_level(params)?,
            "server/discover" => json!({
                "supportedVersions": SUPPORTED_VERSIONS,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            }),
            other => return Err(ProtocolError::MethodNotFound(other.to_owned())),
        };
        // 2026-07-28 requires `resultType` on every result and cache hints on discovery, lists and
        // reads; neither field exists in the handshake era, so those results stay as they were.
        let discover = method == "server/discover";
        if let Value::Object(fields) = &mut result {
            if stateless || discover {
                fields.insert("resultType".into(), json!("complete"));
            }
            if let Some((ttl_ms, scope)) = cache_hint(method).filter(|_| stateless || discover) {
                fields.insert("ttlMs".into(), json!(ttl_ms));
                fields.insert("cacheScope".into(), json!(scope));
            }
        }
        Ok(result)
    }
}

/// How long a 2026-07-28 client may reuse a result, and whether shared caches may hold it. The tool,
/// prompt and template lists never change while the process lives; files do, so their list and contents
/// are stale at once, and contents (which can hold credentials) are for the caller alone.
fn cache_hint(method: &str) -> Option<(u64, &'static str)> {
    match method {
        "server/discover" | "tools/list" | "prompts/list" | "resources/templates/list" => {
            Some((CACHE_TTL_MS, "public"))
        }
        "resources/list" => Some((0, "public")),
        "resources/read" => Some((0, "private")),
        _ => None,
    }
}
