use regorus::Value;
use serde_json::json;

use super::*;
use crate::dlp::{Finding, Severity};

#[test]
fn path_traversal_is_resolved_and_never_climbs_above_root() {
    assert_eq!(
        normalise_path("/home/projects/../../etc/passwd", "/"),
        "/etc/passwd"
    );
    assert_eq!(
        normalise_path("/../../../etc/shadow", "/workspace"),
        "/etc/shadow"
    );
    assert_eq!(normalise_path("/workspace/./a/./b", "/"), "/workspace/a/b");
    assert_eq!(normalise_path("..", "/"), "/");
}

#[test]
fn relative_paths_resolve_against_the_base() {
    assert_eq!(
        normalise_path("notes.txt", "/workspace"),
        "/workspace/notes.txt"
    );
    assert_eq!(normalise_path("../etc/passwd", "/workspace"), "/etc/passwd");
    assert_eq!(normalise_path("a/b", "/workspace/"), "/workspace/a/b");
    assert_eq!(
        normalise_path("~/.ssh/id_rsa", "/home/u"),
        "/home/u/~/.ssh/id_rsa"
    );
    assert_eq!(normalise_path("x", ""), "/x");
}

#[test]
fn duplicate_and_trailing_slashes_are_removed() {
    assert_eq!(normalise_path("//etc///passwd", "/"), "/etc/passwd");
    assert_eq!(normalise_path("/workspace/dir/", "/"), "/workspace/dir");
    assert_eq!(normalise_path("/", "/"), "/");
    assert_eq!(normalise_path("", "/tmp"), "/tmp");
}

#[test]
fn urls_lose_case_default_port_userinfo_and_dot_segments() {
    assert_eq!(
        normalise_url("  HTTPS://User:Secret@API.Example.COM:443/a/../b/./c?q=1 "),
        "https://api.example.com/b/c?q=1"
    );
    assert_eq!(
        normalise_url("http://example.com:80"),
        "http://example.com/"
    );
    assert_eq!(
        normalise_url("http://example.com:8080/x"),
        "http://example.com:8080/x"
    );
    assert_eq!(
        normalise_url("custom://Host.Example/p"),
        "custom://host.example/p"
    );
    assert_eq!(normalise_url(" not a url "), "not a url");
    assert_eq!(normalise_url("example.com/path"), "example.com/path");
}

#[test]
fn userinfo_never_survives_normalisation() {
    let n = normalise_url("http://admin:hunter2@good.example@evil.example/");
    assert!(!n.contains("hunter2"), "{n}");
    assert!(!n.contains("admin"), "{n}");
    assert_eq!(n, "http://evil.example/");
}

#[test]
fn resource_targets_are_paths_for_file_uris_and_normalised_urls_otherwise() {
    let cases = [
        ("file:///etc/passwd", "/etc/passwd"),
        ("FILE:///workspace/a/../../etc/shadow", "/etc/shadow"),
        ("file://localhost/etc/hosts", "/etc/hosts"),
        ("file:/etc/hosts", "/etc/hosts"),
        // Decoded once: `%2e%2e` is `..` (then resolved), `%252e` stays `%2e`.
        ("file:///workspace/%2e%2e/etc/passwd", "/etc/passwd"),
        ("file:///workspace/%252e%252e/x", "/workspace/%2e%2e/x"),
        ("file:///workspace/a%20b.txt?x=1#frag", "/workspace/a b.txt"),
        // Not hex: left as written.
        ("file:///workspace/100%+x", "/workspace/100%+x"),
        // Another host: read as a server that strips the scheme would, relative to the workdir.
        ("file://etc/passwd", "/workspace/etc/passwd"),
        (
            "HTTPS://User:pw@Docs.RS:443/a/../regorus",
            "https://docs.rs/regorus",
        ),
        ("db://Main/table", "db://main/table"),
        ("ui://widget", "ui://widget"),
    ];
    for (uri, target) in cases {
        assert_eq!(resource_target(uri, "/workspace"), target, "{uri}");
    }
}

fn class(name: &str, args: serde_json::Value) -> ToolClass {
    classify(name, &args, "/workspace")
}

