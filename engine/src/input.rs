//! The Rego input document; tool action/target classification and normalisation.
//!
//! The policy only ever sees normalised targets: a path is absolute with `.`/`..` resolved, a URL has its
//! scheme and host lower-cased and its userinfo removed. Policies can then compare prefixes and hosts
//! without each of them re-implementing (and getting wrong) traversal and URL parsing.

use std::collections::BTreeMap;

use regorus::Value;
use serde_json::json;

/// What a tool call does, as far as the proxy can tell from its name and arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Delete,
    Execute,
    Network,
    Send,
    Unknown,
}

impl Action {
    /// The name used in the Rego input (`tool.action`) and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Execute => "execute",
            Action::Network => "network",
            Action::Send => "send",
            Action::Unknown => "unknown",
        }
    }
}

/// The action of a tool call and the normalised resource it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolClass {
    pub action: Action,
    /// A normalised path or URL, the command line, or the recipient address; `None` when no argument names one.
    pub target: Option<String>,
}

// Ordered from most to least dangerous: a name with several action words ("read_and_delete",
// "http_post") is classified by the most dangerous one, so a harmless word cannot mask a risky one.
const ACTION_WORDS: &[(Action, &[&str])] = &[
    (
        Action::Execute,
        &[
            "run", "exec", "execute", "shell", "command", "cmd", "bash", "sh", "spawn", "eval",
        ],
    ),
    (
        Action::Delete,
        &["delete", "remove", "rm", "rmdir", "unlink", "erase"],
    ),
    (
        Action::Send,
        &["send", "email", "mail", "message", "post", "notify", "sms"],
    ),
    (
        Action::Network,
        &[
            "fetch", "http", "https", "url", "browse", "download", "curl", "wget", "web",
        ],
    ),
    (
        Action::Write,
        &[
            "write", "create", "update", "edit", "append", "move", "rename", "copy", "mkdir",
            "put", "save", "patch",
        ],
    ),
    (
        Action::Read,
        &[
            "read", "get", "list", "cat", "ls", "view", "show", "search", "find", "stat", "head",
            "tail",
        ],
    ),
];

// Argument keys are compared lower-cased with `_` and `-` removed, so `file_path`, `filePath` and
// `file-path` all count as `filepath`.
const PATH_KEYS: &[&str] = &[
    "path",
    "file",
    "filename",
    "filepath",
    "dir",
    "directory",
    "source",
    "destination",
];
const URL_KEYS: &[&str] = &["url", "uri", "endpoint"];
const COMMAND_KEYS: &[&str] = &["command", "cmd"];
const ADDRESS_KEYS: &[&str] = &["to", "recipient", "recipients"];

/// Classify a tool call from its name and arguments.
///
/// The action comes from the words of the tool name (`read_file` -> read, `run_shell` -> execute); the
/// target from well-known argument keys, normalised (`workdir` makes relative paths absolute). A call
/// whose name says only "read" (or nothing) but whose target is a URL is a network action: `get_page`
/// with a `url` fetches from the network.
pub fn classify(tool_name: &str, arguments: &serde_json::Value, workdir: &str) -> ToolClass {
    let words = name_words(tool_name);
    let mut action = ACTION_WORDS
        .iter()
        .find(|(_, vocabulary)| words.iter().any(|w| vocabulary.contains(&w.as_str())))
        .map_or(Action::Unknown, |(action, _)| *action);

    let path =
        find_argument(arguments, PATH_KEYS).map(|p| normalise_path(strip_file_scheme(&p), workdir));
    let url = find_argument(arguments, URL_KEYS).map(|u| normalise_url(&u));
    let command = find_argument(arguments, COMMAND_KEYS).map(|c| c.trim().to_string());
    let address = find_argument(arguments, ADDRESS_KEYS).map(|a| a.trim().to_string());

    if matches!(action, Action::Read | Action::Unknown) && url.is_some() && path.is_none() {
        action = Action::Network;
    }

    let target = match action {
        Action::Read | Action::Write | Action::Delete => path.or(url),
        Action::Execute => command.or(path),
        Action::Network => url.or(path),
        Action::Send => address.or(url),
        Action::Unknown => path.or(url).or(command).or(address),
    };
    ToolClass { action, target }
}

