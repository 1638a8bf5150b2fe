//! Policy hot reload: file watching of `policy.dir` (debounced), SIGHUP and `POST /api/v1/policy/reload`.
//!
//! A reload reads, parses, compiles and smoke-evaluates the whole folder on a blocking thread (never on a
//! request's thread), then swaps the new set into `App::policy` in one store. Requests already running keep
//! the set they loaded; the next request on each worker builds a fresh evaluator for the new revision. A
//! broken folder is refused and the last good set keeps serving. Reloads run one at a time, so two triggers
//! close together cannot interleave their swaps.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use serde::Serialize;
use toolgate_engine::policy::PolicySet;

use crate::app::App;

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

/// The reload state `App` holds.
pub struct PolicyReloader {
    /// Held for the whole of a reload: reloads are serialized.
    gate: tokio::sync::Mutex<()>,
    last: Mutex<ReloadStatus>,
    /// Dropped with the `App`, which stops the watcher and signal tasks.
    stop: tokio::sync::watch::Sender<()>,
}

impl PolicyReloader {
    /// The state after the start-up load of `revision`.
    pub fn new(revision: &str) -> PolicyReloader {
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

    pub fn last(&self) -> ReloadStatus {
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

/// Reloads `policy.dir` now: load off the request path, swap on success, keep the old set on failure.
pub async fn reload(app: &App, trigger: Trigger) -> ReloadStatus {
    let _one_at_a_time = app.policy_reload.gate.lock().await;
    let dir = app.config.policy.dir.clone();
    let loaded = tokio::task::spawn_blocking(move || PolicySet::load(&dir))
        .await
        .map_err(|join| format!("the reload task failed: {join}"))
        .and_then(|result| result.map_err(|err| err.to_string()));
    let status = match loaded {
        Ok(set) => {
            let previous = app.policy.load().revision().to_owned();
            let revision = set.revision().to_owned();
            let changed = revision != previous;
            if changed {
                app.policy.store(Arc::new(set));
            }
            app.metrics.policy_reloads.with_label_values(&["ok"]).inc();
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
            let serving = app.policy.load().revision().to_owned();
            app.metrics
                .policy_reloads
                .with_label_values(&["error"])
                .inc();
            tracing::error!(
                error = %error,
                dir = %app.config.policy.dir.display(),
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
    app.policy_reload.set_last(status.clone());
    status
}

/// Starts the folder watcher and the SIGHUP handler of `app`. They hold only a weak reference and end
/// when the `App` is dropped. A watcher that cannot start (an inotify limit) is logged, not fatal: SIGHUP
/// and the admin endpoint still reload.
pub fn start(app: &Arc<App>) {
    if let Err(err) = start_watcher(app) {
        tracing::warn!(
            dir = %app.config.policy.dir.display(),
            error = %err,
            "policy folder watching is off; reload with SIGHUP or POST /api/v1/policy/reload"
        );
    }
    #[cfg(unix)]
    if let Err(err) = start_sighup(app) {
        tracing::warn!(error = %err, "cannot handle SIGHUP; policy reload on SIGHUP is off");
    }
}

fn start_watcher(app: &Arc<App>) -> notify::Result<()> {
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
    watcher.watch(&app.config.policy.dir, RecursiveMode::Recursive)?;
    let weak = Arc::downgrade(app);
    let mut stop = app.policy_reload.stop.subscribe();
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
            reload(&app, Trigger::Watch).await;
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
fn start_sighup(app: &Arc<App>) -> std::io::Result<()> {
    // Registered before `start` returns, so a SIGHUP sent after start-up never hits the default action
    // (terminating the process).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let weak = Arc::downgrade(app);
    let mut stop = app.policy_reload.stop.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                signal = hup.recv() => if signal.is_none() { return },
            }
            let Some(app) = weak.upgrade() else { return };
            on_sighup(&app).await;
        }
    });
    Ok(())
}

/// What SIGHUP does: a reload, logged like any other.
pub async fn on_sighup(app: &App) -> ReloadStatus {
    tracing::info!("SIGHUP: reloading the policies");
    reload(app, Trigger::Signal).await
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
