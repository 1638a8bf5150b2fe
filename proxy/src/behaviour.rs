//! Per-agent behaviour: baselines, the score of each judged call, the alert rules that watch them, and the
//! pinned prompt hashes that reveal prompt drift.
//!
//! The pipeline calls [`Behaviour::observe`] before the policy (its answer is `input.behavior` and the audit
//! events' `behavioral_score`) and [`Behaviour::judged`] once the policy decided. Both take one agent's mutex
//! for a few hundred nanoseconds of arithmetic ([`baseline`]); nothing here awaits on the request path. The
//! baselines live in memory and are snapshotted to the database every `behavior.snapshot_seconds` by
//! [`start`]'s task, and read back at start, so a restart does not reset them. Snapshots keep tool names as
//! the audit log stores them (redacted) and targets only as hashes. Prompt pins made or removed on another
//! instance sharing the database are read back as soon as the state-change bus announces them ([`follow`]).
//!
//! Rules (thresholds in `[behavior]`, docs/behaviour.md): `rate_anomaly` when a call's rate z-score reaches
//! `alert_zscore` with at least `rate_min_calls` calls in the current bucket; `deny_spike` when more than
//! `deny_spike_ratio` of at least `deny_spike_min_calls` calls in `deny_spike_window_seconds` were denied;
//! `new_tool` when an agent with `new_tool_after_calls` calls behind it calls a tool it never called;
//! `prompt_drift` when the declared prompt hash differs from the agent's pinned one.

pub mod baseline;
mod prompt;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use toolgate_engine::input::BehaviorInfo;
use toolgate_engine::policy::Verdict;

use crate::agents::StoredKey;
use crate::alerts::{Alerts, Kind};
use crate::audit::store::AgentText;
use crate::audit::{AuditError, AuditStore};
use crate::auth::AgentIdentity;
use crate::config::BehaviorSettings;
use crate::redaction::stored_text;
use crate::shared_state::{Bus, Change};
use baseline::{Baseline, Params, Snapshot};

pub use prompt::{declared_prompt_hash, PROMPT_HASH_HEADER};

/// Most agents whose baselines one instance keeps; an agent beyond them is scored on a baseline of its own
/// call alone (and counted in a warning), never refused.
pub const MAX_AGENTS: usize = 10_000;

/// The time baselines are kept in: unix milliseconds. Tests move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What one judged call shows of its agent's behaviour.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    pub tool: Option<&'a str>,
    pub target: Option<&'a str>,
    /// The declared prompt hash, validated ([`declared_prompt_hash`]).
    pub prompt_hash: Option<&'a str>,
}

/// An agent's pinned prompt as an admin re-pin answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unpinned {
    pub agent_id: String,
    pub tenant_id: Option<String>,
    /// The pin removed; the agent's next declared hash is pinned in its place.
    pub previous_prompt_hash: String,
}

/// One agent, as this instance tracks it.
struct AgentState {
    stored: StoredKey,
    baseline: Baseline,
    /// Changed since the last snapshot.
    dirty: bool,
    /// The last declared prompt hash and its stored form, so the redaction runs once per hash.
    declared: Option<(String, String)>,
    /// The stored hash whose drift was last logged, so one drift is one log line.
    drift_logged: Option<String>,
}

type AgentMap = HashMap<Option<String>, HashMap<String, Arc<Mutex<AgentState>>>>;

/// Baselines, scores and prompt pins of the agents this instance sees.
pub struct Behaviour {
    settings: BehaviorSettings,
    params: Params,
    clock: Arc<dyn Clock>,
    store: AuditStore,
    alerts: Arc<Alerts>,
    /// A std RwLock: held for a lookup or an insert, never across an await. Each agent's own mutex is taken
    /// briefly inside it.
    agents: RwLock<AgentMap>,
    /// Snapshots read at start, waiting for their agent's first call here.
    restored: Mutex<HashMap<StoredKey, Snapshot>>,
    /// Pinned prompt hashes (stored form), by agent: read from the table, plus pins made here. Swapped whole.
    pins: ArcSwap<HashMap<StoredKey, String>>,
    /// Pins made here and not yet written.
    new_pins: Mutex<Vec<AgentText>>,
    untracked: std::sync::atomic::AtomicU64,
}