/// Lower-cased words of a tool name: split at non-alphanumerics and at camelCase boundaries.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_numeric();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The first argument whose folded key is in `keys` (in the order of `keys`), as text: a string as is,
/// an array of strings joined by spaces (a command given as argv) or by `, ` (several recipients).
fn find_argument(arguments: &serde_json::Value, keys: &[&str]) -> Option<String> {
    let object = arguments.as_object()?;
    let folded: Vec<(String, &serde_json::Value)> =
        object.iter().map(|(k, v)| (fold_key(k), v)).collect();
    keys.iter().find_map(|wanted| {
        folded
            .iter()
            .filter(|(k, _)| k == wanted)
            .find_map(|(_, v)| argument_text(v, wanted))
    })
}

fn fold_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn argument_text(value: &serde_json::Value, key: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Array(items) => {
            let parts: Vec<&str> = items.iter().filter_map(serde_json::Value::as_str).collect();
            if parts.is_empty() {
                return None;
            }
            let separator = if ADDRESS_KEYS.contains(&key) {
                ", "
            } else {
                " "
            };
            Some(parts.join(separator))
        }
        _ => None,
    }
}

// A `file://` URL given as a path names the same file; without this, `file:///etc/passwd` would be
// judged as a relative path below the working directory.
fn strip_file_scheme(path: &str) -> &str {
    let trimmed = path.trim();
    match trimmed.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("file://") => &trimmed[7..],
        _ => trimmed,
    }
}

/// Absolute, `.`/`..` resolved lexically (never above `/`), duplicate and trailing slashes removed;
/// `~` is not expanded. Relative paths are resolved against `base` (itself made absolute from `/`).
///
/// `/home/projects/../../etc/passwd` -> `/etc/passwd`.
pub fn normalise_path(path: &str, base: &str) -> String {
    fn push<'a>(part: &'a str, segments: &mut Vec<&'a str>) {
        for segment in part.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                s => segments.push(s),
            }
        }
    }
    let mut segments: Vec<&str> = Vec::new();
    if !path.starts_with('/') {
        push(base, &mut segments);
    }
    push(path, &mut segments);
    let mut out = String::with_capacity(path.len() + base.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Scheme and host lower-cased, default port dropped, path dot-segments resolved, userinfo removed (it
/// is a credential). Text that is not a URL with a host is returned trimmed as is.
pub fn normalise_url(url: &str) -> String {
    let trimmed = url.trim();
    let Ok(mut parsed) = url::Url::parse(trimmed) else {
        return trimmed.to_string();
    };
    let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
        return trimmed.to_string();
    };
    // Special schemes (http, https, ws, ftp, file) already have a lower-cased host; others keep an opaque
    // host that the URL standard leaves as written.
    if parsed.set_host(Some(&host)).is_err()
        || parsed.set_username("").is_err()
        || parsed.set_password(None).is_err()
    {
        return trimmed.to_string();
    }
    parsed.into()
}

/// The authenticated agent, from its token.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    pub id: String,
    pub tenant_id: Option<String>,
    pub roles: Vec<String>,
    /// Every claim of the token, for policies that need more than id, tenant and roles.
    pub claims: serde_json::Value,
}

/// The MCP session the call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: Option<String>,
    /// Calls made in this session before this one.
    pub calls: u64,
    /// RFC 3339 UTC.
    pub started_at: Option<String>,
}

/// The JSON-RPC request as the proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: String,
    /// The configured upstream name (`/mcp/{upstream}`).
    pub upstream: String,
    pub protocol_version: Option<String>,
}

