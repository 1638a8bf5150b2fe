//! Reading a policy folder: which files count, in which order, and how they become a regorus `Engine`.

use std::path::{Path, PathBuf};

use regorus::{Engine, Value};
use sha2::{Digest, Sha256};

use super::PolicyError;
use crate::input::json_to_value;

// Deeper than any sensible policy tree; stops a symlink loop from recursing forever.
const MAX_DEPTH: usize = 32;

/// One file of a policy folder.
pub(super) struct SourceFile {
    /// Relative to the folder, `/`-separated: what `modules()` lists and the revision hashes.
    pub relative: String,
    /// As the user would type it (folder joined with the relative path): what error messages name.
    pub display: String,
    pub content: String,
}

/// The files of a policy folder, each list sorted by relative path.
pub(super) struct Sources {
    pub modules: Vec<SourceFile>,
    pub tests: Vec<SourceFile>,
    pub data: Vec<SourceFile>,
}

impl Sources {
    /// Every `*.rego` (tests apart) and `*.json`/`*.yaml`/`*.yml` below `dir`, recursively.
    pub fn read(dir: &Path) -> Result<Sources, PolicyError> {
        let mut paths = Vec::new();
        walk(dir, dir, 0, &mut paths)?;
        paths.sort();
        let mut sources = Sources {
            modules: Vec::new(),
            tests: Vec::new(),
            data: Vec::new(),
        };
        for (relative, path) in paths {
            let list = if relative.ends_with("_test.rego") {
                &mut sources.tests
            } else if relative.ends_with(".rego") {
                &mut sources.modules
            } else if [".json", ".yaml", ".yml"]
                .iter()
                .any(|ext| relative.ends_with(ext))
            {
                &mut sources.data
            } else {
                continue;
            };
            let content = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            list.push(SourceFile {
                relative,
                display: path.display().to_string(),
                content,
            });
        }
        if sources.modules.is_empty() {
            return Err(PolicyError::NoModules(dir.display().to_string()));
        }
        Ok(sources)
    }

    /// `sha256:<hex>` over the loaded (non-test) files in path order: the path, a NUL, the content
    /// length and the content, so no two different file sets can hash alike by shifting bytes.
    pub fn revision(&self) -> String {
        let mut files: Vec<&SourceFile> = self.modules.iter().chain(&self.data).collect();
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        let mut hasher = Sha256::new();
        for file in files {
            hasher.update(file.relative.as_bytes());
            hasher.update([0]);
            hasher.update((file.content.len() as u64).to_be_bytes());
            hasher.update(file.content.as_bytes());
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// An interpreter with the policy modules (and, for `policy test`, the test modules) and all data.
    /// Returns the engine and the data package (`data.x.y`) of each module added, in order.
    pub fn engine(&self, with_tests: bool) -> Result<(Engine, Vec<String>), PolicyError> {
        let mut engine = Engine::new();
        super::extensions::register(&mut engine)?;
        let mut packages = Vec::new();
        let tests: &[SourceFile] = if with_tests { &self.tests } else { &[] };
        for file in self.modules.iter().chain(tests) {
            let package = engine
                .add_policy(file.display.clone(), file.content.clone())
                .map_err(|err| {
                    located(&err.to_string()).unwrap_or_else(|| load(file, &err.to_string()))
                })?;
            packages.push(package);
        }
        for file in &self.data {
            let value = parse_data(file)?;
            engine
                .add_data(value)
                .map_err(|err| load(file, &format!("cannot merge into data: {err}")))?;
        }
        Ok((engine, packages))
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.display().to_string(),
        source,
    };
    if depth > MAX_DEPTH {
        return Err(PolicyError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other("policy folder nested too deeply (a symlink loop?)"),
        });
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        // Follows symlinks, as `opa` does, so a policy folder may link shared rules in.
        let metadata = std::fs::metadata(&path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if metadata.is_dir() {
            walk(root, &path, depth + 1, out)?;
        } else if metadata.is_file() {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((relative, path));
        }
    }
    Ok(())
}

fn parse_data(file: &SourceFile) -> Result<Value, PolicyError> {
    if file.relative.ends_with(".json") {
        let json: serde_json::Value =
            serde_json::from_str(&file.content).map_err(|err| PolicyError::Located {
                file: file.display.clone(),
                line: u32::try_from(err.line()).unwrap_or(u32::MAX),
                col: u32::try_from(err.column()).unwrap_or(u32::MAX),
                message: format!("invalid JSON: {err}"),
            })?;
        if !json.is_object() {
            return Err(load(file, "a data file must hold an object"));
        }
        Ok(json_to_value(&json))
    } else {
        let value = Value::from_yaml_str(&file.content)
            .map_err(|err| load(file, &format!("invalid YAML: {err}")))?;
        if value.as_object().is_err() {
            return Err(load(file, "a data file must hold an object"));
        }
        Ok(value)
    }
}

fn load(file: &SourceFile, message: &str) -> PolicyError {
    PolicyError::Load {
        file: file.display.clone(),
        message: message.trim().to_string(),
    }
}

/// A regorus error that points into a source file (`--> file:line:col`, a code excerpt, `error: msg`)
/// as one line `file:line:col: msg`; `None` when the message carries no location.
pub(super) fn located(message: &str) -> Option<PolicyError> {
    let arrow = message
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))?;
    let mut parts = arrow.trim_end().rsplitn(3, ':');
    let col = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_string();
    let text = message
        .rfind("error: ")
        .map_or(message, |at| &message[at + "error: ".len()..]);
    Some(PolicyError::Located {
        file,
        line,
        col,
        message: text.trim().to_string(),
    })
}
