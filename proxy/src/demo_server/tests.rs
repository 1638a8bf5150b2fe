//! Unit tests for the demo server: lines in, replies out, sandbox effects on disk.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::sandbox::MAX_READ_BYTES;
use super::*;

mod prompts;
mod resources;

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

/// The params as a 2025-era client sends them, and with the 2026-07-28 `_meta`; `true` marks the latter.
fn in_both_eras(params: Value) -> [(bool, Value); 2] {
    let mut stateless = params.clone();
    stateless["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    [(false, params), (true, stateless)]
}

/// The result of one request, after checking the era's `resultType` marker.
fn result_in_era(sandbox: &Path, stateless: bool, method: &str, params: Value) -> Value {
    let reply = only_reply(sandbox, request(1, method, params));
    let result = reply["result"].clone();
    assert!(result.is_object(), "{method}: {reply}");
    let expected = if stateless {
        json!("complete")
    } else {
        Value::Null
    };
    assert_eq!(result["resultType"], expected, "{method}: {reply}");
    result
}

/// The JSON-RPC error code of one request's reply.
fn error_code(sandbox: &Path, method: &str, params: Value) -> Value {
    let reply = only_reply(sandbox, request(1, method, params));
    assert!(reply.get("result").is_none(), "{method}: {reply}");
    reply["error"]["code"].clone()
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
        assert_eq!(reply["result"]["capabilities"], capabilities());
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
    let reply = only_reply(&sandbox, request(11, "sampling/createMessage", json!({})));
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
        assert_eq!(result["capabilities"], capabilities());
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

#[test]
fn capabilities_announce_resources_prompts_completion_and_logging() {
    let (_dir, sandbox) = sandbox();
    let reply = only_reply(
        &sandbox,
        request(1, "initialize", json!({"protocolVersion": "2025-11-25"})),
    );
    let capabilities = &reply["result"]["capabilities"];
    assert_eq!(
        capabilities["resources"],
        json!({"subscribe": true, "listChanged": true})
    );
    assert_eq!(capabilities["prompts"], json!({"listChanged": false}));
    assert_eq!(capabilities["completions"], json!({}));
    assert_eq!(capabilities["logging"], json!({}));
    assert_eq!(capabilities["tools"], json!({"listChanged": false}));
}

#[test]
fn ping_and_set_level_answer_empty_in_both_eras() {
    let (_dir, sandbox) = sandbox();
    for (stateless, params) in in_both_eras(json!({})) {
        let result = result_in_era(&sandbox, stateless, "ping", params);
        assert_eq!(
            result.as_object().map(|r| r.len()),
            Some(usize::from(stateless))
        );
    }
    for level in ["debug", "warning", "emergency"] {
        for (stateless, params) in in_both_eras(json!({ "level": level })) {
            let result = result_in_era(&sandbox, stateless, "logging/setLevel", params);
            assert!(result.get("ttlMs").is_none(), "{result}");
        }
    }
    for params in [json!({"level": "loud"}), json!({"level": 3}), json!({})] {
        assert_eq!(
            error_code(&sandbox, "logging/setLevel", params.clone()),
            -32602,
            "{params}"
        );
    }
}
