//! Arguments that mean one thing to the classifier and another to the upstream: keys that fold to one name,
//! URLs that parsers read as different hosts, paths with percent-escapes an upstream may decode, and paths with
//! control characters or backslashes.

use serde_json::json;

use super::*;

fn class(name: &str, args: serde_json::Value) -> ToolClass {
    classify(name, &args, "/workspace")
}

#[test]
fn keys_folding_to_one_name_with_different_values_are_ambiguous() {
    // The upstream reads `path`; the folded `PATH` is a decoy (serde_json orders `PATH` first).
    let c = class(
        "read_file",
        json!({"PATH": "/workspace/notes.txt", "path": "/etc/passwd"}),
    );
    assert_eq!(c.ambiguous_keys, ["/path"]);
    // Both are still judged, and the one a conventionally written key names is the call's target.
    let values: Vec<&str> = c.targets.iter().map(|t| t.value.as_str()).collect();
    assert_eq!(values, ["/workspace/notes.txt", "/etc/passwd"]);
    assert_eq!(c.target.as_deref(), Some("/etc/passwd"));

    for args in [
        json!({"file_path": "/a", "filePath": "/b"}),
        json!({"to": "boss@example.com", "TO": "outsider@evil.net"}),
        json!({"Command": "ls", "command": "cat /etc/shadow"}),
        json!({"url": "https://docs.rs/", "U-R-L": "http://169.254.169.254/"}),
        // not a target key: still one argument to the upstream and two to a folding reader
        json!({"text": "a", "Text": "b"}),
        // values of any type
        json!({"path": "/a", "PATH": ["/a"]}),
    ] {
        let c = class("frob", args.clone());
        assert_eq!(c.ambiguous_keys.len(), 1, "{args}");
    }
}

#[test]
fn ambiguity_is_found_at_any_depth_and_pointers_are_escaped() {
    let c = class(
        "copy",
        json!({"files": [{"src": "/workspace/a"}, {"Src": "/etc/shadow", "src": "/workspace/b"}]}),
    );
    assert_eq!(c.ambiguous_keys, ["/files/1/src"]);
    let c = class("x", json!({"a/b": {"Path": "/x", "path": "/y"}}));
    assert_eq!(c.ambiguous_keys, ["/a~1b/path"]);
    // The Kelvin sign lower-cases to `k`: `lin\u{212A}` folds to `link`.
    let c = class(
        "x",
        json!({"lin\u{212A}": "/etc/passwd", "link": "/workspace/a"}),
    );
    assert_eq!(c.ambiguous_keys.len(), 1);
}

#[test]
fn keys_folding_alike_with_the_same_value_or_different_names_are_not_ambiguous() {
    for args in [
        json!({"PATH": "/workspace/a", "path": "/workspace/a"}),
        json!({"path": "/workspace/a", "file": "/workspace/b"}),
        json!({"a": {"path": "/x"}, "b": {"PATH": "/y"}}),
        json!({"path": "/workspace/a"}),
        json!([{"path": "/x"}, {"PATH": "/y"}]),
    ] {
        assert!(
            class("read_file", args.clone()).ambiguous_keys.is_empty(),
            "{args}"
        );
    }
}

#[test]
fn a_conventionally_written_key_names_the_target() {
    let c = class(
        "write_file",
        json!({"Path": "/workspace/harmless", "path": "/workspace/.bashrc"}),
    );
    assert_eq!(c.target.as_deref(), Some("/workspace/.bashrc"));
    // Alone, a variant still names the target; array items stand under their array's key.
    let c = class("read_file", json!({"PATH": "/workspace/a"}));
    assert_eq!(c.target.as_deref(), Some("/workspace/a"));
    let c = class(
        "read_file",
        json!({"FILES": ["/workspace/a"], "files": ["/workspace/b"]}),
    );
    assert_eq!(c.target.as_deref(), Some("/workspace/b"));
    let c = class("run", json!({"CMD": "ls", "argv": ["rm", "-rf", "x"]}));
    assert_eq!(c.target.as_deref(), Some("rm -rf x"));
}

#[test]
fn urls_parsers_read_differently_are_marked_wherever_they_are() {
    let ambiguous = |args: serde_json::Value| -> Vec<(String, bool)> {
        class("fetch_url", args)
            .targets
            .into_iter()
            .filter(|t| t.kind == TargetKind::Url)
            .map(|t| (t.value, t.ambiguous))
            .collect()
    };
    // Under a URL key: the value is the WHATWG reading, marked.
    assert_eq!(
        ambiguous(json!({"url": r"http://docs.rs\@evil.net/"})),
        [("http://docs.rs/@evil.net/".to_string(), true)]
    );
    // Under a path key, whitespace and all: a scheme makes it a URL.
    assert_eq!(
        ambiguous(json!({"path": "http://docs\t.rs/"})),
        [("http://docs.rs/".to_string(), true)]
    );
    // Under any key, by its shape.
    assert_eq!(
        ambiguous(json!({"options": {"next": "http://a@docs.rs@evil.net/"}})),
        [("http://evil.net/".to_string(), true)]
    );
    // The same reading spelt plainly elsewhere does not unmark it.
    let both =
        ambiguous(json!({"a": r"http://docs.rs\@evil.net/", "b": "http://docs.rs/@evil.net/"}));
    assert_eq!(both, [("http://docs.rs/@evil.net/".to_string(), true)]);
    assert_eq!(
        ambiguous(json!({"url": "https://docs.rs/x"})),
        [("https://docs.rs/x".to_string(), false)]
    );
}

