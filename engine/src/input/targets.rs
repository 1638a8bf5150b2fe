//! Every path, URL, command and address a tool call's arguments name, with its JSON pointer.
//!
//! The walk visits the arguments in document order (serde_json's map order), arrays included:
//! - a string under a key from one of the key lists below (compared folded: lower-case, `_`/`-` removed,
//!   so `file_path`, `filePath` and `FILE-PATH` are all `filepath`) is a target of that key's kind, and so
//!   is each string of an array (at any depth) under such a key; an array of strings under a command key is
//!   one command (argv joined by spaces);
//! - any other string that looks like a URL with a scheme (`https://…`, `file://…`) or an absolute path is
//!   a target too, whatever its key, so an argument name toolgate has never seen cannot hide a resource.
//!
//! Values are normalised (paths absolute against the working directory, `file:` URIs as the path they
//! name, URLs through [`normalise_url`]); the same kind and value is listed once, under its first key. A URL
//! that parsers read differently is marked [`Target::ambiguous`] (see [`super::differential`]), and so is a
//! path holding a control character or a backslash, as written or percent-decoded ([`path_is_ambiguous`]).
//!
//! Because keys are folded, `{"PATH": "/workspace/a", "path": "/etc/passwd"}` names two paths for one
//! argument, of which the upstream reads only `path`. Both are listed, and the walk also records every
//! key that folds to the same name as another key of its object but holds a different value
//! ([`Found::ambiguous_keys`]): such a call cannot be shown to a reviewer or audited as what the upstream
//! will do, so the policy denies it. Among named targets, a key written the conventional way (starting
//! with a lower-case letter: `path`, `file_path`, `filePath`) is preferred for `tool.target` over one
//! written otherwise (`PATH`, `Path`).

use std::collections::hash_map::{Entry, HashMap};

use serde_json::{Map, Value};

use super::differential::parsers_disagree;
use super::{normalise_path, normalise_url, Target, TargetKind};

/// At most this many targets are listed; a call naming more is marked truncated.
pub const MAX_TARGETS: usize = 256;
/// Values nested deeper than this below the arguments (which are depth 0) are not inspected; a call
/// that nests deeper is marked truncated.
pub const MAX_DEPTH: usize = 64;

// Longer strings are text, not a path or URL someone names; PATH_MAX on Linux is 4096.
const MAX_PATH_LEN: usize = 4096;
const MAX_URL_LEN: usize = 8192;

// Folded keys (see the module doc). A value with a scheme under a path key is judged as the URL it is.
const PATH_KEYS: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filenames",
    "filepath",
    "filepaths",
    "dir",
    "dirs",
    "dirpath",
    "directory",
    "directories",
    "folder",
    "root",
    "cwd",
    "workdir",
    "workingdir",
    "workingdirectory",
    "source",
    "sources",
    "sourcepath",
    "src",
    "destination",
    "destinationpath",
    "dest",
    "destpath",
    "dst",
    "target",
    "targetpath",
    "from",
    "oldpath",
    "newpath",
    "output",
    "outputpath",
    "outputfile",
    "outfile",
    "inputpath",
    "inputfile",
    "link",
    "linkpath",
    "mountpoint",
];
const URL_KEYS: &[&str] = &[
    "url",
    "urls",
    "uri",
    "uris",
    "endpoint",
    "href",
    "baseurl",
    "webhook",
    "webhookurl",
    "callback",
    "callbackurl",
    "redirecturi",
    "redirecturl",
];
const COMMAND_KEYS: &[&str] = &[
    "command",
    "commands",
    "cmd",
    "cmdline",
    "commandline",
    "script",
    "argv",
    "executable",
    "program",
];
const ADDRESS_KEYS: &[&str] = &[
    "to",
    "recipient",
    "recipients",
    "cc",
    "bcc",
    "replyto",
    "email",
    "emails",
    "emailaddress",
    "address",
    "addresses",
    "phone",
    "phonenumber",
    "host",
    "hostname",
    "hosts",
];

