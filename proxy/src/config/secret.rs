//! Credentials named by the configuration (`token_env` or `token_file`), read once when the configuration is
//! loaded and never shown again: not by `Debug`, not by any API, not in an error message.

use std::collections::HashMap;
use std::path::PathBuf;

/// A credential: its `Debug` never shows it, and nothing serialises it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The credential itself, for the one header, key or comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the credential of `token_env` (a variable of `env`) or `token_file` (trimmed), at most one of the two;
/// `Ok(None)` when neither is set. The error names the variable or file, never the value.
pub(super) fn read(
    token_env: Option<&String>,
    token_file: Option<&PathBuf>,
    env: &HashMap<String, String>,
) -> Result<Option<Secret>, String> {
    match (token_env, token_file) {
        (Some(_), Some(_)) => Err("set token_env or token_file, not both".into()),
        (Some(var), None) => match env.get(var).map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Ok(Some(Secret(v.to_owned()))),
            _ => Err(format!(
                "token_env names {var:?}, which is not set or empty"
            )),
        },
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read token_file {}: {e}", path.display()))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(format!("token_file {} is empty", path.display()));
            }
            Ok(Some(Secret(text.to_owned())))
        }
        (None, None) => Ok(None),
    }
}