/// (kind, key, value) of every target.
fn listed(class: &ToolClass) -> Vec<(&'static str, &str, &str)> {
    class
        .targets
        .iter()
        .map(|t| (t.kind.as_str(), t.key.as_str(), t.value.as_str()))
        .collect()
}

#[test]
fn demo_tools_are_classified() {
    let cases = [
        (
            "read_file",
            json!({"path": "notes/../report.txt"}),
            Action::Read,
            Some("/workspace/report.txt"),
        ),
        (
            "write_file",
            json!({"path": "/tmp/out.txt", "content": "hi"}),
            Action::Write,
            Some("/tmp/out.txt"),
        ),
        (
            "list_dir",
            json!({"path": "/home/projects/"}),
            Action::Read,
            Some("/home/projects"),
        ),
        (
            "run_shell",
            json!({"command": " ls -la "}),
            Action::Execute,
            Some("ls -la"),
        ),
        (
            "fetch_url",
            json!({"url": "HTTPS://Docs.RS/regorus"}),
            Action::Network,
            Some("https://docs.rs/regorus"),
        ),
        (
            "send_email",
            json!({"to": "ops@example.com", "subject": "s", "body": "b"}),
            Action::Send,
            Some("ops@example.com"),
        ),
        ("echo", json!({"text": "hello"}), Action::Unknown, None),
    ];
    for (name, args, action, target) in cases {
        let got = class(name, args);
        assert_eq!(got.action, action, "{name}");
        assert_eq!(got.target.as_deref(), target, "{name}");
        assert!(!got.truncated, "{name}");
        match target {
            Some(t) => assert_eq!(
                got.targets
                    .iter()
                    .map(|t| t.value.as_str())
                    .collect::<Vec<_>>(),
                [t],
                "{name}"
            ),
            None => assert!(got.targets.is_empty(), "{name}"),
        }
    }
}

#[test]
fn classification_edge_cases() {
    // The most dangerous word wins.
    assert_eq!(class("read_and_delete", json!({})).action, Action::Delete);
    // camelCase names and folded argument keys.
    let c = class("deleteFile", json!({"File_Path": "/workspace/a"}));
    assert_eq!(
        (c.action, c.target.as_deref()),
        (Action::Delete, Some("/workspace/a"))
    );
    // A read-ish name with a URL target is a network action.
    let c = class("get_page", json!({"url": "http://Example.com/a"}));
    assert_eq!(
        (c.action, c.target.as_deref()),
        (Action::Network, Some("http://example.com/a"))
    );
    // ...but a URL that is only text (an echo of a link) does not make the call a fetch.
    assert_eq!(
        class("echo", json!({"text": "https://example.com"})).action,
        Action::Unknown
    );
    // A file:// URL given as a path is the absolute path, not a relative one below the workdir.
    assert_eq!(
        class("read_file", json!({"path": "file:///etc/passwd"}))
            .target
            .as_deref(),
        Some("/etc/passwd")
    );
    // argv commands; several recipients are several targets, the first is the target.
    let c = class("exec", json!({"cmd": ["rm", "-rf", "/"]}));
    assert_eq!(c.target.as_deref(), Some("rm -rf /"));
    assert_eq!(
        listed(&c),
        [("command", "/cmd", "rm -rf /"), ("path", "/cmd/2", "/")]
    );
    let c = class("send_message", json!({"recipients": ["a@x", "b@y"]}));
    assert_eq!(c.target.as_deref(), Some("a@x"));
    assert_eq!(
        listed(&c),
        [
            ("address", "/recipients/0", "a@x"),
            ("address", "/recipients/1", "b@y")
        ]
    );
    // Arguments that are not an object are still searched; non-string values name nothing.
    let c = class("read_file", json!(["/etc/passwd"]));
    assert_eq!(c.target.as_deref(), Some("/etc/passwd"));
    assert_eq!(listed(&c), [("path", "/0", "/etc/passwd")]);
    assert_eq!(class("read_file", json!({"path": 7})).target, None);
    assert_eq!(class("read_file", json!({"path": "  "})).targets, []);
    assert_eq!(Action::Network.as_str(), "network");
}

