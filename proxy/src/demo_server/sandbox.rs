//! Sandbox paths: every caller path is mapped under the sandbox root and checked to stay inside it.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::tools::ToolError;

pub(super) const MAX_READ_BYTES: u64 = 1024 * 1024;

/// At most this many files are listed, so a huge sandbox cannot stall `resources/list` or completion.
pub(super) const MAX_LISTED_FILES: usize = 1000;
/// Folders deeper than this are not listed (they can still be read by path).
const MAX_LISTED_DEPTH: usize = 8;

/// The folder the file tools may touch. Every path is confined twice: lexically (no `..` above the
/// root) and on disk (no symbolic link leading out of the canonical root).
pub(super) struct Sandbox {
    root: PathBuf,
}

/// A caller path resolved to a host path inside the sandbox, with the caller's view for messages.
struct Resolved {
    host: PathBuf,
    shown: String,
}

impl Sandbox {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        fs::create_dir_all(path)?;
        // Canonical, so that a sandbox reached through a symlink (e.g. /tmp on macOS) still
        // contains the canonical targets of links inside it.
        Ok(Self {
            root: fs::canonicalize(path)?,
        })
    }

    /// The canonical root: `file://` resource URIs name files under it.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Regular files under the root as sandbox-relative paths (`/`-separated, no leading `/`), sorted.
    /// Symbolic links are left out, since their targets may lie outside; names that are not UTF-8 too, since
    /// no URI would name them faithfully.
    pub(super) fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut folders = vec![(self.root.clone(), String::new(), 0)];
        while let Some((folder, prefix, depth)) = folders.pop() {
            let Ok(entries) = fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let (Ok(kind), Ok(name)) = (entry.file_type(), entry.file_name().into_string())
                else {
                    continue;
                };
                let relative = format!("{prefix}{name}");
                if kind.is_file() {
                    files.push(relative);
                    if files.len() == MAX_LISTED_FILES {
                        files.sort();
                        return files;
                    }
                } else if kind.is_dir() && depth < MAX_LISTED_DEPTH {
                    folders.push((entry.path(), format!("{relative}/"), depth + 1));
                }
            }
        }
        files.sort();
        files
    }

    fn resolve(&self, raw: &str) -> Result<Resolved, ToolError> {
        if raw.contains('\0') {
            return Err(ToolError::Argument("path", "must not contain a NUL byte"));
        }
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                // An absolute path names a place under the sandbox root, not on the host.
                Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(ToolError::Escapes(raw.to_owned()));
                    }
                }
                Component::Normal(part) => parts.push(part),
            }
        }
        let shown = format!(
            "/{}",
            parts
                .iter()
                .map(|part| part.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        );
        // Walk the existing part of the path one component at a time, so a link anywhere along it
        // is checked, not only in the last position.
        let mut host = self.root.clone();
        let mut remaining = parts.into_iter();
        while let Some(part) = remaining.next() {
            let next = host.join(part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = fs::canonicalize(&next)
                        .map_err(|_| ToolError::BrokenLink(shown.clone()))?;
                    if !target.starts_with(&self.root) {
                        return Err(ToolError::Escapes(raw.to_owned()));
                    }
                    host = target;
                }
                Ok(_) => host = next,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    // Nothing on disk from here on, so nothing left that could redirect the path.
                    host = next;
                    host.extend(remaining.by_ref());
                    break;
                }
                Err(error) => return Err(ToolError::io("open", &shown, &error)),
            }
        }
        Ok(Resolved { host, shown })
    }

    pub(super) fn read(&self, raw: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        let meta = fs::metadata(&host).map_err(|e| ToolError::io("read", &shown, &e))?;
        if meta.is_dir() {
            return Err(ToolError::IsDirectory(shown));
        }
        let file = fs::File::open(&host).map_err(|e| ToolError::io("read", &shown, &e))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ToolError::io("read", &shown, &e))?;
        if bytes.len() as u64 > MAX_READ_BYTES {
            return Err(ToolError::TooLarge(shown));
        }
        String::from_utf8(bytes).map_err(|_| ToolError::NotText(shown))
    }

    pub(super) fn write(&self, raw: &str, content: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        if host.is_dir() {
            return Err(ToolError::IsDirectory(shown));
        }
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ToolError::io("create folders for", &shown, &e))?;
        }
        fs::write(&host, content).map_err(|e| ToolError::io("write", &shown, &e))?;
        Ok(format!("wrote {} bytes to {shown}", content.len()))
    }

    pub(super) fn list(&self, raw: &str) -> Result<String, ToolError> {
        let Resolved { host, shown } = self.resolve(raw)?;
        let meta = fs::metadata(&host).map_err(|e| ToolError::io("list", &shown, &e))?;
        if !meta.is_dir() {
            return Err(ToolError::NotDirectory(shown));
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&host).map_err(|e| ToolError::io("list", &shown, &e))? {
            let entry = entry.map_err(|e| ToolError::io("list", &shown, &e))?;
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        Ok(names.join("\n"))
    }
}
