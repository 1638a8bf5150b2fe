//! The messages of one request in flight on a stdio child, and the child's own requests (sampling, elicitation,
//! roots, …) routed to the agent whose request they belong to.
//!
//! One child serves many agents, and a request it sends carries no agent. toolgate routes one only when that is
//! unambiguous: every request in flight on the child belongs to one agent identity (its [`Owner`]), and one of
//! them can carry it to the agent (a judged request, whose answer can become an SSE stream). Anything else is
//! refused to the child (`-31001`, `data.reason`) and the agent of each request in flight is told
//! ([`Inbound::Unroutable`]), so the refusal is audited in its name. A routed request travels under a toolgate
//! id; the agent's answer goes back with the child's own id only if that id was given to that agent, and an
//! answer that never comes is refused to the child (`-31004`) after the upstream timeout.
//!
//! The child's notifications follow the same rule, with one more way to be sure: a progress notification names
//! the request it reports on by its progress token, which toolgate replaced with its own (the upstream id) when
//! it sent the request, so it reaches that request's agent with the agent's token restored, whoever else is in
//! flight. Any other notification (a log message, a resource update) is delivered only while one agent has
//! requests in flight; otherwise it is dropped, since it could be anybody's ([`Pending::notify`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{encode, lock, StdioError};
use crate::mcp::jsonrpc;

/// Requests of the child queued for one exchange before it reads them; beyond that the child is refused.
const QUEUED_PER_EXCHANGE: usize = 16;

/// One agent identity, as the pipeline names it (tenant and subject); opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(Arc<str>);

impl Owner {
    pub fn new(key: &str) -> Owner {
        Owner(Arc::from(key))
    }
}

/// Who sent a request to the child, and whether its answer can carry the child's requests to the agent.
#[derive(Debug, Clone)]
pub struct Requester {
    pub owner: Owner,
    pub delivers: bool,
}

/// What an exchange receives, in the order the child wrote it.
#[derive(Debug)]
pub enum Inbound {
    /// A request of the child's routed to this exchange's agent. Its `id` is toolgate's; the agent answers it
    /// with [`super::StdioUpstream::answer`].
    Request(Value),
    /// A request of the child's refused because it could not be routed; told to each agent with a request in
    /// flight, so the refusal is audited in its name.
    Unroutable(Unroutable),
    /// A notification of the child's for this exchange's agent (progress with the agent's token restored, a
    /// log message): to be scanned and redacted before the agent sees it.
    Notification(Value),
    /// The child's answer, with the agent's own id restored. Always the last message.
    Response(Value),
}

/// A request of the child's that toolgate refused to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    /// The child's method name (untrusted: the pipeline records it only in its audited form).
    pub method: String,
    pub reason: UnroutableReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnroutableReason {
    /// Requests of more than one agent were in flight.
    Ambiguous,
    /// The one agent in flight has no request whose answer can carry it (a list or plumbing request).
    NoStream,
    /// No agent had a request in flight.
    NoRequest,
    /// The agent's exchange already holds as many of the child's requests as it may.
    Busy,
}

impl UnroutableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnroutableReason::Ambiguous => "ambiguous",
            UnroutableReason::NoStream => "no_stream",
            UnroutableReason::NoRequest => "no_request",
            UnroutableReason::Busy => "busy",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            UnroutableReason::Ambiguous => "requests of more than one agent are in flight",
            UnroutableReason::NoStream => "the agent's requests in flight cannot carry it",
            UnroutableReason::NoRequest => "no agent has a request in flight",
            UnroutableReason::Busy => "too many requests are waiting for the agent",
        }
    }
}

/// When an exchange last heard of its request, and how many of the child's requests routed to it still await
/// the agent's answer: its deadline runs from the last news, and not while the agent owes an answer (that
/// answer has a deadline of its own).
#[derive(Debug)]
struct Activity {
    last: Mutex<Instant>,
    awaiting: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            last: Mutex::new(Instant::now()),
            awaiting: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        *lock(&self.last) = Instant::now();
    }

    fn settled(&self) {
        self.touch();
        self.awaiting.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Waiter {
    requester: Option<Requester>,
    /// The agent's own progress token, replaced by the upstream id on the way to the child.
    progress_token: Option<Value>,
    response: oneshot::Sender<Value>,
    inbound: mpsc::Sender<Inbound>,
    activity: Arc<Activity>,
}

/// A request of the child's delivered to one agent, awaiting its answer.
struct Delivered {
    child_id: Value,
    owner: Owner,
    activity: Arc<Activity>,
}

/// What became of a request of the child's.
#[derive(Debug)]
pub(super) enum Routed {
    /// Queued for its agent under toolgate's `id`.
    Delivered { id: u64 },
    /// Refused: this answer goes to the child.
    Refused(Value),
}

/// Requests waiting for an answer (by upstream id) and the child's requests waiting for an agent's (by toolgate
/// id). Closing drops every sender, which wakes each waiter with an error (the child is gone), forgets every
/// delivered request and refuses new entries.
#[derive(Default)]
pub(super) struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    closed: bool,
    waiting: HashMap<u64, Waiter>,
    delivered: HashMap<u64, Delivered>,
}

