//! Agents seen and the kill switch.
//!
//! Every authenticated request is a sighting of its agent (tenant and `sub`), and every judged call is counted
//! (calls, denials, escalations) in memory ([`tracked`]); a background task adds the counts to the `agents`
//! table at most once a [`FLUSH`], woken by the first count after its last write (idle, it sleeps), so
//! instances sharing one database each add theirs. The agents disabled in that table are loaded at start and
//! read back whenever the state-change bus says they changed (PostgreSQL: a notification from the instance
//! that changed them; a SQLite file: a write to it, by any process), or every [`REFRESH`] where nothing tells
//! of changes, so a disable made on any instance refuses the agent everywhere within a second, and ends its
//! sessions on every instance; the check on the request path is a lookup in memory. `agents.disabled` in the
//! configuration disables agents too, in every tenant, and only the configuration can enable them again.
//!
//! Agents are stored, matched and shown by their ids as the audit log stores them (redacted of what DLP flags,
//! capped): a `sub` holding a secret is never written in clear, and agents whose ids redact alike share one row
//! and one switch.

mod tracked;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use toolgate_engine::policy::Verdict;

use crate::audit::store::{AgentPage, AgentRow};
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::auth::{AgentIdentity, AgentKey};
use crate::mcp::session::SessionStore;
use crate::redaction::stored_text;
use crate::shared_state::{Bus, Change, Subscription};

pub use tracked::MAX_TRACKED;

/// How often the disabled set is read back from the database when nothing tells of changes (a SQLite database
/// whose file cannot be watched), or while reading it fails: a disable on another instance takes effect here
/// within this long (plus one query).
pub const REFRESH: Duration = Duration::from_millis(250);

/// Hearing of changes (PostgreSQL's notifications, a SQLite file's writes), the disabled set is read on each
/// change, and this often besides.
pub const SAFETY_NET: Duration = Duration::from_secs(30);

/// How often, at most, the counts in memory are added to the database (only when there are some).
pub const FLUSH: Duration = Duration::from_secs(1);

/// Most agents one page of the listing holds (and its default size).
pub const PAGE_LIMIT: u32 = 1000;

/// An agent as the `agents` table keys it: tenant and agent id in their stored form (`''` for no tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredKey {
    pub tenant_id: String,
    pub agent_id: String,
}

impl StoredKey {
    /// The stored form of an agent's tenant and `sub`: redacted and capped as the audit log stores them.
    pub fn of(tenant_id: Option<&str>, agent_id: &str) -> StoredKey {
        StoredKey {
            tenant_id: tenant_id
                .map(|t| stored_text(t.to_owned()))
                .unwrap_or_default(),
            agent_id: stored_text(agent_id.to_owned()),
        }
    }
}

/// An agent as the admin API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentView {
    pub agent_id: String,
    /// `None` for an agent of no tenant.
    pub tenant_id: Option<String>,
    pub calls: i64,
    pub denials: i64,
    pub escalations: i64,
    /// `None` only for an agent the configuration disables that was never seen.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub disabled: bool,
    pub disabled_at: Option<String>,
    /// The admin who disabled it, or `config` for `agents.disabled`.
    pub disabled_by: Option<String>,
}

/// Why a disable or an enable changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no agent {0:?} was seen")]
    NotFound(String),
    #[error("agent {0:?} is already disabled")]
    AlreadyDisabled(String),
    #[error("agent {0:?} is already enabled")]
    AlreadyEnabled(String),
    #[error("agent {0:?} is disabled by the configuration (agents.disabled); remove it there to enable it")]
    DisabledByConfig(String),
    #[error(transparent)]
    Store(#[from] AuditError),
}

/// A listing's filter and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub disabled: Option<bool>,
    /// Only this tenant's agents (a tenant's admin); `None`: every tenant's.
    pub tenant_id: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; default and most [`PAGE_LIMIT`].
    pub limit: Option<u32>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("bad cursor: not one this server issued")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] AuditError),
}

/// The agents this instance sees, and the kill switch.
pub struct Agents {
    store: AuditStore,
    tracked: tracked::Tracked,
    /// Agent ids (stored form) `agents.disabled` names: disabled in every tenant.
    config_disabled: HashSet<String>,
    /// The agents disabled in the table, as last read (or changed here). Swapped whole, read without a lock.
    disabled: ArcSwap<HashSet<StoredKey>>,
    /// Held while the disabled set is read from the database and swapped in, and while this instance changes
    /// it, so a refresh that read the table before a change here cannot swap the change back out.
    switching: tokio::sync::Mutex<()>,
    /// One flush at a time; counts a failed flush could not write wait here for the next one.
    unflushed: tokio::sync::Mutex<HashMap<StoredKey, tracked::Pending>>,
    /// Rung by every sighting and count: wakes the flush task (and, as these are dropped, ends it).
    counted: crate::shared_state::HostBell,
}