#[test]
fn a_move_lists_its_source_and_its_destination() {
    let c = class(
        "move_file",
        json!({"source": "/workspace/a", "destination": "/etc/cron.d/x"}),
    );
    assert_eq!(c.action, Action::Write);
    // serde_json keeps keys sorted: document order is key order.
    assert_eq!(
        listed(&c),
        [
            ("path", "/destination", "/etc/cron.d/x"),
            ("path", "/source", "/workspace/a")
        ]
    );
    assert_eq!(c.target.as_deref(), Some("/etc/cron.d/x"));

    let c = class("rename", json!({"from": "a.txt", "to": "../../etc/passwd"}));
    // A relative `to` may be a recipient or a path: it is judged as both.
    assert_eq!(
        listed(&c),
        [
            ("path", "/from", "/workspace/a.txt"),
            ("address", "/to", "../../etc/passwd"),
            ("path", "/to", "/etc/passwd")
        ]
    );
    assert_eq!(c.target.as_deref(), Some("/workspace/a.txt"));
    let c = class("rename", json!({"from": "a.txt", "to": "/etc/passwd"}));
    assert_eq!(
        listed(&c),
        [
            ("path", "/from", "/workspace/a.txt"),
            ("path", "/to", "/etc/passwd")
        ]
    );
    for (name, args) in [
        ("copy", json!({"src": "/workspace/a", "dest": "/root/b"})),
        ("copy", json!({"src": "/workspace/a", "dst": "/root/b"})),
        (
            "rename",
            json!({"old_path": "/workspace/a", "new_path": "/root/b"}),
        ),
        ("link", json!({"target": "/workspace/a", "link": "/root/b"})),
        (
            "export",
            json!({"input_file": "/workspace/a", "output": "/root/b"}),
        ),
    ] {
        let c = class(name, args.clone());
        let values: Vec<&str> = c.targets.iter().map(|t| t.value.as_str()).collect();
        assert!(values.contains(&"/workspace/a"), "{args}: {values:?}");
        assert!(values.contains(&"/root/b"), "{args}: {values:?}");
    }
}

#[test]
fn keys_that_differ_only_by_case_are_both_judged() {
    let c = class(
        "read_file",
        json!({"path": "/workspace/ok", "PATH": "/etc/shadow"}),
    );
    assert_eq!(
        listed(&c),
        [
            ("path", "/PATH", "/etc/shadow"),
            ("path", "/path", "/workspace/ok")
        ]
    );
}

#[test]
fn nested_values_and_unknown_keys_are_found_by_shape() {
    let c = class(
        "batch",
        json!({
            "ops": [
                {"op": "copy", "args": {"from": "/workspace/a", "into": "/etc/cron.d/evil"}},
                {"op": "fetch", "where": "HTTPS://Evil.Example/x", "note": "see /tmp/x"},
                {"op": "open", "spec": "file:///root/.ssh/id_rsa"},
            ],
            "cwd": "sub",
            "mail": {"cc": ["boss@example.com"], "bcc": "spy@evil.example"},
            "a~b/c": {"url": "http://h/"},
            "text": "/tmp/x\nnot a path: it has a line break",
        }),
    );
    assert_eq!(
        listed(&c),
        [
            ("url", "/a~0b~1c/url", "http://h/"),
            ("path", "/cwd", "/workspace/sub"),
            ("address", "/mail/bcc", "spy@evil.example"),
            ("address", "/mail/cc/0", "boss@example.com"),
            ("path", "/ops/0/args/from", "/workspace/a"),
            ("path", "/ops/0/args/into", "/etc/cron.d/evil"),
            ("url", "/ops/1/where", "https://evil.example/x"),
            ("path", "/ops/2/spec", "/root/.ssh/id_rsa"),
        ]
    );
    assert!(!c.truncated);
}

#[test]
fn named_targets_come_before_lookalikes() {
    // `content` sorts before `path` and starts with `/`, but the write is about `path`.
    let c = class(
        "write_file",
        json!({"content": "/etc/motd banner", "path": "/workspace/out.txt"}),
    );
    assert_eq!(c.target.as_deref(), Some("/workspace/out.txt"));
    assert_eq!(
        listed(&c),
        [
            ("path", "/content", "/etc/motd banner"),
            ("path", "/path", "/workspace/out.txt")
        ]
    );
    // With no named path, a lookalike is still the target.
    let c = class("read_file", json!({"name": "/etc/shadow"}));
    assert_eq!(c.target.as_deref(), Some("/etc/shadow"));
}