impl PendingState {
    /// Per agent with requests in flight: its oldest request (told of a refusal) and its oldest one that can
    /// deliver a message of the child's.
    fn owners(&self) -> Vec<(Owner, u64, Option<u64>)> {
        let mut owners: Vec<(Owner, u64, Option<u64>)> = Vec::new();
        for (&id, waiter) in &self.waiting {
            let Some(requester) = &waiter.requester else {
                continue;
            };
            let delivers = requester.delivers.then_some(id);
            match owners.iter_mut().find(|(o, ..)| *o == requester.owner) {
                Some((_, oldest, deliverer)) => {
                    *oldest = (*oldest).min(id);
                    *deliverer = match (*deliverer, delivers) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => owners.push((requester.owner.clone(), id, delivers)),
            }
        }
        owners
    }
}

/// The parts of an exchange that the waiter side keeps.
pub(super) struct Registered {
    response: oneshot::Receiver<Value>,
    inbound: mpsc::Receiver<Inbound>,
    activity: Arc<Activity>,
}

impl Pending {
    pub(super) fn register(
        &self,
        id: u64,
        requester: Option<Requester>,
        progress_token: Option<Value>,
    ) -> Result<Registered, StdioError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(StdioError::Unavailable);
        }
        let (response_tx, response) = oneshot::channel();
        let (inbound_tx, inbound) = mpsc::channel(QUEUED_PER_EXCHANGE);
        let activity = Activity::new();
        state.waiting.insert(
            id,
            Waiter {
                requester,
                progress_token,
                response: response_tx,
                inbound: inbound_tx,
                activity: activity.clone(),
            },
        );
        Ok(Registered {
            response,
            inbound,
            activity,
        })
    }

    /// Hands a response to its waiter; false when nobody waits for it (late or unknown).
    pub(super) fn complete(&self, id: u64, response: Value) -> bool {
        let waiter = lock(&self.state).waiting.remove(&id);
        waiter.is_some_and(|w| w.response.send(response).is_ok())
    }

    pub(super) fn forget(&self, id: u64) {
        lock(&self.state).waiting.remove(&id);
    }

    pub(super) fn close(&self) {
        let (waiting, delivered) = {
            let mut state = lock(&self.state);
            state.closed = true;
            (
                std::mem::take(&mut state.waiting),
                std::mem::take(&mut state.delivered),
            )
        };
        drop((waiting, delivered));
    }

    /// Routes one request of the child's (an object with a `method` and a non-null `id`); `next_id` gives the
    /// toolgate id it travels under when it is delivered.
    pub(super) fn route(&self, mut message: Value, next_id: impl FnOnce() -> u64) -> Routed {
        let child_id = message.get("id").cloned().unwrap_or(Value::Null);
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut state = lock(&self.state);
        let owners = state.owners();
        let reason = match owners.as_slice() {
            [] => UnroutableReason::NoRequest,
            [(owner, _, Some(deliverer))] => {
                let id = next_id();
                message["id"] = Value::from(id);
                let waiter = &state.waiting[deliverer];
                let activity = waiter.activity.clone();
                match waiter.inbound.try_send(Inbound::Request(message)) {
                    Ok(()) => {
                        activity.awaiting.fetch_add(1, Ordering::SeqCst);
                        activity.touch();
                        let owner = owner.clone();
                        state.delivered.insert(
                            id,
                            Delivered {
                                child_id,
                                owner,
                                activity,
                            },
                        );
                        return Routed::Delivered { id };
                    }
                    Err(_) => UnroutableReason::Busy,
                }
            }
            [_] => UnroutableReason::NoStream,
            _ => UnroutableReason::Ambiguous,
        };
        if reason != UnroutableReason::Busy {
            for (_, oldest, _) in &owners {
                let notice = Inbound::Unroutable(Unroutable {
                    method: method.clone(),
                    reason,
                });
                // A full queue already holds notices enough: this one is logged by the reader only.
                let _ = state.waiting[oldest].inbound.try_send(notice);
            }
        }
        Routed::Refused(jsonrpc::error_response(
            Some(&child_id),
            jsonrpc::POLICY_DENIED,
            format!(
                "toolgate could not route the request to one agent: {}",
                reason.describe()
            ),
            Some(json!({ "reason": reason.as_str() })),
        ))
    }

    /// Routes one notification of the child's to the exchange it belongs to: a progress notification by its
    /// token (restored to the agent's), any other while exactly one agent has requests in flight (to its oldest
    /// request that can carry it). `Err` says why it was dropped.
    pub(super) fn notify(&self, mut message: Value) -> Result<(), &'static str> {
        let state = lock(&self.state);
        let progress =
            message.get("method").and_then(Value::as_str) == Some("notifications/progress");
        let id = if progress {
            let id = message
                .pointer("/params/progressToken")
                .and_then(Value::as_u64)
                .ok_or("its progress token is not one toolgate gave")?;
            let waiter = state
                .waiting
                .get(&id)
                .ok_or("the request it reports on is no longer in flight")?;
            let token = waiter
                .progress_token
                .clone()
                .ok_or("the request it names asked for no progress")?;
            message["params"]["progressToken"] = token;
            id
        } else {
            match state.owners().as_slice() {
                [(_, _, Some(deliverer))] => *deliverer,
                [] => return Err("no agent has a request in flight"),
                [_] => return Err("the agent's requests in flight cannot carry it"),
                _ => return Err("requests of more than one agent are in flight"),
            }
        };
        let waiter = &state.waiting[&id];
        if !waiter.requester.as_ref().is_some_and(|r| r.delivers) {
            return Err("the request it reports on cannot carry it");
        }
        waiter
            .inbound
            .try_send(Inbound::Notification(message))
            .map_err(|_| "the agent's queue is full")?;
        // News of the request: like any message of the child's for it, it restarts the answer's clock.
        waiter.activity.touch();
        Ok(())
    }

    /// The answer to a delivered request, as the line to write to the child: only `owner` may answer what was
    /// delivered to it. Answered once; an unknown id, another agent's or an expired one is [`StdioError::NotAwaited`].
    pub(super) fn answer(&self, owner: &Owner, mut answer: Value) -> Result<Vec<u8>, StdioError> {
        let Some(object) = answer.as_object() else {
            return Err(super::protocol("an answer must be a JSON object"));
        };
        if object.contains_key("method")
            || !(object.contains_key("result") || object.contains_key("error"))
        {
            return Err(super::protocol("an answer needs a result or an error"));
        }
        let id = object
            .get("id")
            .and_then(Value::as_u64)
            .ok_or(StdioError::NotAwaited)?;
        let delivered = {
            let mut state = lock(&self.state);
            match state.delivered.get(&id) {
                Some(d) if d.owner == *owner => state.delivered.remove(&id),
                _ => None,
            }
        }
        .ok_or(StdioError::NotAwaited)?;
        answer["id"] = delivered.child_id;
        delivered.activity.settled();
        encode(&answer)
    }

    /// A delivered request whose answer did not come in time: forgotten, and the line refusing it to the child.
    pub(super) fn expire(&self, id: u64) -> Option<Vec<u8>> {
        let delivered = lock(&self.state).delivered.remove(&id)?;
        delivered.activity.settled();
        let refusal = jsonrpc::error_response(
            Some(&delivered.child_id),
            jsonrpc::UPSTREAM_TIMEOUT,
            "toolgate: the agent did not answer in time",
            None,
        );
        encode(&refusal).ok()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.state).waiting.len()
    }

    #[cfg(test)]
    pub(super) fn delivered(&self) -> usize {
        lock(&self.state).delivered.len()
    }
}