impl Agents {
    /// Loads the disabled set; start-up fails if the database cannot answer (the kill switch fails closed).
    pub async fn load(store: AuditStore, config_disabled: &[String]) -> Result<Agents, AuditError> {
        let disabled = read_disabled(&store).await?;
        Ok(Agents {
            store,
            tracked: tracked::Tracked::new(MAX_TRACKED),
            config_disabled: config_disabled
                .iter()
                .map(|id| stored_text(id.clone()))
                .collect(),
            disabled: ArcSwap::from_pointee(disabled),
            switching: tokio::sync::Mutex::new(()),
            unflushed: tokio::sync::Mutex::new(HashMap::new()),
            counted: Default::default(),
        })
    }

    /// The request path's kill switch: records a sighting of the agent and answers whether it may go on
    /// (`false`: disabled, in the table or by the configuration).
    pub fn admit(&self, identity: &AgentIdentity) -> bool {
        let disabled = self.disabled.load();
        let admitted = self.tracked.see(
            &identity.tenant_id,
            &identity.id,
            now_micros(),
            || StoredKey::of(identity.tenant_id.as_deref(), &identity.id),
            |entry| {
                !(self.config_disabled.contains(&entry.stored.agent_id)
                    || disabled.contains(&entry.stored))
            },
        );
        self.counted.ring();
        admitted
    }

    /// Counts one judged call of an agent this request already admitted.
    pub fn count(&self, identity: &AgentIdentity, verdict: Verdict) {
        self.tracked
            .count(&identity.tenant_id, &identity.id, verdict);
        self.counted.ring();
    }

    /// Adds the counts in memory to the table. Counts a failed write could not store are kept for the next
    /// flush (at most [`MAX_TRACKED`] agents' worth).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let mut unflushed = self.unflushed.lock().await;
        let (taken, untracked) = self.tracked.take();
        if untracked > 0 {
            tracing::warn!(
                untracked,
                limit = MAX_TRACKED,
                "agent sightings not counted: more agents were active since the last flush than are tracked"
            );
        }
        let mut dropped = 0usize;
        for (key, pending) in taken {
            if let Some(p) = unflushed.get_mut(&key) {
                p.merge(pending);
            } else if unflushed.len() < MAX_TRACKED {
                unflushed.insert(key, pending);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(
                agents = dropped,
                "agent counts dropped: the database has taken none for too long"
            );
        }
        if unflushed.is_empty() {
            return Ok(());
        }
        let deltas: Vec<_> = unflushed.iter().map(|(k, p)| p.delta(k)).collect();
        self.store.add_agent_counts(&deltas).await?;
        unflushed.clear();
        Ok(())
    }

    /// Reads the disabled set back from the table; answers the agents disabled since the last read (by another
    /// instance), whose sessions here are to end.
    pub async fn refresh(&self) -> Result<HashSet<StoredKey>, AuditError> {
        let _switching = self.switching.lock().await;
        let fresh = read_disabled(&self.store).await?;
        let before = self.disabled.load_full();
        let newly: HashSet<StoredKey> = fresh.difference(&before).cloned().collect();
        if *before != fresh {
            self.disabled.store(Arc::new(fresh));
        }
        Ok(newly)
    }

    /// Whether the agent with this stored key is disabled here now.
    pub fn is_disabled(&self, key: &StoredKey) -> bool {
        self.config_disabled.contains(&key.agent_id) || self.disabled.load().contains(key)
    }