/// How a target came to be listed; the higher, the better it stands for what the upstream acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Naming {
    /// Only shaped like a path or URL.
    Shaped,
    /// Named by a key written unconventionally (`PATH`, `Path`, `_path`).
    Folded,
    /// Named by a key starting with a lower-case letter (`path`, `file_path`, `filePath`).
    Conventional,
}

/// The targets of one call's arguments, and which of them a key named.
pub(super) struct Found<'w> {
    pub targets: Vec<Target>,
    /// Parallel to `targets`.
    naming: Vec<Naming>,
    /// JSON pointers of keys that fold to the same name as an earlier key of their object and hold another
    /// value; at most [`MAX_TARGETS`] are listed (one is enough to deny).
    pub ambiguous_keys: Vec<String>,
    pub truncated: bool,
    /// The nearest key above the value being walked starts with a lower-case letter.
    key_conventional: bool,
    /// `MAX_TARGETS` reached: nothing more can be listed, so the walk stops.
    full: bool,
    workdir: &'w str,
    pointer: String,
}

impl Found<'_> {
    /// The first target of `kind` that a key named, one named by a conventionally written key first.
    pub fn first_named(&self, kind: TargetKind) -> Option<&Target> {
        [Naming::Conventional, Naming::Folded]
            .into_iter()
            .find_map(|wanted| {
                self.targets
                    .iter()
                    .zip(&self.naming)
                    .find(|(t, naming)| **naming == wanted && t.kind == kind)
            })
            .map(|(t, _)| t)
    }

    /// The first named target of the first kind in `priority` that has one; failing that, the first
    /// target of the first kind in `priority` that has one.
    pub fn pick(&self, priority: &[TargetKind]) -> Option<&Target> {
        priority
            .iter()
            .find_map(|kind| self.first_named(*kind))
            .or_else(|| {
                priority
                    .iter()
                    .find_map(|kind| self.targets.iter().find(|t| t.kind == *kind))
            })
    }

    fn visit(&mut self, value: &Value, depth: usize, inherited: Option<TargetKind>) {
        if self.full {
            return;
        }
        if depth > MAX_DEPTH {
            self.truncated = true;
            return;
        }
        match value {
            Value::String(s) => match inherited {
                Some(kind) => self.named(kind, s),
                None => {
                    self.shaped(s, Naming::Shaped);
                }
            },
            Value::Array(items) => {
                if inherited == Some(TargetKind::Command) {
                    let argv: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    let naming = self.key_naming();
                    self.push(
                        TargetKind::Command,
                        argv.join(" ").trim().to_string(),
                        naming,
                        false,
                    );
                }
                // Array items keep the kind of the key above them (a list of paths is paths), except argv
                // items: they are words of one command, judged by their shape like any other string.
                let inner = inherited.filter(|k| *k != TargetKind::Command);
                for (i, item) in items.iter().enumerate() {
                    let len = self.pointer.len();
                    self.pointer.push('/');
                    self.pointer.push_str(&i.to_string());
                    self.visit(item, depth + 1, inner);
                    self.pointer.truncate(len);
                }
            }
            Value::Object(members) => {
                self.find_ambiguous_keys(members);
                let outer = self.key_conventional;
                for (key, item) in members {
                    let len = self.pointer.len();
                    self.pointer.push('/');
                    push_escaped(&mut self.pointer, key);
                    self.key_conventional = key.chars().next().is_some_and(char::is_lowercase);
                    self.visit(item, depth + 1, key_kind(key));
                    self.pointer.truncate(len);
                }
                self.key_conventional = outer;
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Records the keys of `members` that fold to the same name as an earlier key but hold another value:
    /// the classifier would judge both under one name, the upstream reads only the one it knows.
    fn find_ambiguous_keys(&mut self, members: &Map<String, Value>) {
        if members.len() < 2 {
            return;
        }
        let mut first: HashMap<String, &Value> = HashMap::with_capacity(members.len());
        for (key, value) in members {
            match first.entry(fold_key(key)) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(earlier) => {
                    if *earlier.get() != value && self.ambiguous_keys.len() < MAX_TARGETS {
                        let mut pointer = self.pointer.clone();
                        pointer.push('/');
                        push_escaped(&mut pointer, key);
                        self.ambiguous_keys.push(pointer);
                    }
                }
            }
        }
    }

    /// A string under a key of `kind`.
    fn named(&mut self, kind: TargetKind, raw: &str) {
        let s = raw.trim();
        if s.is_empty() {
            return;
        }
        let naming = self.key_naming();
        match kind {
            TargetKind::Path => {
                if let Some(path) = file_uri_path(s) {
                    self.file_path(&path, naming);
                } else if has_url_scheme(s) {
                    // With whitespace too: a fetching upstream may strip it, so it is judged as a URL.
                    self.url(s, naming);
                } else if looks_like_email(s) {
                    // `from`, `source`: a sender, not a file.
                    self.push(TargetKind::Address, s.to_string(), naming, false);
                } else {
                    self.path(s, naming);
                }
            }
            TargetKind::Url => {
                self.url(s, naming);
                // Fetching a file: URL reads a local file: judge it as the path too.
                if let Some(path) = file_uri_path(s) {
                    self.file_path(&path, naming);
                }
            }
            TargetKind::Command => self.push(TargetKind::Command, s.to_string(), naming, false),
            TargetKind::Address => {
                // `to` of a move is a path: no e-mail address or host starts with `/` or a scheme...
                if self.shaped(s, naming) {
                    return;
                }
                self.push(TargetKind::Address, s.to_string(), naming, false);
                // ...and one with a `/` that is no e-mail address may be a relative path: judged as both.
                if s.contains('/') && !looks_like_email(s) {
                    self.path(s, naming);
                }
            }
        }
    }

    /// How the nearest key above the walk is written (array items stand under their array's key).
    fn key_naming(&self) -> Naming {
        if self.key_conventional {
            Naming::Conventional
        } else {
            Naming::Folded
        }
    }

    /// A string judged by its shape alone; false when it looks like neither a URL nor an absolute path.
    fn shaped(&mut self, raw: &str, naming: Naming) -> bool {
        let s = raw.trim();
        if let Some(path) = file_uri_path(s) {
            self.file_path(&path, naming);
        } else if looks_like_url(s) {
            self.url(s, naming);
        } else if looks_like_absolute_path(s) {
            self.path(s, naming);
        } else {
            return false;
        }
        true
    }

    /// A plain path (no scheme), judged as written and, when it holds percent-escapes, as decoded too: a
    /// filesystem tool takes `/etc/%70asswd` literally, but an upstream that decodes it (a web framework, a
    /// `file:` URL built from it) opens `/etc/passwd`. Rather than guess, both must pass; a name that merely
    /// holds a `%20` decodes to a path in the same place. Both are marked ambiguous when either holds what
    /// upstreams read differently ([`path_is_ambiguous`]).
    fn path(&mut self, s: &str, naming: Naming) {
        let decoded = Some(s)
            .filter(|s| s.contains('%'))
            .map(percent_decode)
            .filter(|d| d != s);
        let ambiguous = path_is_ambiguous(s) || decoded.as_deref().is_some_and(path_is_ambiguous);
        self.push(
            TargetKind::Path,
            normalise_path(s, self.workdir),
            naming,
            ambiguous,
        );
        if let Some(decoded) = decoded {
            self.push(
                TargetKind::Path,
                normalise_path(&decoded, self.workdir),
                naming,
                ambiguous,
            );
        }
    }

    /// A `file:` URI's path (percent-decoded), marked as a plain path's would be.
    fn file_path(&mut self, path: &str, naming: Naming) {
        let value = normalise_path(path, self.workdir);
        self.push(TargetKind::Path, value, naming, path_is_ambiguous(path));
    }

    fn url(&mut self, s: &str, naming: Naming) {
        let ambiguous = parsers_disagree(s);
        self.push(TargetKind::Url, normalise_url(s), naming, ambiguous);
    }

    fn push(&mut self, kind: TargetKind, value: String, naming: Naming, ambiguous: bool) {
        if value.is_empty() {
            return;
        }
        if let Some(i) = self
            .targets
            .iter()
            .position(|t| t.kind == kind && t.value == value)
        {
            // Listed once under its first key, but a key naming it anywhere makes it a named target, and
            // one ambiguous spelling makes the URL ambiguous.
            self.naming[i] = self.naming[i].max(naming);
            self.targets[i].ambiguous |= ambiguous;
            return;
        }
        if self.targets.len() == MAX_TARGETS {
            self.truncated = true;
            self.full = true;
            return;
        }
        self.targets.push(Target {
            kind,
            key: self.pointer.clone(),
            value,
            ambiguous,
        });
        self.naming.push(naming);
    }
}

/// Walks `arguments` (see the module doc).
pub(super) fn collect<'w>(arguments: &Value, workdir: &'w str) -> Found<'w> {
    let mut found = Found {
        targets: Vec::new(),
        naming: Vec::new(),
        ambiguous_keys: Vec::new(),
        truncated: false,
        key_conventional: false,
        full: false,
        workdir,
        pointer: String::new(),
    };
    found.visit(arguments, 0, None);
    found
}

