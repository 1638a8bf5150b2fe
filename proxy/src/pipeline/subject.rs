//! What a judged message is about: the tool, resource or prompt its params name, read and checked once, and
//! the fields of the Rego input and of the audit event that follow from it.

use serde_json::Value;
use toolgate_engine::input::{
    classify, resource_target, DefinitionInfo, PromptInput, ResourceInput, ToolClass, ToolInput,
};

use super::refusal::Refusal;
use crate::mcp::jsonrpc::Message;

/// The subject of one judged request.
pub(super) enum Subject<'m> {
    /// `tools/call`.
    Tool {
        name: &'m str,
        arguments: &'m Value,
        class: ToolClass,
        definition: DefinitionInfo,
    },
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`, and a completion of a resource template.
    Resource { uri: &'m str, target: String },
    /// `prompts/get`, and a completion of a prompt's argument.
    Prompt {
        name: &'m str,
        arguments: Option<&'m Value>,
    },
    /// Any other method (logging, tasks, sampling, unknown ones): judged on its params alone.
    Params,
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| Value::Object(Default::default()));

impl<'m> Subject<'m> {
    /// Reads the subject of `message`, refusing params that do not say what the method needs. `definition` is
    /// asked only for a tool call (it is the pinned state of the tool's definition).
    pub(super) fn of(
        message: &'m Message,
        method: &str,
        workdir: &str,
        definition: impl FnOnce(&str) -> DefinitionInfo,
    ) -> Result<Subject<'m>, Refusal> {
        let invalid = |message_text: &str| Refusal::InvalidParams {
            id: message.id().cloned(),
            message: message_text.to_owned(),
        };
        let params = match message.params() {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p),
            Some(_) => return Err(invalid("params must be an object")),
        };
        let field = |name: &str| params.and_then(|p| p.get(name));
        match method {
            "tools/call" => {
                let Some(name) = field("name").and_then(Value::as_str) else {
                    return Err(invalid("tools/call needs params.name (a string)"));
                };
                let arguments = match field("arguments") {
                    None | Some(Value::Null) => &*EMPTY_OBJECT,
                    Some(v @ Value::Object(_)) => v,
                    Some(_) => {
                        return Err(invalid("tools/call params.arguments must be an object"))
                    }
                };
                Ok(Subject::Tool {
                    name,
                    arguments,
                    class: classify(name, arguments, workdir),
                    definition: definition(name),
                })
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = field("uri").and_then(Value::as_str) else {
                    return Err(invalid(&format!("{method} needs params.uri (a string)")));
                };
                resource(uri, workdir).ok_or_else(|| invalid("params.uri is not an absolute URI"))
            }
            "prompts/get" => {
                let Some(name) = field("name").and_then(Value::as_str) else {
                    return Err(invalid("prompts/get needs params.name (a string)"));
                };
                let arguments = match field("arguments") {
                    None | Some(Value::Null) => None,
                    Some(v @ Value::Object(_)) => Some(v),
                    Some(_) => {
                        return Err(invalid("prompts/get params.arguments must be an object"))
                    }
                };
                Ok(Subject::Prompt { name, arguments })
            }
            // A completion is about the prompt or resource template it completes an argument of.
            "completion/complete" => {
                let reference = field("ref");
                let kind = reference
                    .and_then(|r| r.get("type"))
                    .and_then(Value::as_str);
                match kind {
                    Some("ref/prompt") => match reference
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                    {
                        Some(name) => Ok(Subject::Prompt {
                            name,
                            arguments: None,
                        }),
                        None => Err(invalid("completion/complete ref/prompt needs ref.name")),
                    },
                    Some("ref/resource") => {
                        match reference.and_then(|r| r.get("uri")).and_then(Value::as_str) {
                            Some(uri) => Ok(Subject::Resource {
                                uri,
                                target: resource_target(uri, workdir),
                            }),
                            None => Err(invalid("completion/complete ref/resource needs ref.uri")),
                        }
                    }
                    _ => Err(invalid(
                        "completion/complete needs params.ref of type ref/prompt or ref/resource",
                    )),
                }
            }
            _ => Ok(Subject::Params),
        }
    }

    /// The `tool_name` of the audit event and escalation: the tool's or the prompt's name.
    pub(super) fn name(&self) -> Option<&'m str> {
        match self {
            Subject::Tool { name, .. } | Subject::Prompt { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The `action` of the audit event.
    pub(super) fn action(&self) -> Option<&'static str> {
        match self {
            Subject::Tool { class, .. } => Some(class.action.as_str()),
            Subject::Resource { .. } => Some("read"),
            _ => None,
        }
    }

    /// The `target` of the audit event: the normalised resource acted on.
    pub(super) fn target(&self) -> Option<&str> {
        match self {
            Subject::Tool { class, .. } => class.target.as_deref(),
            Subject::Resource { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The value `input_hash` covers: a tool's arguments (docs/audit-format.md), otherwise the whole params.
    pub(super) fn hashed<'a>(&'a self, params: Option<&'a Value>) -> &'a Value {
        match self {
            Subject::Tool { arguments, .. } => arguments,
            _ => params.unwrap_or(&Value::Null),
        }
    }

    pub(super) fn tool_input(&self) -> Option<ToolInput<'_>> {
        match self {
            Subject::Tool {
                name,
                arguments,
                class,
                definition,
            } => Some(ToolInput {
                name,
                arguments: Some(arguments),
                class,
                definition: Some(definition),
            }),
            _ => None,
        }
    }

    pub(super) fn resource_input(&self) -> Option<ResourceInput<'_>> {
        match self {
            Subject::Resource { uri, target } => Some(ResourceInput { uri, target }),
            _ => None,
        }
    }

    pub(super) fn prompt_input(&self) -> Option<PromptInput<'_>> {
        match self {
            Subject::Prompt { name, arguments } => Some(PromptInput {
                name,
                arguments: *arguments,
            }),
            _ => None,
        }
    }
}

/// A resource URI must be absolute (have a scheme) to be judged; its target is normalised by the engine.
fn resource<'m>(uri: &'m str, workdir: &str) -> Option<Subject<'m>> {
    url::Url::parse(uri.trim()).ok()?;
    Some(Subject::Resource {
        uri,
        target: resource_target(uri, workdir),
    })
}