    /// One page of the agents seen (this instance's counts flushed first), newest `last_seen` first, and the
    /// cursor of the next page. The first page also lists the agents the configuration disables that were
    /// never seen.
    pub async fn list(
        &self,
        query: &ListQuery,
    ) -> Result<(Vec<AgentView>, Option<String>), ListError> {
        self.flush().await?;
        let limit = query.limit.unwrap_or(PAGE_LIMIT).clamp(1, PAGE_LIMIT);
        let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let page = AgentPage {
            disabled: query.disabled,
            config_disabled: self.config_disabled.iter().cloned().collect(),
            tenant_id: query.tenant_id.clone(),
            after: after.clone(),
            limit: limit + 1,
        };
        let mut rows = self.store.agents_page(&page).await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(cursor_after)
        } else {
            None
        };
        let mut agents = Vec::new();
        // The configuration's never-seen agents belong to no tenant: listed to the all-tenant admin only.
        if after.is_none() && query.disabled != Some(false) && query.tenant_id.is_none() {
            agents.extend(self.never_seen_config_disabled().await?);
        }
        agents.extend(rows.into_iter().map(|row| self.view(row)));
        Ok((agents, next))
    }

    /// Disables (`disabled`) or enables the agent `agent_id` (stored form) in every tenant, or in `tenant_id`
    /// only, and answers the agents changed. A disable takes effect here at once and on other instances at
    /// their next refresh; the caller ends this instance's sessions of the changed agents.
    pub async fn set_disabled(
        &self,
        agent_id: &str,
        tenant_id: Option<&str>,
        disabled: bool,
        by: &str,
    ) -> Result<Vec<AgentView>, ChangeError> {
        // An agent first seen a moment ago is in the table before it is looked for.
        self.flush().await?;
        let by_config = self.config_disabled.contains(agent_id);
        let _switching = self.switching.lock().await;
        let rows = self.store.agents_named(agent_id, tenant_id).await?;
        if rows.is_empty() {
            return Err(match (by_config, disabled) {
                (true, true) => ChangeError::AlreadyDisabled(agent_id.to_owned()),
                (true, false) => ChangeError::DisabledByConfig(agent_id.to_owned()),
                (false, _) => ChangeError::NotFound(agent_id.to_owned()),
            });
        }
        if by_config {
            return Err(if disabled {
                ChangeError::AlreadyDisabled(agent_id.to_owned())
            } else {
                ChangeError::DisabledByConfig(agent_id.to_owned())
            });
        }
        let at = crate::telemetry::now_rfc3339();
        let mut changed = Vec::new();
        for row in rows.into_iter().filter(|r| r.disabled != disabled) {
            let (at, by) = if disabled {
                (Some(at.as_str()), Some(by))
            } else {
                (None, None)
            };
            // `false`: another instance made the same change a moment ago; it is not this request's change.
            if self
                .store
                .set_agent_disabled(&row.tenant_id, &row.agent_id, disabled, at, by)
                .await?
            {
                changed.push(AgentRow {
                    disabled,
                    disabled_at: at.map(str::to_owned),
                    disabled_by: by.map(str::to_owned),
                    ..row
                });
            }
        }
        if changed.is_empty() {
            return Err(if disabled {
                ChangeError::AlreadyDisabled(agent_id.to_owned())
            } else {
                ChangeError::AlreadyEnabled(agent_id.to_owned())
            });
        }
        let mut set = (*self.disabled.load_full()).clone();
        for row in &changed {
            let key = StoredKey {
                tenant_id: row.tenant_id.clone(),
                agent_id: row.agent_id.clone(),
            };
            if disabled {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
        self.disabled.store(Arc::new(set));
        Ok(changed.into_iter().map(|row| self.view(row)).collect())
    }

    /// The configuration's disabled agents that have no row: shown with no tenant and nothing counted.
    async fn never_seen_config_disabled(&self) -> Result<Vec<AgentView>, AuditError> {
        let mut ids: Vec<&String> = self.config_disabled.iter().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            if self.store.agents_named(id, None).await?.is_empty() {
                out.push(AgentView {
                    agent_id: id.clone(),
                    tenant_id: None,
                    calls: 0,
                    denials: 0,
                    escalations: 0,
                    first_seen: None,
                    last_seen: None,
                    disabled: true,
                    disabled_at: None,
                    disabled_by: Some("config".to_owned()),
                });
            }
        }
        Ok(out)
    }

    fn view(&self, row: AgentRow) -> AgentView {
        let by_config = self.config_disabled.contains(&row.agent_id);
        AgentView {
            tenant_id: (!row.tenant_id.is_empty()).then_some(row.tenant_id),
            calls: row.calls,
            denials: row.denials,
            escalations: row.escalations,
            first_seen: Some(row.first_seen),
            last_seen: Some(row.last_seen),
            disabled: row.disabled || by_config,
            disabled_by: row
                .disabled_by
                .or_else(|| by_config.then(|| "config".to_owned())),
            disabled_at: row.disabled_at,
            agent_id: row.agent_id,
        }
    }
}

