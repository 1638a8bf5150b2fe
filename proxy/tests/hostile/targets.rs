//! Targets the classifier and the upstream read differently: decoy argument keys that fold to the real one,
//! URLs that URL parsers split at different places, IP and path spellings, credential directories in
//! another case. Each call goes through the real server to the bundled demo server (which reads its
//! arguments by their exact names) with the shipped policies.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, audit_events, eventually, start, token, Agent, Options};

/// The policy id and reason of a call's denial; panics when the call was not denied.
fn denial(answer: &common::Answer) -> (String, String) {
    let message = answer.message();
    assert_eq!(answer.error_code(), Some(-31001), "not denied: {message}");
    let policy_id = message["error"]["data"]["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = message["error"]["message"].as_str().unwrap().to_owned();
    (policy_id, text)
}

/// The newest `policy_deny` audit event of `tool`.
async fn last_denial(proxy: &common::Proxy, tool: &str) -> Value {
    eventually(Duration::from_secs(5), || async {
        audit_events(&proxy.app, 50)
            .await
            .into_iter()
            .find(|e| e["event_type"] == "policy_deny" && e["tool_name"] == tool)
    })
    .await
}

/// A decoy key that folds to the real one (`PATH` beside `path`) was judged, shown to reviewers and audited
/// in place of the value the upstream reads. Every such call is now denied, and audited with the value of
/// the exactly named key: what the upstream would have acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_key_folding_to_the_real_one_is_denied_and_audited_with_the_real_value() {
    let proxy = start(Options::default()).await;
    let cases = [
        (
            "read_file",
            json!({"PATH": "/workspace/notes.txt", "path": "/etc/passwd"}),
            "/workspace/notes.txt",
            Some("/etc/passwd"),
            &[][..],
        ),
        (
            "fetch_url",
            json!({"URL": "https://docs.rs/", "url": "http://169.254.169.254/latest/meta-data/"}),
            "https://docs.rs/",
            Some("http://169.254.169.254/latest/meta-data/"),
            &[],
        ),
        (
            "write_file",
            json!({"Path": "/workspace/harmless.txt", "path": "/etc/cron.d/job", "content": "* * * * * root id"}),
            "/workspace/harmless.txt",
            Some("/etc/cron.d/job"),
            &[],
        ),
        (
            "send_email",
            json!({"TO": "ops@example.com", "to": "outsider@evil.net", "subject": "s", "body": "b"}),
            "ops@example.com",
            // an address is personal data: the audit may keep it out of the target altogether
            None,
            &[],
        ),
        (
            "run_shell",
            json!({"COMMAND": "ls", "command": "cat /workspace/report.txt"}),
            "ls",
            Some("cat /workspace/report.txt"),
            &["shell"][..],
        ),
    ];
    for (tool, arguments, decoy, real, roles) in cases {
        let mut agent = Agent::new(&proxy, "demo", token("decoy", roles));
        let answer = agent.call_stateless(tool, arguments.clone()).await;
        // Denied: by the ambiguity, or first by the rule the real value breaks (deny rules are reported in
        // policy_id order).
        let (policy_id, message) = denial(&answer);
        assert!(
            policy_id == "toolgate.tools.ambiguous_arguments"
                || [
                    "/etc/passwd",
                    "/etc/cron.d/job",
                    "http://169.254.169.254/latest/meta-data/",
                ]
                .contains(&real.unwrap_or_default()),
            "{tool} {arguments}: {message}"
        );
        let event = last_denial(&proxy, tool).await;
        assert_eq!(event["policy_id"], policy_id.as_str());
        assert_ne!(
            event["target"], decoy,
            "{tool}: the audit never names the decoy"
        );
        if let Some(real) = real {
            assert_eq!(
                event["target"], real,
                "{tool}: the audit names what the upstream reads"
            );
        }
    }
    // The same value under both spellings is one argument to every reader: judged as usual.
    let mut agent = Agent::new(&proxy, "demo", token("plain", &[]));
    let answer = agent
        .call_stateless(
            "read_file",
            json!({"PATH": "/workspace/none.txt", "path": "/workspace/none.txt"}),
        )
        .await;
    assert_ne!(answer.error_code(), Some(-31001), "{:?}", answer.message());
    proxy.stop().await;
}