#[test]
fn the_document_carries_ambiguous_keys_and_urls() {
    let c = class(
        "fetch_url",
        json!({"URL": "https://docs.rs/", "url": r"http://docs.rs\@evil.net/"}),
    );
    let agent = AgentInfo {
        id: "a".into(),
        tenant_id: None,
        roles: vec![],
        claims: json!({}),
        prompt_hash: None,
        run_id: None,
    };
    let session = SessionInfo {
        id: None,
        calls: 0,
        started_at: None,
    };
    let request = RequestInfo {
        method: "tools/call".into(),
        direction: Direction::ClientToServer,
        upstream: "web".into(),
        protocol_version: None,
    };
    let arguments = json!({});
    let input = PolicyInput {
        agent: &agent,
        session: &session,
        request: &request,
        tool: Some(ToolInput {
            name: "fetch_url",
            arguments: Some(&arguments),
            class: &c,
            definition: None,
        }),
        resource: None,
        prompt: None,
        params: None,
        findings: &[],
        behavior: BehaviorInfo::default(),
        response: None,
        now: "2026-11-27T00:00:00Z",
    };
    let doc = input.to_json();
    assert_eq!(doc["tool"]["ambiguous_keys"], json!(["/url"]));
    assert_eq!(
        doc["tool"]["targets"],
        json!([
            {"kind": "url", "key": "/URL", "value": "https://docs.rs/", "ambiguous": false},
            {"kind": "url", "key": "/url", "value": "http://docs.rs/@evil.net/", "ambiguous": true},
        ])
    );
    assert_eq!(
        input.to_value(),
        regorus::Value::from(doc),
        "to_value and to_json agree"
    );
}

#[test]
fn a_resource_uri_parsers_read_differently_is_marked() {
    let marked = |uri: &str| {
        ResourceInput {
            uri,
            target: &resource_target(uri, "/workspace"),
        }
        .ambiguous()
    };
    assert!(marked(r"http://docs.rs\@evil.net/"));
    assert!(marked("https://a@docs.rs@evil.net/x"));
    assert!(!marked("https://docs.rs/x"));
    assert!(!marked("file:///workspace/a"));
    assert!(!marked("demo://notes/1"));
}

#[test]
fn a_percent_escaped_path_is_judged_as_written_and_as_decoded() {
    let paths = |args: serde_json::Value| -> Vec<String> {
        class("read_file", args)
            .targets
            .into_iter()
            .filter(|t| t.kind == TargetKind::Path)
            .map(|t| t.value)
            .collect()
    };
    assert_eq!(
        paths(json!({"path": "/etc/%70asswd"})),
        ["/etc/%70asswd", "/etc/passwd"]
    );
    // Decoded `..` is resolved like any other: the escape cannot hide a climb out of the workspace.
    assert_eq!(
        paths(json!({"path": "notes/%2e%2e/%2E%2E/etc/shadow"})),
        ["/workspace/notes/%2e%2e/%2E%2E/etc/shadow", "/etc/shadow"]
    );
    // By shape, under any key.
    assert_eq!(
        paths(json!({"options": {"next": "/root/%2essh/id_rsa"}})),
        ["/root/%2essh/id_rsa", "/root/.ssh/id_rsa"]
    );
    // A name with an ordinary escape stays where it was; a `%` that escapes nothing is one reading.
    assert_eq!(
        paths(json!({"path": "my%20report.pdf"})),
        ["/workspace/my%20report.pdf", "/workspace/my report.pdf"]
    );
    assert_eq!(paths(json!({"path": "100%.txt"})), ["/workspace/100%.txt"]);
    // Decoded once, as a file: URL is: `%252e` is `%2e`, not `.`.
    assert_eq!(
        paths(json!({"path": "/a/%252e%252e/b"})),
        ["/a/%252e%252e/b", "/a/%2e%2e/b"]
    );
}

#[test]
fn a_path_with_a_control_character_or_a_backslash_is_ambiguous() {
    let marked = |args: serde_json::Value| -> Vec<(String, bool)> {
        class("read_file", args)
            .targets
            .into_iter()
            .filter(|t| t.kind == TargetKind::Path)
            .map(|t| (t.value, t.ambiguous))
            .collect()
    };
    // Cut at NUL by C code, `/etc`; resolved by toolgate, `/workspace/x` (as written and as decoded): marked.
    let nul = marked(json!({"path": "/etc%00/../workspace/x"}));
    assert_eq!(nul, [("/workspace/x".to_owned(), true)]);
    for path in [
        "/workspace/x\u{0}/../../etc/passwd",
        "/workspace/a\nb",
        "/workspace/a\u{7f}",
        "/workspace/a\u{85}b",
        r"..\..\etc\passwd",
        "/workspace/a%5c..%5c..%5cetc",
        "/workspace/a%0ab",
    ] {
        let found = marked(json!({ "path": path }));
        assert!(
            !found.is_empty() && found.iter().all(|(_, a)| *a),
            "{path:?}: {found:?}"
        );
    }
    // Under any key, by shape, and in a file: URI.
    assert!(marked(json!({"options": {"next": "/etc\u{0}x"}}))[0].1);
    assert!(marked(json!({"path": "file:///workspace/a%00b"}))[0].1);
    // Ordinary names are not.
    for path in [
        "/workspace/a b.txt",
        "notes/%2e%2e/x",
        "/workspace/my%20report.pdf",
        "/workspace/ü.txt",
    ] {
        let found = marked(json!({ "path": path }));
        assert!(found.iter().all(|(_, a)| !*a), "{path:?}: {found:?}");
    }
}