#[test]
fn values_are_normalised_by_their_shape_as_well_as_their_key() {
    let c = class(
        "sync",
        json!({
            "source": "https://User:pw@Mirror.Example/a/../b",
            "from": "me@example.com",
            "url": "file:///etc/passwd",
            "host": "db.internal",
        }),
    );
    assert_eq!(
        listed(&c),
        [
            ("address", "/from", "me@example.com"),
            ("address", "/host", "db.internal"),
            ("url", "/source", "https://mirror.example/b"),
            ("url", "/url", "file:///etc/passwd"),
            ("path", "/url", "/etc/passwd"),
        ]
    );
}

#[test]
fn the_same_target_is_listed_once_under_its_first_key() {
    let c = class(
        "copy",
        json!({"a": "/workspace/x", "b": "/workspace/./x", "dest": "/workspace/x", "url": "/workspace/x"}),
    );
    assert_eq!(
        listed(&c),
        [
            ("path", "/a", "/workspace/x"),
            ("url", "/url", "/workspace/x")
        ]
    );
    // `dest` named it: it counts as a named path, so it beats the URL key for a write.
    assert_eq!(c.target.as_deref(), Some("/workspace/x"));
}

#[test]
fn the_walk_is_bounded_and_says_so() {
    let many: Vec<String> = (0..300).map(|i| format!("/workspace/f{i}")).collect();
    let c = class("read_file", json!({"paths": many}));
    assert_eq!(c.targets.len(), MAX_TARGETS);
    assert!(c.truncated);
    assert_eq!(c.targets[255].value, "/workspace/f255");

    let exactly: Vec<String> = (0..MAX_TARGETS).map(|i| format!("/w/{i}")).collect();
    let c = class("read_file", json!({"paths": exactly}));
    assert_eq!((c.targets.len(), c.truncated), (MAX_TARGETS, false));

    let nest = |levels: usize| {
        let mut v = json!("/etc/passwd");
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    // The string sits at depth `levels`: the last depth inspected is MAX_DEPTH.
    let c = class("x", nest(MAX_DEPTH));
    assert_eq!((c.targets.len(), c.truncated), (1, false));
    assert_eq!(c.targets[0].key, "/0".repeat(MAX_DEPTH));
    let c = class("x", nest(MAX_DEPTH + 1));
    assert_eq!((c.targets.len(), c.truncated), (0, true));
    // A deep branch does not hide its shallow siblings.
    let c = class("x", json!({"a": nest(MAX_DEPTH), "b": "/etc/hosts"}));
    assert!(c.truncated);
    assert_eq!(listed(&c), [("path", "/b", "/etc/hosts")]);
}

#[test]
fn the_target_is_always_one_of_the_targets() {
    let samples = [
        ("read_file", json!({"path": "a", "url": "http://x/"})),
        ("fetch", json!({"url": "http://x/", "path": "a"})),
        ("run", json!({"cmd": "ls", "cwd": "/tmp"})),
        ("run", json!({"cwd": "/tmp"})),
        ("send", json!({"to": ["a@x", "b@y"], "url": "http://x/"})),
        ("send", json!({"webhook": "http://x/"})),
        ("frob", json!({"script": "x", "host": "h"})),
        ("frob", json!({"x": {"y": ["file://localhost/etc/passwd"]}})),
    ];
    for (name, args) in samples {
        let c = class(name, args.clone());
        let target = c.target.as_deref().expect("a target");
        assert!(
            c.targets.iter().any(|t| t.value == target),
            "{name} {args}: {target} not in {:?}",
            c.targets
        );
    }
}

fn agent() -> AgentInfo {
    AgentInfo {
        id: "a1".into(),
        tenant_id: Some("t1".into()),
        roles: vec!["dev".into(), "shell".into()],
        claims: json!({"sub": "a1", "n": -3, "big": 18446744073709551615u64, "f": 0.25, "nested": [null, true]}),
        prompt_hash: Some("ab".repeat(32)),
        run_id: None,
    }
}

fn session() -> SessionInfo {
    SessionInfo {
        id: None,
        calls: 12,
        started_at: Some("2026-11-22T20:00:00Z".into()),
    }
}

fn request(method: &str, direction: Direction) -> RequestInfo {
    RequestInfo {
        method: method.into(),
        direction,
        upstream: "fs".into(),
        protocol_version: Some("2025-11-25".into()),
    }
}

/// Both builds agree, and every top-level member of the contract is present.
fn same_document(input: &PolicyInput<'_>) -> serde_json::Value {
    let json = input.to_json();
    assert_eq!(input.to_value(), Value::from(json.clone()));
    let members: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        [
            "agent", "behavior", "dlp", "now", "params", "prompt", "request", "resource",
            "response", "session", "tool"
        ]
    );
    json
}