/// A reviewer approves what the escalation shows: every recipient of a message and every path of a write,
/// not the first of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_names_every_target_to_the_reviewer() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("mailer", &[]));
    let answer = agent
        .call_stateless(
            "send_email",
            json!({"to": "ops@example.com", "cc": "outsider@evil.net", "subject": "s", "body": "b"}),
        )
        .await;
    assert_eq!(answer.error_code(), Some(-31002), "{:?}", answer.message());
    let message = answer.message()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.ends_with("sending to ops@example.com, outsider@evil.net needs human review"),
        "{message}"
    );
    let answer = agent
        .call_stateless(
            "write_file",
            json!({"path": "/workspace/a.txt", "backup": "/workspace/.profile", "content": "x"}),
        )
        .await;
    assert_eq!(answer.error_code(), Some(-31002), "{:?}", answer.message());
    let message = answer.message()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.ends_with("writing /workspace/.profile, /workspace/a.txt needs human review"),
        "{message}"
    );
    proxy.stop().await;
}

/// URLs that WHATWG (toolgate's parser) and RFC 3986 clients (curl, urllib, Go) split at different places:
/// judged as an allowed host, fetched from another. Each is denied as ambiguous, wherever it is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_parsers_read_as_different_hosts_are_denied() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("fetcher", &[]));
    for url in [
        r"http://docs.rs\@evil.net/",
        r"http://evil.net\.docs.rs/",
        r"https://docs.rs\\169.254.169.254/",
        "http://docs\t.rs/",
        "http://docs.rs\n.evil.net/",
        "http://user@docs.rs@evil.net/",
        "http://docs%2ers/",
        "http:///evil.net/",
    ] {
        let answer = agent.call_stateless("fetch_url", json!({"url": url})).await;
        let (policy_id, message) = denial(&answer);
        assert_eq!(
            policy_id, "toolgate.network.ambiguous_url",
            "{url:?}: {message}"
        );
        assert!(
            !message.contains("evil"),
            "the reason does not quote the URL: {message}"
        );
    }
    // Named by shape under a key toolgate does not know, beside an allowed URL.
    let answer = agent
        .call_stateless(
            "fetch_url",
            json!({"url": "https://docs.rs/", "next": {"page": r"https://docs.rs\@evil.net/"}}),
        )
        .await;
    assert_eq!(denial(&answer).0, "toolgate.network.ambiguous_url");
    // A resource URI is judged the same way.
    let answer = agent
        .request(
            "resources/read",
            json!({"uri": r"http://docs.rs\@evil.net/", "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        )
        .await;
    assert_eq!(denial(&answer).0, "toolgate.network.ambiguous_url");
    proxy.stop().await;
}

/// Spellings that already held: IPv4 in decimal, octal and hex, IPv6-mapped IPv4, and path traversal in its
/// usual forms. Kept so that none of them comes back unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_and_path_spellings_are_judged_as_what_they_name() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("speller", &[]));
    for url in [
        "http://2852039166/latest/meta-data/",
        "http://0251.0376.0251.0376/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0xa9fea9fe/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://169.254.169.254.nip.io/",
    ] {
        let answer = agent.call_stateless("fetch_url", json!({"url": url})).await;
        let (policy_id, message) = denial(&answer);
        assert!(
            policy_id == "toolgate.network.host_not_allowed"
                || policy_id == "toolgate.network.no_target",
            "{url}: {policy_id} {message}"
        );
    }
    // The decimal form is judged as the address it is.
    let answer = agent
        .call_stateless("fetch_url", json!({"url": "http://2852039166/"}))
        .await;
    assert!(
        denial(&answer)
            .1
            .contains("169.254.169.254 is not on the network allow-list"),
        "{:?}",
        answer.message()
    );
    for path in [
        "/home/projects/../../etc/passwd",
        "//etc//passwd",
        "/workspace/./../etc/passwd",
        "file:///etc/passwd",
        "file:///workspace/%2e%2e/etc/passwd",
        "file://localhost/workspace/%2E%2E/%2E%2E/etc/shadow",
        "../etc/passwd",
        // A plain path with escapes, under a system directory as written and as decoded.
        "/etc/%70asswd",
        // Under the workspace as written, a system path once an upstream decodes it.
        "notes/%2e%2e/%2E%2E/etc/shadow",
        "/workspace/%2e%2e/etc/passwd",
    ] {
        let answer = agent
            .call_stateless("read_file", json!({"path": path}))
            .await;
        let (policy_id, message) = denial(&answer);
        assert_eq!(
            policy_id, "toolgate.filesystem.system_path",
            "{path}: {message}"
        );
    }
    proxy.stop().await;
}

/// On a case-insensitive filesystem `~/.SSH/id_rsa` is `~/.ssh/id_rsa`: credential and system directories
/// are matched whatever their case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_and_system_directories_are_matched_whatever_their_case() {
    let proxy = start(Options::default()).await;
    let mut agent = Agent::new(&proxy, "demo", token("caser", &[]));
    for (path, expected) in [
        (
            "/home/dev/.SSH/id_ed25519",
            "toolgate.filesystem.secret_path",
        ),
        ("/workspace/.Ssh/config", "toolgate.filesystem.secret_path"),
        (
            "/home/dev/.AWS/credentials",
            "toolgate.filesystem.secret_path",
        ),
        (
            "/tmp/.GNUPG/private-keys-v1.d/k.key",
            "toolgate.filesystem.secret_path",
        ),
        ("/ETC/passwd", "toolgate.filesystem.system_path"),
        ("/Proc/self/environ", "toolgate.filesystem.system_path"),
    ] {
        let answer = agent
            .call_stateless("read_file", json!({"path": path}))
            .await;
        let (policy_id, message) = denial(&answer);
        assert_eq!(policy_id, expected, "{path}: {message}");
    }
    proxy.stop().await;
}