async fn read_disabled(store: &AuditStore) -> Result<HashSet<StoredKey>, AuditError> {
    Ok(store
        .disabled_agents()
        .await?
        .into_iter()
        .map(|(tenant_id, agent_id)| StoredKey {
            tenant_id,
            agent_id,
        })
        .collect())
}

/// What the background tasks need of the running proxy (the app implements it; this module names no app).
pub trait Host: Send + Sync + 'static {
    fn agents(&self) -> &Agents;
    fn sessions(&self) -> &SessionStore;
    fn audit(&self) -> &AuditLog;
    fn bus(&self) -> &Bus;
}

/// Starts the refresh and flush tasks; each ends once the host is gone.
pub fn start<H: Host>(host: &Arc<H>) {
    let hearing = host.bus().hears_changes();
    tokio::spawn(refresh_loop(
        Arc::downgrade(host),
        host.bus().subscribe(),
        hearing,
    ));
    tokio::spawn(flush_loop(
        Arc::downgrade(host),
        host.agents().counted.share(),
    ));
}

async fn refresh_loop<H: Host>(host: Weak<H>, mut changes: Subscription, hearing: bool) {
    // Hearing of changes, the table is read on each one (a SQLite file's writes: at most every
    // WRITTEN_PERIOD) and every SAFETY_NET otherwise; else every REFRESH.
    let every = if hearing { SAFETY_NET } else { REFRESH };
    let mut failing = false;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                None => return,
                Some(Change::Agents | Change::Written | Change::Resync) => {}
                Some(_) => continue,
            },
            () = tokio::time::sleep(if failing { REFRESH } else { every }) => {}
        }
        let Some(host) = host.upgrade() else { return };
        match host.agents().refresh().await {
            Ok(newly) => {
                if failing {
                    tracing::info!("the disabled agents are read from the database again");
                    failing = false;
                }
                if !newly.is_empty() {
                    end_sessions(host.sessions(), host.audit(), &newly).await;
                }
            }
            Err(e) => {
                // The last set read stays in force: no agent is enabled by a database that went away.
                if !failing {
                    tracing::error!(error = %e, "cannot read the disabled agents; the last set read stays in force");
                    failing = true;
                }
            }
        }
    }
}

/// Adds the counts to the table once a FLUSH at most, and only after something was counted: idle, it sleeps.
async fn flush_loop<H: Host>(host: Weak<H>, counted: Arc<crate::shared_state::Doorbell>) {
    let mut failing = false;
    let mut next = tokio::time::Instant::now();
    loop {
        counted.answer().await;
        tokio::time::sleep_until(next).await;
        let Some(host) = host.upgrade() else { return };
        next = tokio::time::Instant::now() + FLUSH;
        match host.agents().flush().await {
            Ok(()) => failing = false,
            Err(e) => {
                // The counts wait in memory: try again a FLUSH from now.
                counted.ring();
                if !failing {
                    tracing::error!(error = %e, "cannot store the agents' counts; they are kept for the next try");
                    failing = true;
                }
            }
        }
    }
}

/// Ends this instance's open sessions of the agents in `keys` (stored form), each recorded as a `session_end`
/// event with `extra.reason` `agent_disabled`; answers how many ended.
pub async fn end_sessions(
    sessions: &SessionStore,
    audit: &AuditLog,
    keys: &HashSet<StoredKey>,
) -> usize {
    let stored: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.tenant_id.clone(), k.agent_id.clone()))
        .collect();
    // Every instance's sessions of these agents end (shared store: each instance ends those it holds as the
    // disable reaches it); each end is recorded once, by the instance that ended it.
    let ended = sessions
        .end_agents(|agent: &AgentKey| {
            keys.contains(&StoredKey::of(agent.tenant_id.as_deref(), &agent.agent_id))
        })
        .await;
    sessions.end_remainder(stored, audit);
    for session in &ended {
        let draft = session.audit_event(
            "session_end",
            json!({ "reason": "agent_disabled", "calls": session.calls() }),
        );
        // The session is over whether or not its end could be recorded; a failed write is counted by the writer.
        let _ = audit.append(draft).await;
    }
    ended.len()
}

fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

/// Unix microseconds in the audit log's timestamp spelling.
fn format_micros(micros: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    crate::telemetry::format_rfc3339(at)
}

fn cursor_after(row: &AgentRow) -> String {
    let key = json!([row.last_seen, row.tenant_id, row.agent_id]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.to_string())
}

fn parse_cursor(cursor: &str) -> Result<(String, String, String), ListError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| ListError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| ListError::BadCursor)
}

#[cfg(test)]
mod tests;
