//! Policy hot reload: file watching of `policy.dir` (debounced), SIGHUP and `POST /api/v1/policy/reload`, which
//! on PostgreSQL is announced to every instance sharing the database (each then reloads its own folder).
//!
//! [`Policies`] owns the serving set. A reload reads, parses, compiles and smoke-evaluates the whole folder on a
//! blocking thread (never on a request's thread), then swaps the new set in with one store. Requests already running keep
//! the set they loaded; the next request on each worker builds a fresh evaluator for the new revision. A
//! broken folder is refused and the last good set keeps serving. Reloads run one at a time, so two triggers
//! close together cannot interleave their swaps.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher as _};
use serde::Serialize;
use toolgate_engine::policy::{Evaluator, PolicyError, PolicySet};

use crate::shared_state::{Bus, Change};
use crate::telemetry::Metrics;

/// Quiet time after the last file event before a reload: editors write a file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
// A folder written to without pause would otherwise postpone the reload for ever.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// What started a reload; logged and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The set loaded at start.
    Start,
    /// A change in the policy folder.
    Watch,
    /// SIGHUP.
    Signal,
    /// `POST /api/v1/policy/reload`.
    Api,
    /// Another instance on the same database reloaded on `POST /api/v1/policy/reload` (or such an announcement
    /// may have been missed while the state-change connection was down).
    Peer,
}

/// The result of the last reload, as `GET /api/v1/policy` shows it under `last_reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadStatus {
    /// `ok` or `error`.
    pub result: &'static str,
    /// RFC 3339 UTC.
    pub at: String,
    /// Why the new set was refused (`file:line:col: message` where regorus knows the place).
    pub error: Option<String>,
    /// The revision serving after the reload (the old one when it was refused).
    pub revision: String,
    pub trigger: Trigger,
    /// Whether the reload changed the serving revision.
    pub changed: bool,
}

/// The serving policy set of the proxy and everything that replaces it: the folder, the reload state, and the
/// watcher and SIGHUP tasks (which end when this is dropped).
pub struct Policies {
    dir: PathBuf,
    /// The compiled set; a reload swaps in a whole new set, requests keep the one they started with.
    current: ArcSwap<PolicySet>,
    reloader: PolicyReloader,
    metrics: Arc<Metrics>,
}

impl Policies {
    /// Loads `dir` at start; an error stops start-up (there is no last good set yet).
    pub fn load(dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<Policies>, PolicyError> {
        let set = match PolicySet::load(dir) {
            Ok(set) => {
                metrics.policy_reloads.with_label_values(&["ok"]).inc();
                set
            }
            Err(e) => {
                metrics.policy_reloads.with_label_values(&["error"]).inc();
                return Err(e);
            }
        };
        tracing::info!(
            revision = set.revision(),
            modules = set.modules().len(),
            "policy loaded"
        );
        Ok(Arc::new(Policies {
            dir: dir.to_owned(),
            reloader: PolicyReloader::new(set.revision()),
            current: ArcSwap::from_pointee(set),
            metrics,
        }))
    }

    /// The serving set.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The result of the last reload (`GET /api/v1/policy`).
    pub fn last_reload(&self) -> ReloadStatus {
        self.reloader.last()
    }

    /// Runs `f` on this worker thread's own warm evaluator of the serving set. Each thread keeps one evaluator
    /// and rebuilds it only when the revision changed, so no lock is shared across requests.
    pub fn with_evaluator<T>(&self, f: impl FnOnce(&mut Evaluator) -> T) -> T {
        thread_local! {
            static EVALUATOR: RefCell<Option<Evaluator>> = const { RefCell::new(None) };
        }
        let set = self.current.load();
        EVALUATOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let fresh = match slot.as_ref() {
                Some(ev) => ev.revision() != set.revision(),
                None => true,
            };
            if fresh {
                *slot = Some(set.evaluator());
            }
            f(slot.as_mut().expect("just set"))
        })
    }
}

