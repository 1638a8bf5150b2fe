//! The demo server's resources: the sandbox's files as `file://` URIs, `demo://status`, the fake
//! `demo://config/credentials`, one `file://` template, pagination of the list, and subscriptions.

use serde_json::{json, Map, Value};

use super::protocol::{string_param, ProtocolError};
use super::seed::CREDENTIALS_TEXT;
use super::tools::ToolError;
use super::DemoServer;

/// `resources/list` page size: a sandbox with more entries than this is listed over several pages.
pub(super) const PAGE_SIZE: usize = 50;
pub(super) const STATUS_URI: &str = "demo://status";
pub(super) const CREDENTIALS_URI: &str = "demo://config/credentials";
/// The `file://` template's one variable, a file name at the sandbox root.
pub(super) const TEMPLATE_VARIABLE: &str = "name";

/// One listed resource; the fixed `demo://` ones come first, then the sandbox's files by path.
struct Listed {
    uri: String,
    name: String,
    title: Option<&'static str>,
    description: Option<&'static str>,
    mime_type: &'static str,
}

impl Listed {
    fn to_json(&self) -> Value {
        let mut fields = Map::new();
        fields.insert("uri".into(), json!(self.uri));
        fields.insert("name".into(), json!(self.name));
        if let Some(title) = self.title {
            fields.insert("title".into(), json!(title));
        }
        if let Some(description) = self.description {
            fields.insert("description".into(), json!(description));
        }
        fields.insert("mimeType".into(), json!(self.mime_type));
        Value::Object(fields)
    }
}

impl DemoServer {
    /// `resources/list`: one page, with `nextCursor` while more remain. The cursor is the offset of the
    /// page's first entry; anything else is rejected rather than silently restarting the list.
    pub(super) fn list_resources(
        &self,
        params: &Map<String, Value>,
    ) -> Result<Value, ProtocolError> {
        let start = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(Value::String(cursor)) => cursor
                .parse::<usize>()
                .map_err(|_| ProtocolError::InvalidParams("unknown `cursor`".into()))?,
            Some(_) => {
                return Err(ProtocolError::InvalidParams(
                    "`cursor` must be a string".into(),
                ))
            }
        };
        let all = self.listed_resources();
        if start > all.len() {
            return Err(ProtocolError::InvalidParams("unknown `cursor`".into()));
        }
        let end = all.len().min(start + PAGE_SIZE);
        let page: Vec<Value> = all[start..end].iter().map(Listed::to_json).collect();
        let mut result = json!({ "resources": page });
        if end < all.len() {
            result["nextCursor"] = json!(end.to_string());
        }
        Ok(result)
    }

    fn listed_resources(&self) -> Vec<Listed> {
        let mut listed = vec![
            Listed {
                uri: STATUS_URI.into(),
                name: "status".into(),
                title: Some("Demo server status"),
                description: Some("What the demo server serves, as plain text."),
                mime_type: "text/plain",
            },
            Listed {
                uri: CREDENTIALS_URI.into(),
                name: "credentials".into(),
                title: Some("Deployment credentials (fake)"),
                description: Some(
                    "Fake AWS credentials, so toolgate's redaction of resource contents can be seen.",
                ),
                mime_type: "text/plain",
            },
        ];
        listed.extend(self.sandbox.files().into_iter().map(|path| Listed {
            uri: self.file_uri(&path),
            mime_type: mime_type(&path),
            name: path,
            title: None,
            description: None,
        }));
        listed
    }

    pub(super) fn resource_templates(&self) -> Value {
        json!({"resourceTemplates": [{
            "uriTemplate": self.template_uri(),
            "name": "sandbox-file",
            "title": "A file at the sandbox root",
            "description": "Any file at the top of the demo sandbox, by name.",
            "mimeType": "text/plain",
        }]})
    }

    /// The template's URI, as `completion/complete` names it in a `ref/resource`.
    pub(super) fn template_uri(&self) -> String {
        format!("{}/{{{TEMPLATE_VARIABLE}}}", self.root_uri())
    }

    /// `resources/read`. A `file://` URI is read from the sandbox only: one naming a place outside it is
    /// "not found", exactly like a missing file, and never touches the host.
    pub(super) fn read_resource(
        &self,
        params: &Map<String, Value>,
    ) -> Result<Value, ProtocolError> {
        let uri = string_param(params, "uri")?;
        let not_found = || ProtocolError::ResourceNotFound {
            uri: uri.to_owned(),
        };
        let (text, mime) = match uri {
            STATUS_URI => (self.status_text(), "text/plain"),
            CREDENTIALS_URI => (CREDENTIALS_TEXT.to_owned(), "text/plain"),
            _ => {
                let relative = self.sandbox_path_of(uri).ok_or_else(not_found)?;
                let text = self.sandbox.read(&relative).map_err(|error| match error {
                    ToolError::TooLarge(_) | ToolError::NotText(_) | ToolError::Io { .. } => {
                        ProtocolError::Internal(error.to_string())
                    }
                    _ => not_found(),
                })?;
                (text, mime_type(&relative))
            }
        };
        Ok(json!({"contents": [{"uri": uri, "mimeType": mime, "text": text}]}))
    }

    /// `resources/subscribe` and `resources/unsubscribe`: acknowledged. The demo never changes a resource
    /// by itself, so a subscriber has no update to wait for and nothing needs remembering.
    pub(super) fn acknowledge_subscription(
        &self,
        params: &Map<String, Value>,
    ) -> Result<Value, ProtocolError> {
        string_param(params, "uri")?;
        Ok(json!({}))
    }

    fn status_text(&self) -> String {
        format!(
            "toolgate demo server {}: serving; {} file(s) in the sandbox.\n",
            env!("CARGO_PKG_VERSION"),
            self.sandbox.files().len()
        )
    }

    fn file_uri(&self, relative: &str) -> String {
        format!("{}/{}", self.root_uri(), percent_encode(relative))
    }

    fn root_uri(&self) -> String {
        let root = self.sandbox.root().to_string_lossy();
        format!("file://{}", percent_encode(root.trim_end_matches('/')))
    }

    /// The sandbox-relative path a `file://` URI names, or `None` when it names no place inside the sandbox.
    /// `..` is left for the sandbox to judge, which rejects any that climbs above the root.
    fn sandbox_path_of(&self, uri: &str) -> Option<String> {
        let rest = uri.strip_prefix("file://")?;
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        let path = percent_decode(path)?;
        let relative = std::path::Path::new(&path)
            .strip_prefix(self.sandbox.root())
            .ok()?;
        let relative = relative.to_str()?;
        (!relative.is_empty()).then(|| relative.to_owned())
    }
}

fn mime_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("md") => "text/markdown",
        Some("json") => "application/json",
        _ => "text/plain",
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `None` for a malformed escape or a result that is not UTF-8 (no sandbox file could have that name).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}
