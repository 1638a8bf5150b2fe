//! The Rego input document; tool action/target classification and normalisation.
//!
//! The policy only ever sees normalised targets: a path is absolute with `.`/`..` resolved, a URL has its
//! scheme and host lower-cased and its userinfo removed. Policies can then compare prefixes and hosts
//! without each of them re-implementing (and getting wrong) traversal and URL parsing.
//!
//! [`classify`] lists in [`ToolClass::targets`] every path, URL, command and address the arguments name, at
//! any depth (see [`targets`] for the rules), so a policy can judge a move's destination as well as its
//! source. The walk is bounded: at most [`MAX_TARGETS`] targets and [`MAX_DEPTH`] levels of nesting. Past
//! either bound the walk stops and [`ToolClass::truncated`] is set (`tool.targets_truncated` in the
//! document), which a policy must treat as "not everything could be judged" and deny.

#[cfg(test)]
mod ambiguity_tests;
mod differential;
mod document;
mod targets;
#[cfg(test)]
mod tests;

pub(crate) use document::json_to_value;
pub use document::{
    AgentInfo, BehaviorInfo, DefinitionInfo, DefinitionStatus, Direction, PolicyInput, PromptInput,
    RequestInfo, ResourceInput, ResponseInput, SessionInfo, ToolInput,
};
pub use targets::{MAX_DEPTH, MAX_TARGETS};

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

/// What kind of resource an argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Path,
    Url,
    Command,
    Address,
}

impl TargetKind {
    /// The name used in the Rego input (`tool.targets[_].kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Path => "path",
            TargetKind::Url => "url",
            TargetKind::Command => "command",
            TargetKind::Address => "address",
        }
    }
}

/// One resource a tool call's arguments name, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    /// RFC 6901 JSON pointer to the argument that names it ("" = the arguments themselves).
    pub key: String,
    pub value: String,
    /// A URL that parsers read differently (`http://allowed.example\@evil.example/`): its value is the
    /// WHATWG reading, which the upstream may not share, so it cannot be judged by its host.
    pub ambiguous: bool,
}

/// The action of a tool call and the normalised resources it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolClass {
    pub action: Action,
    /// The resource the action is mainly about (the first path of a read, the command of an execute...),
    /// always one of `targets`; `None` when no argument names one.
    pub target: Option<String>,
    /// Every resource the arguments name, in document order, each (kind, value) once.
    pub targets: Vec<Target>,
    /// The arguments name more than [`MAX_TARGETS`] resources or nest deeper than [`MAX_DEPTH`]: `targets`
    /// is incomplete.
    pub truncated: bool,
    /// JSON pointers of argument keys that fold (case, `_`, `-` ignored) to the same name as another key of
    /// their object and hold another value: `{"PATH": "/workspace/a", "path": "/etc/passwd"}`. The upstream
    /// reads one of them; which one toolgate cannot know, so the call cannot be judged as it will run.
    pub ambiguous_keys: Vec<String>,
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

/// Classify a tool call from its name and arguments.
///
/// The action comes from the words of the tool name (`read_file` -> read, `run_shell` -> execute); the
/// targets from the arguments, normalised (`workdir` makes relative paths absolute). A call whose name says
/// only "read" (or nothing) and whose arguments name a URL under a URL key but no path under a path key is a
/// network action: `get_page` with a `url` fetches from the network.
///
/// `target` is picked by the action: the first path (else URL) of a read, write or delete, the command
/// (else path) of an execute, the URL (else path) of a network action, the address (else URL) of a send.
/// Values named by their key come before values that only look like a path or URL, so a `content` that
/// starts with `/` cannot stand in for a write's `path`; and values named by a conventionally written key
/// (`path`) before those named by a variant (`PATH`), which the upstream most likely ignores.
pub fn classify(tool_name: &str, arguments: &serde_json::Value, workdir: &str) -> ToolClass {
    let words = name_words(tool_name);
    let mut action = ACTION_WORDS
        .iter()
        .find(|(_, vocabulary)| words.iter().any(|w| vocabulary.contains(&w.as_str())))
        .map_or(Action::Unknown, |(action, _)| *action);

    let found = targets::collect(arguments, workdir);
    if matches!(action, Action::Read | Action::Unknown)
        && found.first_named(TargetKind::Url).is_some()
        && found.first_named(TargetKind::Path).is_none()
    {
        action = Action::Network;
    }
    let priority: &[TargetKind] = match action {
        Action::Read | Action::Write | Action::Delete => &[TargetKind::Path, TargetKind::Url],
        Action::Execute => &[TargetKind::Command, TargetKind::Path],
        Action::Network => &[TargetKind::Url, TargetKind::Path],
        Action::Send => &[TargetKind::Address, TargetKind::Url],
        Action::Unknown => &[
            TargetKind::Path,
            TargetKind::Url,
            TargetKind::Command,
            TargetKind::Address,
        ],
    };
    let target = found.pick(priority).map(|t| t.value.clone());
    ToolClass {
        action,
        target,
        targets: found.targets,
        truncated: found.truncated,
        ambiguous_keys: found.ambiguous_keys,
    }
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

/// The target of a `resources/*` request: a `file://` URI as the normalised absolute path it names
/// (percent-decoded once, `.`/`..` resolved, a `localhost` authority dropped), anything else through
/// [`normalise_url`].
pub fn resource_target(uri: &str, workdir: &str) -> String {
    match targets::file_uri_path(uri) {
        Some(path) => normalise_path(&path, workdir),
        None => normalise_url(uri),
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
