//! Which path a message from an agent takes: the contract's rules for what is judged by `decision`, what is
//! plumbing, and what is a list answered item by item (docs/policies.md, "The entry points").

use crate::mcp::jsonrpc::{Kind, Message};

/// Proof that a message is one the contract forwards without a `decision` (plumbing, a list request, an agent's
/// answer to a server request). The field is private to this module, so only [`Route::of`] makes one and the
/// forward stage can demand it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unjudged(());

/// The list methods, answered with their items filtered by `visible`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl ListKind {
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The member of the result that holds the items.
    pub fn items_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }
}

/// The path of one message.
#[derive(Debug)]
pub(super) enum Route {
    /// `initialize`: opens a session (plumbing, but it also binds the session to the agent).
    Initialize(Unjudged),
    /// Protocol plumbing that carries no data: `ping`, `server/discover`, `notifications/*`. Scanned, and
    /// `plumbing_decision` may refuse it; never judged by `decision`.
    Plumbing(Unjudged),
    /// A list method: forwarded, and its answer filtered item by item.
    List(ListKind, Unjudged),
    /// The agent's answer to a request the upstream sent it (sampling, elicitation, roots): scanned and passed on.
    AgentAnswer(Unjudged),
    /// Everything else, known or not: judged by `decision`.
    Judged,
}

impl Route {
    pub(super) fn of(message: &Message) -> Route {
        let method = match &message.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => method.as_str(),
            Kind::Response { .. } => return Route::AgentAnswer(Unjudged(())),
        };
        match method {
            "initialize" => Route::Initialize(Unjudged(())),
            "ping" | "server/discover" => Route::Plumbing(Unjudged(())),
            m if m.starts_with("notifications/") => Route::Plumbing(Unjudged(())),
            "tools/list" => Route::List(ListKind::Tools, Unjudged(())),
            "resources/list" => Route::List(ListKind::Resources, Unjudged(())),
            "resources/templates/list" => Route::List(ListKind::ResourceTemplates, Unjudged(())),
            "prompts/list" => Route::List(ListKind::Prompts, Unjudged(())),
            _ => Route::Judged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(body: &str) -> Route {
        Route::of(&Message::parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn data_carrying_and_unknown_methods_are_judged() {
        for method in [
            "tools/call",
            "resources/read",
            "resources/subscribe",
            "prompts/get",
            "completion/complete",
            "logging/setLevel",
            "tasks/get",
            "frobnicate",
            // A near miss of a plumbing name is not plumbing.
            "pingx",
            "notification/x",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#);
            assert!(matches!(route(&body), Route::Judged), "{method}");
        }
    }

    #[test]
    fn plumbing_lists_and_answers_take_their_own_paths() {
        assert!(matches!(
            route(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Route::Plumbing(_)
        ));
        assert!(matches!(
            route(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Route::Plumbing(_)
        ));
        assert!(matches!(
            route(r#"{"jsonrpc":"2.0","id":1,"method":"resources/templates/list"}"#),
            Route::List(ListKind::ResourceTemplates, _)
        ));
        assert!(matches!(
            route(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Route::AgentAnswer(_)
        ));
        assert!(matches!(
            route(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            Route::Initialize(_)
        ));
    }
}
