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
//! expiry). Other processes may still write the file (a second instance on the same file, an operator's `sqlite3`):
//! the file's writes are watched ([`file_watch`]) and each burst is a [`Change::Written`], on which the tasks
//! that poll the database otherwise (kill switch, escalations, runs, alerts) look at it. Whoever hears changes
//! one way or the other ([`Bus::hears_changes`]) sleeps while nothing changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};

use crate::audit::store::{Heard, Notice};
use crate::audit::AuditStore;

pub mod doorbell;
mod file_watch;

pub use doorbell::{Doorbell, HostBell};
pub use file_watch::PERIOD as WRITTEN_PERIOD;

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
    /// A run was started or ended (PostgreSQL, on any instance): its deadline may be the soonest now, or a run
    /// held here ended elsewhere.
    Runs,
    /// An alert was opened, acknowledged or resolved (PostgreSQL, on any instance).
    Alerts,
    /// The SQLite file was written, by this process or another (at most one per [`WRITTEN_PERIOD`]): what only
    /// the database can tell may have changed. Caches that this instance alone changes ignore it.
    Written,
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
            "runs" => Change::Runs,
            "alerts" => Change::Alerts,
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
    /// Whether the SQLite file's writes arrive here as [`Change::Written`] (once [`Bus::listen`] started the
    /// watch).
    watching: Arc<AtomicBool>,
    /// Ends the file watch with the last clone of the bus (dropping the sender).
    watch_stop: Arc<std::sync::OnceLock<oneshot::Sender<()>>>,
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
            watching: Arc::new(AtomicBool::new(false)),
            watch_stop: Arc::default(),
        }
    }

    /// Whether other instances' changes arrive on this bus: if not, whoever must see them polls the database.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Whether a change another process commits wakes this bus's subscribers, by a notification (PostgreSQL) or
    /// as a [`Change::Written`] (a SQLite file): if so, a task that must see such changes waits for them (and
    /// for its own deadlines) instead of polling the database.
    pub fn hears_changes(&self) -> bool {
        self.is_listening() || self.watching.load(Ordering::Relaxed)
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

    /// Watches the SQLite `file` for writes (`file_watch`); where the kernel refuses, the tasks poll.
    fn watch(&self, file: &std::path::Path) {
        let (stop, stopped) = oneshot::channel();
        if self.watch_stop.set(stop).is_err() {
            return;
        }
        match file_watch::start(file, self.tx.downgrade(), stopped) {
            Ok(()) => self.watching.store(true, Ordering::Relaxed),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot watch the audit database for changes; its upkeep reads it several times a second"
            ),
        }
    }

    /// PostgreSQL: starts listening for the changes every instance commits (start-up fails if the first
    /// connection does); the task ends when the last clone of the bus is dropped. A SQLite file: starts
    /// watching its writes (if the kernel refuses, the tasks poll as without a signal). In memory: nothing.
    pub async fn listen(&self, store: &AuditStore) -> Result<(), crate::audit::AuditError> {
        if let Some(file) = store.sqlite_file() {
            self.watch(&file);
            return Ok(());
        }
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

/// How long a task that hears of changes may sleep with `soonest` (RFC 3339: an expiry, a deadline) pending: until
/// a moment after it (so that it has passed when the task wakes), at most `longest` (also with nothing pending);
/// text that is no such time is looked at again after `unreadable`.
pub fn sleep_before(soonest: Option<&str>, longest: Duration, unreadable: Duration) -> Duration {
    let Some(at) = soonest else {
        return longest;
    };
    let Ok(at) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
    else {
        return unreadable;
    };
    let left = Duration::try_from(at - time::OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO);
    (left + Duration::from_millis(2)).min(longest)
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