impl Behaviour {
    /// Reads the baseline snapshots and the prompt pins; start-up fails if the database cannot answer.
    pub async fn load(
        settings: &BehaviorSettings,
        store: AuditStore,
        alerts: Arc<Alerts>,
        clock: Arc<dyn Clock>,
    ) -> Result<Behaviour, AuditError> {
        let mut restored = HashMap::new();
        for row in store.baselines().await? {
            match serde_json::from_str::<Snapshot>(&row.text) {
                Ok(s) => {
                    restored.insert(
                        StoredKey {
                            tenant_id: row.tenant_id,
                            agent_id: row.agent_id,
                        },
                        s,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a baseline snapshot could not be read; the agent starts afresh")
                }
            }
        }
        let pins = read_pins(&store).await?;
        Ok(Behaviour {
            settings: settings.clone(),
            params: Params::of(settings),
            clock,
            store,
            alerts,
            agents: RwLock::new(HashMap::new()),
            restored: Mutex::new(restored),
            pins: ArcSwap::from_pointee(pins),
            new_pins: Mutex::new(Vec::new()),
            untracked: Default::default(),
        })
    }

    /// Scores one judged call of the agent against its baseline (before the policy), adds the call to it, and
    /// opens the alerts its rules call for (`rate_anomaly`, `new_tool`, `prompt_drift`).
    pub fn observe(&self, identity: &AgentIdentity, call: Call<'_>) -> BehaviorInfo {
        let now = self.clock.now_ms();
        self.with_agent(identity, now, |state| {
            let seen_before = state.baseline.calls();
            let observed = state.baseline.observe(
                now,
                &self.params,
                call.tool,
                |t| stored_text(t.to_owned()),
                call.target,
            );
            state.dirty = true;
            let info = observed.info;
            if info.zscore >= self.settings.alert_zscore
                && observed.current_rate >= self.settings.rate_min_calls
                && !self.alerts.is_open(Kind::RateAnomaly, &state.stored)
            {
                self.alerts.raise_kind(
                    Kind::RateAnomaly,
                    Some(&state.stored),
                    &format!(
                        "call rate z-score {:.1} (at least {:.1} alerts): {} calls in the current {} s",
                        info.zscore,
                        self.settings.alert_zscore,
                        observed.current_rate,
                        (self.settings.window_seconds / baseline::RATE_BUCKETS as u64).max(1),
                    ),
                );
            }
            if info.new_tool
                && seen_before >= self.settings.new_tool_after_calls
                && !self.alerts.is_open(Kind::NewTool, &state.stored)
            {
                let tool = stored_text(call.tool.unwrap_or_default().to_owned());
                self.alerts.raise_kind(
                    Kind::NewTool,
                    Some(&state.stored),
                    &format!("first call of tool {tool} after {seen_before} calls"),
                );
            }
            if let Some(hash) = call.prompt_hash {
                self.check_prompt(state, hash);
            }
            info
        })
    }

    /// Adds a judged call's verdict to the agent's baseline, and opens `deny_spike` when its rule holds.
    pub fn judged(&self, identity: &AgentIdentity, verdict: Verdict) {
        let now = self.clock.now_ms();
        self.with_agent(identity, now, |state| {
            let window = state
                .baseline
                .judged(now, &self.params, verdict == Verdict::Deny);
            state.dirty = true;
            let s = &self.settings;
            if window.calls >= s.deny_spike_min_calls
                && f64::from(window.denied) > s.deny_spike_ratio * f64::from(window.calls)
                && !self.alerts.is_open(Kind::DenySpike, &state.stored)
            {
                self.alerts.raise_kind(
                    Kind::DenySpike,
                    Some(&state.stored),
                    &format!(
                        "{} of {} calls denied in the last {} s (more than {:.0} % alerts)",
                        window.denied,
                        window.calls,
                        s.deny_spike_window_seconds,
                        s.deny_spike_ratio * 100.0
                    ),
                );
            }
        });
    }

    /// The pinned hash against the declared one: the first declared is pinned, a different one is drift.
    fn check_prompt(&self, state: &mut AgentState, declared: &str) {
        // The stored form is computed once per declared hash, not per call.
        if !matches!(&state.declared, Some((raw, _)) if raw == declared) {
            state.declared = Some((declared.to_owned(), stored_text(declared.to_owned())));
        }
        let stored = state
            .declared
            .as_ref()
            .map(|(_, stored)| stored.as_str())
            .unwrap_or_default();
        let pins = self.pins.load();
        match pins.get(&state.stored) {
            Some(pinned) if *pinned == stored => {}
            Some(_) => {
                if state.drift_logged.as_deref() != Some(stored) {
                    state.drift_logged = Some(stored.to_owned());
                    tracing::warn!(
                        agent_id = %state.stored.agent_id,
                        tenant_id = %state.stored.tenant_id,
                        "Prompt drift detected for agent"
                    );
                }
                self.alerts.raise_kind(
                    Kind::PromptDrift,
                    Some(&state.stored),
                    "the declared prompt hash differs from the agent's pinned one",
                );
            }
            None => {
                drop(pins);
                let key = state.stored.clone();
                let pinned = stored.to_owned();
                self.pins.rcu(|pins| {
                    let mut pins = HashMap::clone(pins);
                    pins.entry(key.clone()).or_insert_with(|| pinned.clone());
                    pins
                });
                lock(&self.new_pins).push(AgentText {
                    tenant_id: state.stored.tenant_id.clone(),
                    agent_id: state.stored.agent_id.clone(),
                    text: pinned,
                });
            }
        }
    }

    /// Runs `f` on the agent's state under its mutex, making the state on its first call here (from its
    /// snapshot, if one was read at start).
    fn with_agent<R>(
        &self,
        identity: &AgentIdentity,
        now: i64,
        f: impl FnOnce(&mut AgentState) -> R,
    ) -> R {
        {
            let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = agents
                .get(&identity.tenant_id)
                .and_then(|m| m.get(&identity.id))
            {
                return f(&mut lock(state));
            }
        }
        // First call here: the redaction (a DLP scan) runs outside the map's lock.
        let stored = StoredKey::of(identity.tenant_id.as_deref(), &identity.id);
        let baseline = match lock(&self.restored).remove(&stored) {
            Some(s) => Baseline::restore(s, now, &self.params),
            None => Baseline::new(now, &self.params),
        };
        let fresh = AgentState {
            stored,
            baseline,
            dirty: true,
            declared: None,
            drift_logged: None,
        };
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let len: usize = agents.values().map(HashMap::len).sum();
        let known = agents
            .get(&identity.tenant_id)
            .is_some_and(|m| m.contains_key(&identity.id));
        if !known && len >= MAX_AGENTS {
            drop(agents);
            self.untracked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut alone = fresh;
            return f(&mut alone);
        }
        let state = agents
            .entry(identity.tenant_id.clone())
            .or_default()
            .entry(identity.id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(fresh)))
            .clone();
        drop(agents);
        let mut guard = lock(&state);
        f(&mut guard)
    }

