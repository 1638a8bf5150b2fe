//! Where each line the child writes on stdout goes: a response to the exchange waiting for it, a request of the
//! child's to the one agent it can belong to (or refused), a notification to the agent it belongs to (or
//! dropped): see [`super::exchange`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::exchange::{Pending, Routed};
use super::{encode, preview, Shared};

/// What the reader needs to route the child's messages.
pub(super) struct Router<'a> {
    pub shared: &'a Shared,
    pub pending: Arc<Pending>,
    pub writer: mpsc::Sender<Vec<u8>>,
    /// How long an agent has to answer a request of the child's delivered to it.
    pub answer_within: Duration,
}

impl Router<'_> {
    /// One stdout line (a message or a batch).
    pub(super) fn line(&self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Array(batch)) => {
                for message in batch {
                    self.message(message);
                }
            }
            Ok(message) => self.message(message),
            Err(_) => {
                tracing::warn!(upstream = %self.shared.name, line = %preview(line), "ignored a line from the child that is not JSON");
            }
        }
    }

    fn message(&self, message: Value) {
        let name = &self.shared.name;
        let Some(object) = message.as_object() else {
            tracing::warn!(upstream = %name, "ignored a JSON value from the child that is not a JSON-RPC message");
            return;
        };
        if let Some(method) = object.get("method").and_then(Value::as_str) {
            let is_request = object.get("id").is_some_and(|id| !id.is_null());
            let tools_changed = method == "notifications/tools/list_changed";
            if is_request {
                self.request(message);
            } else {
                self.notification(tools_changed, message);
            }
            return;
        }
        if object.contains_key("result") || object.contains_key("error") {
            match object.get("id").and_then(Value::as_u64) {
                Some(id) => {
                    if !self.pending.complete(id, message) {
                        tracing::debug!(upstream = %name, upstream_id = id, "dropped a late or unknown response");
                    }
                }
                None => {
                    tracing::debug!(upstream = %name, "dropped a response whose id toolgate never sent")
                }
            }
            return;
        }
        tracing::warn!(upstream = %name, "ignored a JSON-RPC message that is neither request, notification nor response");
    }

    /// A notification of the child's: routed to its agent, or dropped. Logged without its method or content.
    fn notification(&self, tools_changed: bool, message: Value) {
        if tools_changed {
            if let Some(f) = self.shared.on_tools_changed.get() {
                f();
            }
        }
        if let Err(why) = self.pending.notify(message) {
            tracing::debug!(upstream = %self.shared.name, why, "dropped a notification of the child's");
        }
    }

    /// A request of the child's: routed to its agent (with a deadline for the answer), or refused. Logged
    /// without its method: the child names it, and the audit log records it in its checked form.
    fn request(&self, message: Value) {
        let name = &self.shared.name;
        match self.pending.route(message, || self.shared.next_id()) {
            Routed::Delivered { id } => {
                tracing::debug!(upstream = %name, toolgate_id = id, "routed a server-to-client request to its agent");
                let pending = Arc::downgrade(&self.pending);
                let writer = self.writer.clone();
                let within = self.answer_within;
                let name = name.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(within).await;
                    let Some(line) = pending.upgrade().and_then(|p| p.expire(id)) else {
                        return;
                    };
                    tracing::info!(upstream = %name, toolgate_id = id, "the agent did not answer a server-to-client request in time");
                    if writer.try_send(line).is_err() {
                        tracing::warn!(upstream = %name, "could not queue the refusal of an unanswered server-to-client request");
                    }
                });
            }
            Routed::Refused(refusal) => {
                let reason = refusal
                    .pointer("/error/data/reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::info!(upstream = %name, reason, "refused a server-to-client request");
                // try_send, not send: waiting here could deadlock with a child that is blocked writing to stdout
                // while its stdin is full.
                if let Ok(line) = encode(&refusal) {
                    if self.writer.try_send(line).is_err() {
                        tracing::warn!(upstream = %name, "could not queue the refusal of a server-to-client request");
                    }
                }
            }
        }
    }
}