/// Whether the upstream was shut down: an exchange cut short then says `Closed` rather than `Unavailable`.
pub(super) type ClosedCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// One request in flight on the child: the child's requests routed to its agent, then its answer. Dropping it
/// forgets the request, so a late answer is dropped by the reader.
pub struct Exchange {
    registered: Registered,
    pending: Arc<Pending>,
    upstream_id: u64,
    original_id: Value,
    timeout: Duration,
    answered: bool,
    closed: ClosedCheck,
}

impl Exchange {
    pub(super) fn new(
        registered: Registered,
        pending: Arc<Pending>,
        upstream_id: u64,
        original_id: Value,
        timeout: Duration,
        closed: ClosedCheck,
    ) -> Exchange {
        Exchange {
            registered,
            pending,
            upstream_id,
            original_id,
            timeout,
            answered: false,
            closed,
        }
    }

    /// The next message of this exchange. The answer must come within the timeout of the last news of the
    /// request (the child's last message for it, or the agent's last answer to a request of the child's), and
    /// the clock stops while the agent owes an answer. After the answer, [`StdioError::Closed`].
    pub async fn next(&mut self) -> Result<Inbound, StdioError> {
        if self.answered {
            return Err(StdioError::Closed);
        }
        loop {
            let activity = &self.registered.activity;
            let deadline = if activity.awaiting.load(Ordering::SeqCst) > 0 {
                Instant::now() + self.timeout
            } else {
                *lock(&activity.last) + self.timeout
            };
            tokio::select! {
                biased;
                // Drained first: whatever the child sent before its answer reaches the agent before it.
                Some(inbound) = self.registered.inbound.recv() => return Ok(inbound),
                response = &mut self.registered.response => {
                    self.answered = true;
                    return match response {
                        Ok(mut response) => {
                            if let Some(object) = response.as_object_mut() {
                                object.insert("id".to_owned(), self.original_id.clone());
                            }
                            Ok(Inbound::Response(response))
                        }
                        Err(_) if (self.closed)() => Err(StdioError::Closed),
                        Err(_) => Err(StdioError::Unavailable),
                    };
                }
                () = tokio::time::sleep_until(deadline) => {
                    let activity = &self.registered.activity;
                    let quiet = activity.awaiting.load(Ordering::SeqCst) == 0
                        && *lock(&activity.last) + self.timeout <= Instant::now();
                    if quiet {
                        self.answered = true;
                        return Err(StdioError::Timeout);
                    }
                }
            }
        }
    }