/// A path holding NUL or another control character, or a backslash, as written or percent-decoded, is read
/// differently by upstreams: `/etc%00/../workspace/x` resolves to `/workspace/x` for toolgate but C code opens
/// `/etc`; `..\..\etc\passwd` is one file name on Unix and a climb on Windows. Each is denied before the
/// upstream sees it, and a plain path beside them still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_upstreams_read_differently_are_denied() {
    let (proxy, mock) = common::with_http_upstream(common::upstream::State::default(), None).await;
    let mut agent = Agent::new(&proxy, "web", token("path-reader", &[]));
    agent.initialize().await;
    for (n, path) in [
        "/etc%00/../workspace/x",
        "/workspace/x\u{0}/../../etc/passwd",
        "/workspace/notes\n.txt",
        r"..\..\etc\passwd",
        "/workspace/a%5c..%5c..%5cetc%5cpasswd",
        "file:///workspace/a%00b",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = agent
            .call("read_file", json!({ "path": path, "n": n }))
            .await;
        let (policy_id, message) = denial(&answer);
        assert_eq!(
            policy_id, "toolgate.filesystem.ambiguous_path",
            "{path:?}: {message}"
        );
        assert!(
            !message.contains("etc"),
            "the reason does not quote the path: {message}"
        );
    }
    // Under any key, by shape.
    let answer = agent
        .call(
            "echo",
            json!({ "text": "x", "next": "/etc\u{0}/../workspace/x" }),
        )
        .await;
    assert_eq!(denial(&answer).0, "toolgate.filesystem.ambiguous_path");
    assert!(
        mock.state.tool_calls().is_empty(),
        "nothing reached the upstream"
    );
    let ok = agent
        .call("read_file", json!({ "path": "/workspace/notes.txt" }))
        .await;
    assert_eq!(ok.error_code(), None, "{:?}", ok.message());
    assert_eq!(mock.state.tool_calls().len(), 1);
    proxy.stop().await;
}