    /// Writes the baselines changed since the last snapshot and the prompt pins made here, then reads every
    /// pin back (pins made on other instances, re-pins). What could not be written is tried again next time.
    pub async fn snapshot(&self) -> Result<(), AuditError> {
        let states: Vec<Arc<Mutex<AgentState>>> = {
            let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
            agents.values().flat_map(|m| m.values().cloned()).collect()
        };
        let mut rows = Vec::new();
        let mut taken = Vec::new();
        for state in &states {
            let mut s = lock(state);
            if s.dirty {
                s.dirty = false;
                taken.push(state.clone());
                rows.push((s.stored.clone(), s.baseline.snapshot()));
            }
        }
        let rows: Vec<AgentText> = rows
            .into_iter()
            .map(|(key, snap)| AgentText {
                tenant_id: key.tenant_id,
                agent_id: key.agent_id,
                text: serde_json::to_string(&snap).unwrap_or_default(),
            })
            .collect();
        let at = crate::telemetry::now_rfc3339();
        if let Err(e) = self.store.put_baselines(&rows, &at).await {
            for state in taken {
                lock(&state).dirty = true;
            }
            return Err(e);
        }
        let pins = std::mem::take(&mut *lock(&self.new_pins));
        if let Err(e) = self.store.pin_prompts(&pins, &at).await {
            let mut waiting = lock(&self.new_pins);
            let mut pins = pins;
            pins.append(&mut waiting);
            *waiting = pins;
            return Err(e);
        }
        let mut fresh = read_pins(&self.store).await?;
        // Pins made here since the write above are not in the table yet: keep them.
        for p in lock(&self.new_pins).iter() {
            fresh
                .entry(StoredKey {
                    tenant_id: p.tenant_id.clone(),
                    agent_id: p.agent_id.clone(),
                })
                .or_insert_with(|| p.text.clone());
        }
        self.pins.store(Arc::new(fresh));
        let untracked = self.untracked.swap(0, std::sync::atomic::Ordering::Relaxed);
        if untracked > 0 {
            tracing::warn!(
                untracked,
                limit = MAX_AGENTS,
                "calls scored without a kept baseline: more agents are active than are tracked"
            );
        }
        Ok(())
    }