    /// The answer, skipping anything else (for requests no agent's request of the child's can be routed to).
    pub(super) async fn response(mut self) -> Result<Value, StdioError> {
        loop {
            if let Inbound::Response(response) = self.next().await? {
                return Ok(response);
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.pending.forget(self.upstream_id);
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("upstream_id", &self.upstream_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(owner: &str, delivers: bool) -> Option<Requester> {
        Some(Requester {
            owner: Owner::new(owner),
            delivers,
        })
    }

    fn progress(token: Value) -> Value {
        json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": token, "progress": 1 } })
    }

    fn log() -> Value {
        json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "x" } })
    }

    fn received(registered: &mut Registered) -> Option<Value> {
        match registered.inbound.try_recv() {
            Ok(Inbound::Notification(n)) => Some(n),
            Ok(other) => panic!("{other:?}"),
            Err(_) => None,
        }
    }

    #[test]
    fn progress_goes_by_toolgates_token_with_the_agents_restored() {
        let pending = Pending::default();
        let mut a = pending
            .register(1, requester("a", true), Some(json!("shared")))
            .unwrap();
        let mut b = pending
            .register(2, requester("b", true), Some(json!("shared")))
            .unwrap();
        pending.notify(progress(json!(2))).unwrap();
        assert_eq!(
            received(&mut b).unwrap()["params"]["progressToken"],
            "shared"
        );
        assert!(received(&mut a).is_none());
        // Tokens toolgate never gave, or of requests gone, or that asked for none, reach nobody.
        assert!(pending.notify(progress(json!("shared"))).is_err());
        assert!(pending.notify(progress(json!(9))).is_err());
        let _c = pending.register(3, requester("c", true), None).unwrap();
        assert!(pending.notify(progress(json!(3))).is_err());
        // A request whose answer cannot stream cannot carry one.
        let _d = pending
            .register(4, requester("d", false), Some(json!("t")))
            .unwrap();
        assert!(pending.notify(progress(json!(4))).is_err());
        assert!(received(&mut a).is_none() && received(&mut b).is_none());
    }

    #[test]
    fn other_notifications_reach_only_a_lone_agent_in_flight() {
        let pending = Pending::default();
        assert_eq!(
            pending.notify(log()),
            Err("no agent has a request in flight")
        );
        let mut a1 = pending.register(1, requester("a", true), None).unwrap();
        let mut a2 = pending.register(2, requester("a", true), None).unwrap();
        pending.notify(log()).unwrap();
        // To the agent's oldest request that can carry it.
        assert!(received(&mut a1).is_some());
        assert!(received(&mut a2).is_none());
        let mut b = pending.register(3, requester("b", true), None).unwrap();
        assert!(pending.notify(log()).is_err());
        assert!(received(&mut a1).is_none() && received(&mut b).is_none());
        // Toolgate's own requests (no agent) do not count as anybody's.
        let pending = Pending::default();
        let _own = pending.register(1, None, None).unwrap();
        assert!(pending.notify(log()).is_err());
    }
}