/// Everything the policy sees (INTERFACE.md, "Rego"). Absent optional values are `null` in the document.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub agent: &'a AgentInfo,
    pub session: &'a SessionInfo,
    pub request: &'a RequestInfo,
    pub tool_name: &'a str,
    /// `None` when judging a tool's visibility for `tools/list`.
    pub arguments: Option<&'a serde_json::Value>,
    pub class: &'a ToolClass,
    pub findings: &'a [crate::dlp::Finding],
    pub behavior_score: f64,
    /// RFC 3339 UTC.
    pub now: &'a str,
}

impl PolicyInput<'_> {
    /// The input document as a regorus `Value`, built directly: parsing a JSON string per call would cost
    /// more than evaluating the policy (ARCHITECTURE.md, "Hot path notes").
    pub fn to_value(&self) -> Value {
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                object([
                    ("type", Value::from(f.kind.as_str())),
                    ("severity", Value::from(f.severity.as_str())),
                    ("path", Value::from(f.path.as_str())),
                    ("count", Value::from(f.count)),
                ])
            })
            .collect();
        object([
            (
                "agent",
                object([
                    ("id", Value::from(self.agent.id.as_str())),
                    ("tenant_id", opt_string(self.agent.tenant_id.as_deref())),
                    (
                        "roles",
                        Value::from(
                            self.agent
                                .roles
                                .iter()
                                .map(|r| Value::from(r.as_str()))
                                .collect::<Vec<_>>(),
                        ),
                    ),
                    ("claims", json_to_value(&self.agent.claims)),
                ]),
            ),
            (
                "session",
                object([
                    ("id", opt_string(self.session.id.as_deref())),
                    ("calls", Value::from(self.session.calls)),
                    ("started_at", opt_string(self.session.started_at.as_deref())),
                ]),
            ),
            (
                "request",
                object([
                    ("method", Value::from(self.request.method.as_str())),
                    ("upstream", Value::from(self.request.upstream.as_str())),
                    (
                        "protocol_version",
                        opt_string(self.request.protocol_version.as_deref()),
                    ),
                ]),
            ),
            (
                "tool",
                object([
                    ("name", Value::from(self.tool_name)),
                    (
                        "arguments",
                        self.arguments.map_or(Value::Null, json_to_value),
                    ),
                    ("action", Value::from(self.class.action.as_str())),
                    ("target", opt_string(self.class.target.as_deref())),
                ]),
            ),
            ("dlp", object([("findings", Value::from(findings))])),
            (
                "behavior",
                object([("score", Value::from(self.behavior_score))]),
            ),
            ("now", Value::from(self.now)),
        ])
    }

    /// The same document as JSON, for `policy eval`, logs and tests.
    pub fn to_json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(serde_json::Value::Null))
            .collect();
        json!({
            "agent": {
                "id": self.agent.id,
                "tenant_id": self.agent.tenant_id,
                "roles": self.agent.roles,
                "claims": self.agent.claims,
            },
            "session": {
                "id": self.session.id,
                "calls": self.session.calls,
                "started_at": self.session.started_at,
            },
            "request": {
                "method": self.request.method,
                "upstream": self.request.upstream,
                "protocol_version": self.request.protocol_version,
            },
            "tool": {
                "name": self.tool_name,
                "arguments": self.arguments,
                "action": self.class.action.as_str(),
                "target": self.class.target,
            },
            "dlp": {"findings": findings},
            "behavior": {"score": self.behavior_score},
            "now": self.now,
        })
    }
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::from(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<BTreeMap<Value, Value>>(),
    )
}

fn opt_string(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// A JSON value as a regorus `Value`, without going through text.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64().map_or(Value::Null, Value::from)
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v)))
                .collect::<BTreeMap<Value, Value>>(),
        ),
    }
}

/// The state of a tool's definition as toolgate pinned it (`tool.definition.status` in the Rego input).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefinitionStatus {
    /// Never listed, or listed but not yet approved (pinning `approve`).
    New,
    /// As first seen (pinning `tofu`), or approved.
    Pinned,
    /// Listed with a definition that differs from the pinned one.
    Changed,
}