/// The reload state.
struct PolicyReloader {
    /// Held for the whole of a reload: reloads are serialized.
    gate: tokio::sync::Mutex<()>,
    last: Mutex<ReloadStatus>,
    /// Dropped with the `App`, which stops the watcher and signal tasks.
    stop: tokio::sync::watch::Sender<()>,
}

impl PolicyReloader {
    /// The state after the start-up load of `revision`.
    fn new(revision: &str) -> PolicyReloader {
        PolicyReloader {
            gate: tokio::sync::Mutex::new(()),
            last: Mutex::new(ReloadStatus {
                result: "ok",
                at: now(),
                error: None,
                revision: revision.to_owned(),
                trigger: Trigger::Start,
                changed: true,
            }),
            stop: tokio::sync::watch::channel(()).0,
        }
    }

    fn last(&self) -> ReloadStatus {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_last(&self, status: ReloadStatus) {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = status;
    }
}

impl Policies {
    /// Reloads the folder now: load off the request path, swap on success, keep the old set on failure.
    pub async fn reload(&self, trigger: Trigger) -> ReloadStatus {
        let _one_at_a_time = self.reloader.gate.lock().await;
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || PolicySet::load(&dir))
            .await
            .map_err(|join| format!("the reload task failed: {join}"))
            .and_then(|result| result.map_err(|err| err.to_string()));
        let status = match loaded {
            Ok(set) => {
                let previous = self.current.load().revision().to_owned();
                let revision = set.revision().to_owned();
                let changed = revision != previous;
                if changed {
                    self.current.store(Arc::new(set));
                }
                self.metrics.policy_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    revision = %revision,
                    previous = %previous,
                    changed,
                    trigger = ?trigger,
                    "policy reloaded"
                );
                ReloadStatus {
                    result: "ok",
                    at: now(),
                    error: None,
                    revision,
                    trigger,
                    changed,
                }
            }
            Err(error) => {
                let serving = self.current.load().revision().to_owned();
                self.metrics
                    .policy_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(
                    error = %error,
                    dir = %self.dir.display(),
                    serving = %serving,
                    trigger = ?trigger,
                    "policy reload failed"
                );
                ReloadStatus {
                    result: "error",
                    at: now(),
                    error: Some(error),
                    revision: serving,
                    trigger,
                    changed: false,
                }
            }
        };
        self.reloader.set_last(status.clone());
        status
    }

    /// Starts the folder watcher and the SIGHUP handler. They hold only a weak reference and end when the
    /// `Policies` is dropped. A watcher that cannot start (an inotify limit) is logged, not fatal: SIGHUP and the
    /// admin endpoint still reload.
    pub fn start(self: &Arc<Self>) {
        let app = self;
        if let Err(err) = start_watcher(app) {
            tracing::warn!(
                dir = %self.dir.display(),
                error = %err,
                "policy folder watching is off; reload with SIGHUP or POST /api/v1/policy/reload"
            );
        }
        #[cfg(unix)]
        if let Err(err) = start_sighup(app) {
            tracing::warn!(error = %err, "cannot handle SIGHUP; policy reload on SIGHUP is off");
        }
    }

    /// What SIGHUP does: a reload, logged like any other.
    pub async fn on_sighup(&self) -> ReloadStatus {
        tracing::info!("SIGHUP: reloading the policies");
        self.reload(Trigger::Signal).await
    }
}