fn key_kind(key: &str) -> Option<TargetKind> {
    let folded = fold_key(key);
    let folded = folded.as_str();
    if PATH_KEYS.contains(&folded) {
        Some(TargetKind::Path)
    } else if URL_KEYS.contains(&folded) {
        Some(TargetKind::Url)
    } else if COMMAND_KEYS.contains(&folded) {
        Some(TargetKind::Command)
    } else if ADDRESS_KEYS.contains(&folded) {
        Some(TargetKind::Address)
    } else {
        None
    }
}

fn fold_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// RFC 6901: `~` is written `~0` and `/` is written `~1`.
fn push_escaped(pointer: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// `scheme://rest` with an RFC 3986 scheme and no whitespace or control character.
fn looks_like_url(s: &str) -> bool {
    has_url_scheme(s) && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `scheme://rest` with an RFC 3986 scheme, whatever the rest holds.
fn has_url_scheme(s: &str) -> bool {
    if s.len() > MAX_URL_LEN {
        return false;
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
}

/// Text that starts with `/` and is one line. Other control characters do not stop it being a path: a NUL
/// inside (`/etc\0/../x`) is what makes it one that upstreams read differently ([`path_is_ambiguous`]).
fn looks_like_absolute_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= MAX_PATH_LEN
        && !s.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
}

/// `local@domain`, nothing a path separator or whitespace could belong to.
fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !s.chars().any(|c| c == '/' || c.is_whitespace())
        }
        None => false,
    }
}

/// The path a `file:` URI names, percent-decoded once, without query or fragment (a URL library on the
/// server would drop them too); `None` for anything else. `file:///p` and `file://localhost/p` name `/p`;
/// `file://other/p` names `other/p`, as a server that strips the scheme would read it (relative, so it
/// is resolved against the working directory and cannot pass for a system path).
pub(super) fn file_uri_path(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = match s.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file:") => &s[5..],
        _ => return None,
    };
    let path = if let Some(after) = rest.strip_prefix("//") {
        match after.get(..10) {
            Some(host) if host.eq_ignore_ascii_case("localhost/") => &after[9..],
            _ => after,
        }
    } else if rest.starts_with('/') {
        rest
    } else {
        return None;
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(percent_decode(&path[..end]))
}

/// Whether upstreams read this path differently: a control character (NUL ends the path for C code and some
/// FFI, while toolgate and Rust, Python and Node read on or refuse it) or a backslash (one file name on Unix, a
/// separator, so `..\..\etc` climbs, on Windows).
pub(super) fn path_is_ambiguous(path: &str) -> bool {
    path.chars().any(|c| c.is_control() || c == '\\')
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