impl DefinitionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DefinitionStatus::New => "new",
            DefinitionStatus::Pinned => "pinned",
            DefinitionStatus::Changed => "changed",
        }
    }
}

/// `tool.definition` of the Rego input: what toolgate knows of the called tool's definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefinitionInfo {
    /// SHA-256 hex of the JCS of the tool object as the upstream last listed it; `None` when never listed.
    pub hash: Option<String>,
    pub status: DefinitionStatus,
    /// Poisoning markers found in the definition (names only, never the text).
    pub poisoning: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn class(name: &str, args: serde_json::Value) -> ToolClass {
        classify(name, &args, "/workspace")
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
        // A file:// URL given as a path is the absolute path, not a relative one below the workdir.
        assert_eq!(
            class("read_file", json!({"path": "file:///etc/passwd"}))
                .target
                .as_deref(),
            Some("/etc/passwd")
        );
        // argv commands and several recipients.
        assert_eq!(
            class("exec", json!({"cmd": ["rm", "-rf", "/"]}))
                .target
                .as_deref(),
            Some("rm -rf /")
        );
        assert_eq!(
            class("send_message", json!({"recipients": ["a@x", "b@y"]}))
                .target
                .as_deref(),
            Some("a@x, b@y")
        );
        // Non-object arguments and non-string values name no target.
        assert_eq!(class("read_file", json!(["/etc/passwd"])).target, None);
        assert_eq!(class("read_file", json!({"path": 7})).target, None);
        assert_eq!(Action::Network.as_str(), "network");
    }

    #[test]
    fn to_value_and_to_json_build_the_same_document() {
        let agent = AgentInfo {
            id: "a1".into(),
            tenant_id: Some("t1".into()),
            roles: vec!["dev".into(), "shell".into()],
            claims: json!({"sub": "a1", "n": -3, "big": 18446744073709551615u64, "f": 0.25, "nested": [null, true]}),
        };
        let session = SessionInfo {
            id: None,
            calls: 12,
            started_at: Some("2026-11-22T20:00:00Z".into()),
        };
        let request = RequestInfo {
            method: "tools/call".into(),
            upstream: "fs".into(),
            protocol_version: Some("2025-11-25".into()),
        };
        let args = json!({"path": "/home/projects/report.pdf"});
        let class = classify("read_file", &args, "/");
        let input = PolicyInput {
            agent: &agent,
            session: &session,
            request: &request,
            tool_name: "read_file",
            arguments: Some(&args),
            class: &class,
            findings: &[],
            behavior_score: 0.4,
            now: "2026-11-22T20:15:00Z",
        };
        let from_json = Value::from(input.to_json());
        assert_ne!(from_json, Value::Undefined);
        assert_eq!(input.to_value(), from_json);
        assert_eq!(
            input.to_json()["tool"]["target"],
            json!("/home/projects/report.pdf")
        );
        assert_eq!(input.to_json()["session"]["id"], serde_json::Value::Null);

        let findings = vec![crate::dlp::Finding {
            kind: "aws_access_key".into(),
            severity: crate::dlp::Severity::Critical,
            path: "/content".into(),
            count: 2,
        }];
        let flagged = PolicyInput {
            findings: &findings,
            ..input
        };
        assert_eq!(flagged.to_value(), Value::from(flagged.to_json()));
        assert_eq!(
            flagged.to_json()["dlp"]["findings"],
            json!([{"type": "aws_access_key", "severity": "critical", "path": "/content", "count": 2}])
        );

        let listing = PolicyInput {
            arguments: None,
            ..input
        };
        assert_eq!(listing.to_value(), Value::from(listing.to_json()));
        assert_eq!(
            listing.to_json()["tool"]["arguments"],
            serde_json::Value::Null
        );
    }
}