/// Reloads the folder whenever another instance announces an API reload on the state-change bus, or the bus
/// may have lost such an announcement ([`Change::Resync`]): replicas behind a balancer serve the revision the
/// admin asked one of them for. `own_chain` is this instance's chain id; its own announcements are skipped
/// (its reload already ran). Ends with the bus, or once the `Policies` is dropped.
pub fn follow(policies: &Arc<Policies>, bus: &Bus, own_chain: &str) {
    let weak = Arc::downgrade(policies);
    let own_chain = own_chain.to_owned();
    let mut changes = bus.subscribe();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let mut burst = changes.drain();
            burst.push(change);
            let due = burst.iter().any(|c| match c {
                Change::PolicyReload(from) => *from != own_chain,
                Change::Resync => true,
                _ => false,
            });
            if !due {
                continue;
            }
            let Some(policies) = weak.upgrade() else {
                return;
            };
            policies.reload(Trigger::Peer).await;
        }
    });
}

fn start_watcher(app: &Arc<Policies>) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => is_relevant(event),
            // A lost event (queue overflow) may hide a change: reload to be sure.
            Err(_) => true,
        };
        if relevant {
            // Full means a reload is already due; closed means the App is gone.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&app.dir, RecursiveMode::Recursive)?;
    let weak = Arc::downgrade(app);
    let mut stop = app.reloader.stop.subscribe();
    tokio::spawn(async move {
        // Owned here, so it is dropped (and stops watching) when this task ends.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            debounce(&mut rx).await;
            let Some(app) = weak.upgrade() else { return };
            app.reload(Trigger::Watch).await;
        }
    });
    Ok(())
}

/// Waits until no event came for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]), consuming the events.
async fn debounce(rx: &mut tokio::sync::mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let quiet = tokio::time::Instant::now() + DEBOUNCE;
        match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
            _ => return,
        }
    }
}

/// A change that can alter the policy set: a create, write, rename or removal of a policy or data file,
/// or of something that may be a folder of them. Reads (our own reload reads every file) are not.
fn is_relevant(event: &notify::Event) -> bool {
    if !matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    ) {
        return false;
    }
    if matches!(
        event.kind,
        EventKind::Modify(notify::event::ModifyKind::Metadata(_))
    ) {
        return false;
    }
    event.paths.iter().any(|p| is_policy_path(p))
}

fn is_policy_path(path: &Path) -> bool {
    // A Kubernetes ConfigMap volume updates by swapping the `..data` symlink.
    let swapped_link = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".."));
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => {
            matches!(ext, "rego" | "json" | "yaml" | "yml") || swapped_link || path.is_dir()
        }
        // Most likely a folder (possibly one already removed).
        None => true,
    }
}

#[cfg(unix)]
fn start_sighup(app: &Arc<Policies>) -> std::io::Result<()> {
    // Registered before `start` returns, so a SIGHUP sent after start-up never hits the default action
    // (terminating the process).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let weak = Arc::downgrade(app);
    let mut stop = app.reloader.stop.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                signal = hup.recv() => if signal.is_none() { return },
            }
            let Some(app) = weak.upgrade() else { return };
            app.on_sighup().await;
        }
    });
    Ok(())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind, RemoveKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(path.into())
    }

    #[test]
    fn only_changes_to_policy_files_trigger_a_reload() {
        assert!(is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/p/main.rego"
        )));
        assert!(is_relevant(&event(
            EventKind::Create(CreateKind::File),
            "/p/data.json"
        )));
        assert!(is_relevant(&event(
            EventKind::Remove(RemoveKind::File),
            "/p/x.yaml"
        )));
        assert!(is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/p/..data"
        )));
        assert!(!is_relevant(&event(
            EventKind::Access(AccessKind::Any),
            "/p/main.rego"
        )));
        assert!(!is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/p/.main.rego.swp"
        )));
        assert!(!is_relevant(&event(
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
            "/p/main.rego"
        )));
    }

    #[tokio::test]
    async fn debounce_waits_for_quiet() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        tx.send(()).await.unwrap();
        tx.send(()).await.unwrap();
        let started = tokio::time::Instant::now();
        debounce(&mut rx).await;
        assert!(started.elapsed() >= DEBOUNCE);
        assert!(rx.try_recv().is_err(), "the burst was consumed");
    }
}
