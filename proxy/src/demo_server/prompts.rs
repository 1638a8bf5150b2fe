//! The demo server's prompts (`summarise`, `code_review`) and argument completion for them and for the
//! `file://` resource template.

use serde_json::{json, Map, Value};

use super::protocol::{object_param, string_param, ProtocolError};
use super::resources::TEMPLATE_VARIABLE;
use super::DemoServer;

/// MCP caps one completion answer at 100 values.
const MAX_COMPLETIONS: usize = 100;
/// Canned openings offered for `summarise`'s `text`, so a client's completion UI has something to show.
const SUMMARISE_SUGGESTIONS: [&str; 3] = [
    "The quarterly report shows revenue up 12% and costs flat.",
    "Meeting notes: ship the demo on Friday, review the policies first.",
    "This README explains how toolgate judges each tool call.",
];

pub(super) fn prompt_definitions() -> Value {
    json!({"prompts": [
        {
            "name": "summarise",
            "title": "Summarise a text",
            "description": "Ask the model for a three-sentence summary of the given text.",
            "arguments": [{"name": "text", "description": "The text to summarise.", "required": true}],
        },
        {
            "name": "code_review",
            "title": "Review a sandbox file",
            "description": "Ask the model to review a file from the sandbox; the file's text is included.",
            "arguments": [{
                "name": "path",
                "description": "Path of the file inside the sandbox, e.g. deploy.env.",
                "required": true,
            }],
        },
    ]})
}

impl DemoServer {
    /// `prompts/get`. `code_review` embeds the file's text, so a file with a secret makes a prompt that
    /// leaks it: one more result for toolgate to redact.
    pub(super) fn get_prompt(&self, params: &Map<String, Value>) -> Result<Value, ProtocolError> {
        let name = string_param(params, "name")?;
        let arguments = object_param(params, "arguments")?
            .cloned()
            .unwrap_or_default();
        let (description, text) = match name {
            "summarise" => {
                let text = string_param(&arguments, "text")?;
                (
                    "A summary request",
                    format!("Summarise the following text in three sentences.\n\n{text}"),
                )
            }
            "code_review" => {
                let path = string_param(&arguments, "path")?;
                let content = self
                    .sandbox
                    .read(path)
                    .map_err(|error| ProtocolError::InvalidParams(error.to_string()))?;
                (
                    "A code review request",
                    format!(
                        "Review the file `{path}` for bugs, security problems and leaked secrets.\n\n{content}"
                    ),
                )
            }
            other => {
                return Err(ProtocolError::InvalidParams(format!(
                    "unknown prompt `{other}`"
                )))
            }
        };
        Ok(json!({
            "description": description,
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        }))
    }

    /// `completion/complete` for `summarise`'s `text`, `code_review`'s `path` and the file template's
    /// `name`: values that start with what was typed (case-insensitively).
    pub(super) fn complete(&self, params: &Map<String, Value>) -> Result<Value, ProtocolError> {
        let reference = object_param(params, "ref")?
            .ok_or_else(|| ProtocolError::InvalidParams("`ref` must be an object".into()))?;
        let argument = object_param(params, "argument")?
            .ok_or_else(|| ProtocolError::InvalidParams("`argument` must be an object".into()))?;
        let argument_name = string_param(argument, "name")?;
        let typed = string_param(argument, "value")?;
        let candidates: Vec<String> = match string_param(reference, "type")? {
            "ref/prompt" => match (string_param(reference, "name")?, argument_name) {
                ("summarise", "text") => SUMMARISE_SUGGESTIONS.map(str::to_owned).to_vec(),
                ("code_review", "path") => self.sandbox.files(),
                ("summarise" | "code_review", _) => Vec::new(),
                (other, _) => {
                    return Err(ProtocolError::InvalidParams(format!(
                        "unknown prompt `{other}`"
                    )))
                }
            },
            "ref/resource" => {
                if string_param(reference, "uri")? != self.template_uri() {
                    return Err(ProtocolError::InvalidParams(
                        "`ref.uri` is not a resource template of this server".into(),
                    ));
                }
                if argument_name == TEMPLATE_VARIABLE {
                    // The variable is one path segment: only files at the sandbox root fit it.
                    self.sandbox
                        .files()
                        .into_iter()
                        .filter(|path| !path.contains('/'))
                        .collect()
                } else {
                    Vec::new()
                }
            }
            other => {
                return Err(ProtocolError::InvalidParams(format!(
                    "unknown reference type `{other}`"
                )))
            }
        };
        let typed = typed.to_lowercase();
        let matching: Vec<String> = candidates
            .into_iter()
            .filter(|candidate| candidate.to_lowercase().starts_with(&typed))
            .collect();
        let total = matching.len();
        let values: Vec<String> = matching.into_iter().take(MAX_COMPLETIONS).collect();
        Ok(json!({"completion": {
            "values": values,
            "total": total,
            "hasMore": total > MAX_COMPLETIONS,
        }}))
    }
}