#[test]
fn to_value_and_to_json_build_the_same_document() {
    let (agent, session) = (agent(), session());
    let request = request("tools/call", Direction::ClientToServer);
    let args = json!({"source": "/home/projects/report.pdf", "destination": "out/r.pdf"});
    let params = json!({"name": "move_file", "arguments": args});
    let class = classify("move_file", &args, "/workspace");
    let definition = DefinitionInfo {
        hash: Some("cd".repeat(32)),
        status: DefinitionStatus::Pinned,
        poisoning: vec!["hidden_instruction".into()],
    };
    let input = PolicyInput {
        agent: &agent,
        session: &session,
        request: &request,
        tool: Some(ToolInput {
            name: "move_file",
            arguments: Some(&args),
            class: &class,
            definition: Some(&definition),
        }),
        resource: None,
        prompt: None,
        params: Some(&params),
        findings: &[],
        behavior: BehaviorInfo {
            score: 0.4,
            zscore: -1.3,
            new_tool: true,
        },
        response: None,
        now: "2026-11-22T20:15:00Z",
    };
    let doc = same_document(&input);
    assert_eq!(
        doc["tool"],
        json!({
            "name": "move_file",
            "arguments": args,
            "action": "write",
            "target": "/workspace/out/r.pdf",
            "targets": [
                {"kind": "path", "key": "/destination", "value": "/workspace/out/r.pdf", "ambiguous": false},
                {"kind": "path", "key": "/source", "value": "/home/projects/report.pdf", "ambiguous": false},
            ],
            "targets_truncated": false,
            "ambiguous_keys": [],
            "definition": {"hash": "cd".repeat(32), "status": "pinned", "poisoning": ["hidden_instruction"]},
        })
    );
    assert_eq!(
        doc["request"],
        json!({"method": "tools/call", "direction": "client_to_server", "upstream": "fs", "protocol_version": "2025-11-25"})
    );
    assert_eq!(
        doc["behavior"],
        json!({"score": 0.4, "zscore": -1.3, "new_tool": true})
    );
    assert_eq!(doc["agent"]["prompt_hash"], json!("ab".repeat(32)));
    assert_eq!(doc["agent"]["run_id"], json!(null));
    assert_eq!(doc["session"]["id"], json!(null));
    for absent in ["resource", "prompt", "response"] {
        assert_eq!(doc[absent], json!(null), "{absent}");
    }

    // A new tool: no hash; a truncated walk is visible.
    let new = DefinitionInfo {
        hash: None,
        status: DefinitionStatus::New,
        poisoning: vec![],
    };
    let many: Vec<String> = (0..300).map(|i| format!("/w/{i}")).collect();
    let many = json!({ "paths": many });
    let truncated = classify("read_file", &many, "/");
    let flagged_findings = vec![Finding {
        kind: "aws_access_key".into(),
        severity: Severity::Critical,
        path: "/arguments/content".into(),
        count: 2,
    }];
    let flagged = PolicyInput {
        tool: Some(ToolInput {
            name: "read_file",
            arguments: Some(&many),
            class: &truncated,
            definition: Some(&new),
        }),
        findings: &flagged_findings,
        behavior: BehaviorInfo {
            score: f64::NAN,
            ..BehaviorInfo::default()
        },
        ..input
    };
    let doc = same_document(&flagged);
    assert_eq!(doc["tool"]["targets_truncated"], json!(true));
    assert_eq!(doc["tool"]["targets"].as_array().map(Vec::len), Some(256));
    assert_eq!(
        doc["tool"]["definition"],
        json!({"hash": null, "status": "new", "poisoning": []})
    );
    assert_eq!(doc["behavior"]["score"], json!(null));
    assert_eq!(
        doc["dlp"]["findings"],
        json!([{"type": "aws_access_key", "severity": "critical", "path": "/arguments/content", "count": 2}])
    );

    // tools/list visibility: no arguments, no definition.
    let bare = classify("run_shell", &serde_json::Value::Null, "/");
    let listing = PolicyInput {
        tool: Some(ToolInput {
            name: "run_shell",
            arguments: None,
            class: &bare,
            definition: None,
        }),
        params: None,
        ..input
    };
    let doc = same_document(&listing);
    assert_eq!(doc["tool"]["arguments"], json!(null));
    assert_eq!(doc["tool"]["definition"], json!(null));
    assert_eq!(doc["tool"]["targets"], json!([]));
    assert_eq!(doc["params"], json!(null));
}