    /// Removes the prompt pin of `agent_id` (stored form) in every tenant, or in `tenant_id`: the agent's next
    /// declared hash is pinned in its place. Answers the pins removed (none: nothing was pinned).
    pub async fn unpin_prompt(
        &self,
        agent_id: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<Unpinned>, AuditError> {
        // A pin made here and not yet written would otherwise be written after the delete.
        lock(&self.new_pins)
            .retain(|p| !(p.agent_id == agent_id && tenant_id.is_none_or(|t| t == p.tenant_id)));
        let removed = self.store.unpin_prompt(agent_id, tenant_id).await?;
        let matches =
            |k: &StoredKey| k.agent_id == agent_id && tenant_id.is_none_or(|t| t == k.tenant_id);
        let local: Vec<Unpinned> = self
            .pins
            .load()
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, hash)| Unpinned {
                agent_id: k.agent_id.clone(),
                tenant_id: (!k.tenant_id.is_empty()).then(|| k.tenant_id.clone()),
                previous_prompt_hash: hash.clone(),
            })
            .collect();
        self.pins.rcu(|pins| {
            let mut pins = HashMap::clone(pins);
            pins.retain(|k, _| !matches(k));
            pins
        });
        if removed.is_empty() {
            // Pinned here a moment ago and not yet written: removed all the same.
            return Ok(local);
        }
        Ok(removed
            .into_iter()
            .map(|p| Unpinned {
                agent_id: p.agent_id,
                tenant_id: (!p.tenant_id.is_empty()).then_some(p.tenant_id),
                previous_prompt_hash: p.text,
            })
            .collect())
    }
}

impl Behaviour {
    /// Reads the prompt pins back (another instance pinned or re-pinned one), keeping the pins made here and
    /// not yet written.
    pub async fn reload_pins(&self) -> Result<(), AuditError> {
        let mut fresh = read_pins(&self.store).await?;
        for p in lock(&self.new_pins).iter() {
            fresh
                .entry(StoredKey {
                    tenant_id: p.tenant_id.clone(),
                    agent_id: p.agent_id.clone(),
                })
                .or_insert_with(|| p.text.clone());
        }
        self.pins.store(Arc::new(fresh));
        Ok(())
    }
}

/// Keeps the prompt pins in step with those other instances make or remove: each change announced on the bus
/// (a burst read once) reads them back. Ends with the bus, or once the behaviour is dropped.
pub fn follow(behaviour: &Arc<Behaviour>, bus: &Bus) {
    crate::shared_state::reload_on(
        bus,
        behaviour,
        |c| matches!(c, Change::PromptPins),
        "prompt pins",
        |b| async move { b.reload_pins().await },
    );
}

async fn read_pins(store: &AuditStore) -> Result<HashMap<StoredKey, String>, AuditError> {
    Ok(store
        .prompt_pins()
        .await?
        .into_iter()
        .map(|p| {
            (
                StoredKey {
                    tenant_id: p.tenant_id,
                    agent_id: p.agent_id,
                },
                p.text,
            )
        })
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the snapshot task (every `behavior.snapshot_seconds`); it ends once the behaviour is dropped.
pub fn start(behaviour: &Arc<Behaviour>) {
    let every = Duration::from_secs(behaviour.settings.snapshot_seconds.max(1));
    tokio::spawn(snapshot_loop(Arc::downgrade(behaviour), every));
}

async fn snapshot_loop(behaviour: Weak<Behaviour>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(b) = behaviour.upgrade() else { return };
        match b.snapshot().await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "cannot snapshot the baselines; they are kept for the next try");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
