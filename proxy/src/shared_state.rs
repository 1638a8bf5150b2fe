//! The state-change bus: how a change one instance commits reaches every instance's caches within a second.
//!
//! Several toolgate instances may share one PostgreSQL database. Each keeps in memory what the request path
//! reads (session bindings, the disabled agents, tool pins, prompt pins) and holds calls on escalations; the
//! database is the truth. Triggers on those tables send a notification on the channel `toolgate_state` in the
//! transaction of each change (migration 0009: sent if and only if the change commits); a policy reload asked
//! of one instance through the admin API is announced on the same channel by that instance. Each instance
//! listens on one connection of its own and turns what it hears into [`Change`]s on this bus. A dropped
//! listening connection may have missed notifications: once it is back, the bus sends [`Change::Resync`] and
//! every cache reloads whole. No poll runs while nothing changes.
//!
//! With SQLite one instance owns the file, and the bus is in-process only: the modules that change state also
//! update their own caches, and publish here only what a background task must wake for (a new escalation's
//! expiry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::audit::store::{Heard, Notice};
use crate::audit::AuditStore;

/// How many changes a slow subscriber may fall behind before it is told to resync instead.
const CAPACITY: usize = 4096;

/// How long to wait before listening again after the database refused.
const RETRY: Duration = Duration::from_secs(1);

/// What changed. Keys are hashes or ids, never secrets or agent names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session binding ended (by id hash, SHA-256 hex of the session id), on any instance.
    SessionEnded(String),
    /// An agent was disabled or enabled.
    Agents,
    /// An escalation was opened, decided or expired (by id).
    Escalation(String),
    /// A tool definition was stored, approved or changed.
    Tools,
    /// A prompt was pinned or unpinned.
    PromptPins,
    /// An instance (by its chain id) reloaded its policy folder on `POST /api/v1/policy/reload`: every other
    /// instance reloads its own.
    PolicyReload(String),
    /// Changes may have been missed (the listening connection was lost, or a subscriber fell behind): reload
    /// everything.
    Resync,
}

impl Change {
    fn of(notice: Notice) -> Option<Change> {
        Some(match notice.kind.as_str() {
            "session_end" => Change::SessionEnded(notice.key),
            "agents" => Change::Agents,
            "escalation" => Change::Escalation(notice.key),
            "tools" => Change::Tools,
            "prompt_pins" => Change::PromptPins,
            "policy_reload" => Change::PolicyReload(notice.key),
            _ => return None,
        })
    }
}

/// The bus. Cheap to clone; every clone publishes to the same subscribers.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Change>,
    /// Whether changes committed by other instances arrive here (PostgreSQL, once [`Bus::listen`] started).
    listening: Arc<AtomicBool>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// An in-process bus; [`Bus::listen`] connects it to the database's notifications.
    pub fn new() -> Bus {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
            listening: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether other instances' changes arrive on this bus: if not, whoever must see them polls the database.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Publishes a change made here to this instance's subscribers (none listening is fine).
    pub fn publish(&self, change: Change) {
        let _ = self.tx.send(change);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }

    /// PostgreSQL: starts listening for the changes every instance commits (start-up fails if the first
    /// connection does); the task ends when the last clone of the bus is dropped. SQLite: nothing to do.
    pub async fn listen(&self, store: &AuditStore) -> Result<(), crate::audit::AuditError> {
        let Some(listener) = store.state_listener().await? else {
            return Ok(());
        };
        self.listening.store(true, Ordering::Relaxed);
        let weak = self.tx.downgrade();
        let store = store.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut failing = false;
            loop {
                let Some(current) = listener.as_mut() else {
                    tokio::time::sleep(RETRY).await;
                    if weak.upgrade().is_none() {
                        return;
                    }
                    match store.state_listener().await {
                        Ok(fresh) => {
                            listener = fresh;
                            tracing::info!("listening for state changes again; caches reload");
                            failing = false;
                            if let Some(tx) = weak.upgrade() {
                                let _ = tx.send(Change::Resync);
                            }
                        }
                        Err(e) if !failing => {
                            tracing::error!(error = %e, "cannot listen for state changes; retrying");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    continue;
                };
                let heard = current.next().await;
                let Some(tx) = weak.upgrade() else { return };
                match heard {
                    Ok(Heard::Notice(notice)) => {
                        if let Some(change) = Change::of(notice) {
                            let _ = tx.send(change);
                        }
                    }
                    Ok(Heard::Elsewhere) => {}
                    // Reconnected and listening again: whatever was sent meanwhile is reloaded.
                    Ok(Heard::Lost) => {
                        tracing::warn!(
                            "the state-change connection was lost and is back; caches reload"
                        );
                        let _ = tx.send(Change::Resync);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the state-change connection failed; reconnecting");
                        listener = None;
                    }
                }
            }
        });
        Ok(())
    }
}

/// One subscriber's view of the bus.
pub struct Subscription {
    rx: broadcast::Receiver<Change>,
}

impl Subscription {
    /// The next change; `None` once the bus is gone. A subscriber that fell behind gets [`Change::Resync`].
    pub async fn next(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Takes every change already queued without waiting, so a burst is handled once.
    pub fn drain(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(change) => out.push(change),
                Err(broadcast::error::TryRecvError::Lagged(_)) => out.push(Change::Resync),
                Err(_) => return out,
            }
        }
    }
}

/// Keeps a cache in step with what other instances change: after each burst of changes on the bus of which
/// `concerns` says yes (a burst is read once), `reload` reads the cache behind `cache` back from the database.
/// Ends with the bus, or once the cache is dropped. `what` names the state in the warning of a failed reload.
pub fn reload_on<T, F, Fut>(
    bus: &Bus,
    cache: &Arc<T>,
    concerns: fn(&Change) -> bool,
    what: &'static str,
    reload: F,
) where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), crate::audit::AuditError>> + Send,
{
    let cache = Arc::downgrade(cache);
    let mut changes = bus.subscribe();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let mut burst = changes.drain();
            burst.push(change);
            if !burst
                .iter()
                .any(|c| concerns(c) || matches!(c, Change::Resync))
            {
                continue;
            }
            let Some(cache) = cache.upgrade() else { return };
            if let Err(e) = reload(cache).await {
                tracing::warn!(error = %e, state = what, "reading shared state back failed; the next change retries");
            }
        }
    });
}

#[cfg(test)]
mod tests;
