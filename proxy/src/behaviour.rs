//! Per-agent behaviour: baselines, the score of each judged call, the alert rules that watch them, and the
//! pinned prompt hashes that reveal prompt drift.
//!
//! The pipeline calls [`Behaviour::observe`] before the policy (its answer is `input.behavior` and the audit
//! events' `behavioral_score`) and [`Behaviour::judged`] once the policy decided. Both take one agent's mutex
//! for a few hundred nanoseconds of arithmetic ([`baseline`]); nothing here awaits on the request path. The
//! baselines live in memory and are snapshotted to the database every `behavior.snapshot_seconds` by
//! [`start`]'s task, and read back at start, so a restart does not reset them. After each snapshot, the agents
//! idle for longer than the window leave the live map for the parked one (their baselines kept, written), so
//! [`MAX_AGENTS`] bounds the agents active now, not every agent ever seen. Snapshots keep tool names as
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

/// Most agents whose baselines one instance keeps live; an agent beyond them is scored on a baseline of its own
/// call alone (and counted in a warning), never refused. An agent idle for longer than the window leaves the
/// live baselines at the next snapshot, so this bounds the agents active within a window.
pub const MAX_AGENTS: usize = 10_000;

/// Most baselines of idle agents (read at start, or left the live map) kept in memory for their agent's next
/// call; beyond it the longest idle are dropped from memory (their snapshots stay in the database, read again
/// at the next start).
pub const MAX_PARKED: usize = 10_000;

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
    /// Baselines of agents not live here: read at start, or idle past the window (written before they left);
    /// each waits for its agent's next call. At most [`MAX_PARKED`].
    parked: Mutex<HashMap<StoredKey, Baseline>>,
    /// [`MAX_AGENTS`]; tests lower it.
    max_agents: usize,
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
        let params = Params::of(settings);
        let now = clock.now_ms();
        let mut parked = HashMap::new();
        for row in store.baselines().await? {
            match serde_json::from_str::<Snapshot>(&row.text) {
                Ok(s) => {
                    parked.insert(
                        StoredKey {
                            tenant_id: row.tenant_id,
                            agent_id: row.agent_id,
                        },
                        Baseline::restore(s, now, &params),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a baseline snapshot could not be read; the agent starts afresh")
                }
            }
        }
        cap_parked(&mut parked, MAX_PARKED);
        let pins = read_pins(&store).await?;
        Ok(Behaviour {
            settings: settings.clone(),
            params,
            clock,
            store,
            alerts,
            agents: RwLock::new(HashMap::new()),
            parked: Mutex::new(parked),
            max_agents: MAX_AGENTS,
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

    /// Runs `f` on the agent's state under its mutex, making the state on its first call here (from its parked
    /// baseline, if one was read at start or left the live map idle).
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
        let parked = lock(&self.parked).remove(&stored);
        let was_parked = parked.is_some();
        let baseline = parked.unwrap_or_else(|| Baseline::new(now, &self.params));
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
        if !known && len >= self.max_agents {
            drop(agents);
            self.untracked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut alone = fresh;
            let answer = f(&mut alone);
            // Not tracked after all: a parked baseline, this call added, waits for a call that finds room.
            if was_parked {
                lock(&self.parked).insert(alone.stored, alone.baseline);
            }
            return answer;
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

    /// Writes the baselines changed since the last snapshot and the prompt pins made here, parks the agents idle
    /// for longer than the window ([`Behaviour::park_idle`]), then reads every pin back (pins made on other
    /// instances, re-pins). What could not be written is tried again next time.
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
        self.park_idle();
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
                limit = self.max_agents,
                "calls scored without a kept baseline: more agents are active than are tracked"
            );
        }
        Ok(())
    }

    /// Moves the agents whose last call is older than the window, and whose baseline is written (not dirty),
    /// from the live map to the parked one: they no longer count against [`MAX_AGENTS`], and their next call
    /// takes their baseline back. Answers how many left.
    fn park_idle(&self) -> usize {
        let now = self.clock.now_ms();
        let window = self.params.window_ms;
        let mut idle = Vec::new();
        {
            // Held for the map's walk only; the baselines move once it is released. The map's lock before an
            // agent's, as in `with_agent`.
            let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
            for m in agents.values_mut() {
                m.retain(|_, state| {
                    let s = lock(state);
                    let keep = s.dirty || now - s.baseline.last_call_ms() <= window;
                    if !keep {
                        idle.push(state.clone());
                    }
                    keep
                });
            }
            agents.retain(|_, m| !m.is_empty());
        }
        let left = idle.len();
        if left > 0 {
            let mut parked = lock(&self.parked);
            for state in idle {
                let mut s = lock(&state);
                let baseline = std::mem::replace(&mut s.baseline, Baseline::new(now, &self.params));
                parked.insert(s.stored.clone(), baseline);
            }
            cap_parked(&mut parked, MAX_PARKED);
        }
        left
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

/// Drops the longest idle parked baselines beyond `max` (their snapshots stay in the database).
fn cap_parked(parked: &mut HashMap<StoredKey, Baseline>, max: usize) {
    if parked.len() <= max {
        return;
    }
    let mut by_last: Vec<(i64, StoredKey)> = parked
        .iter()
        .map(|(k, b)| (b.last_call_ms(), k.clone()))
        .collect();
    by_last.sort_unstable_by_key(|(last, _)| *last);
    let excess = parked.len() - max;
    for (_, key) in by_last.into_iter().take(excess) {
        parked.remove(&key);
    }
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