#[test]
fn resource_prompt_server_request_and_result_documents() {
    let (agent, session) = (agent(), session());
    let read = request("resources/read", Direction::ClientToServer);
    let params = json!({"uri": "file:///workspace/../etc/passwd"});
    let target = resource_target("file:///workspace/../etc/passwd", "/workspace");
    let base = PolicyInput {
        agent: &agent,
        session: &session,
        request: &read,
        tool: None,
        resource: Some(ResourceInput {
            uri: "file:///workspace/../etc/passwd",
            target: &target,
        }),
        prompt: None,
        params: Some(&params),
        findings: &[],
        behavior: BehaviorInfo::default(),
        response: None,
        now: "2026-11-22T20:15:00Z",
    };
    let doc = same_document(&base);
    assert_eq!(
        doc["resource"],
        json!({"uri": "file:///workspace/../etc/passwd", "target": "/etc/passwd", "ambiguous": false})
    );
    assert_eq!(doc["tool"], json!(null));
    assert_eq!(
        doc["behavior"],
        json!({"score": 0.0, "zscore": 0.0, "new_tool": false})
    );

    let get = request("prompts/get", Direction::ClientToServer);
    let prompt_args = json!({"topic": "q3"});
    let prompt = PolicyInput {
        request: &get,
        resource: None,
        prompt: Some(PromptInput {
            name: "summarise",
            arguments: Some(&prompt_args),
        }),
        ..base
    };
    let doc = same_document(&prompt);
    assert_eq!(
        doc["prompt"],
        json!({"name": "summarise", "arguments": {"topic": "q3"}})
    );

    let sampling = request("sampling/createMessage", Direction::ServerToClient);
    let sampling_params =
        json!({"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]});
    let doc = same_document(&PolicyInput {
        request: &sampling,
        resource: None,
        params: Some(&sampling_params),
        ..base
    });
    assert_eq!(doc["request"]["direction"], json!("server_to_client"));
    assert_eq!(doc["params"], sampling_params);

    let result_findings = vec![Finding {
        kind: "private_key".into(),
        severity: Severity::Critical,
        path: "/contents/0/text".into(),
        count: 1,
    }];
    let doc = same_document(&PolicyInput {
        response: Some(ResponseInput {
            is_error: false,
            findings: &result_findings,
            injection: &["hidden_instruction", "exfiltration"],
        }),
        ..base
    });
    assert_eq!(
        doc["response"],
        json!({
            "is_error": false,
            "dlp": {"findings": [{"type": "private_key", "severity": "critical", "path": "/contents/0/text", "count": 1}]},
            "injection": ["hidden_instruction", "exfiltration"],
        })
    );
    assert_eq!(doc["dlp"]["findings"], json!([]));
}

#[test]
fn enum_names_match_the_contract() {
    assert_eq!(Direction::ClientToServer.as_str(), "client_to_server");
    assert_eq!(Direction::ServerToClient.as_str(), "server_to_client");
    assert_eq!(
        [
            TargetKind::Path,
            TargetKind::Url,
            TargetKind::Command,
            TargetKind::Address
        ]
        .map(TargetKind::as_str),
        ["path", "url", "command", "address"]
    );
    assert_eq!(
        [
            DefinitionStatus::New,
            DefinitionStatus::Pinned,
            DefinitionStatus::Changed
        ]
        .map(DefinitionStatus::as_str),
        ["new", "pinned", "changed"]
    );
}
