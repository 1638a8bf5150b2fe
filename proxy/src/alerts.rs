//! Behavioural and operational alerts: raised by the rules that watch agents (`crate::behaviour`), the DLP
//! stage, tool pinning, the audit writer and the SIEM sinks; stored in the `alerts` table beside the audit log;
//! listed, acknowledged and resolved through the admin API.
//!
//! [`Alerts::raise`] is cheap and synchronous, so the request path can call it: it checks the alerts this
//! instance knows are open, and queues a new one. A keeper task ([`start`]) stores what is queued within a
//! fraction of a second, records each alert it opened as an `alert` audit event (which the SSE feed shows as
//! event `alert`), and reads the open alerts back (at most once a second) whenever the state-change bus tells of
//! a change (PostgreSQL's notifications, a SQLite file's writes; every second where nothing tells), so
//! `toolgate_alerts_open_total{severity}` and the "already open" check follow changes made on any instance.
//! Idle, it sleeps: it wakes on a raise, a failed audit commit or a change, not on a timer. The instance whose insert opened an alert counts
//! it once in `toolgate_alerts_opened_total{kind,severity}`. The table's partial unique index keeps one open
//! alert per kind and agent across instances. An `audit_write_failure` alert is never written to the audit log
//! that is failing: it is stored and counted only.
//!
//! Alert details and agent ids are redacted (`crate::redaction`) before they are kept or stored.

mod model;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use prometheus::IntCounter;
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use crate::agents::StoredKey;
use crate::audit::store::{AlertPage, AlertRow};
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::redaction::stored_text;
use crate::telemetry::AlertMetrics;

pub use model::{AlertView, Kind, Severity, Status};

/// How soon a failed store or read is tried again (and, hearing of no changes, how often the keeper looks).
pub const TICK: Duration = Duration::from_millis(200);
/// How often, at most, the open alerts are read back from the database (every this long where nothing tells of
/// changes).
pub const REFRESH: Duration = Duration::from_secs(1);
/// Hearing of changes, the open alerts are read back this often besides.
const SAFETY_NET: Duration = Duration::from_secs(30);
/// Most alerts waiting in memory for a database that does not answer.
pub const MAX_QUEUED: usize = 1000;
/// Most alerts one page of the listing holds (and its default size).
pub const PAGE_LIMIT: u32 = 500;

/// Why an ack or a resolve changed nothing, or a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("no alert {0:?}")]
    NotFound(String),
    #[error("alert {id:?} is already {status}")]
    AlreadyInState { id: String, status: &'static str },
    #[error("bad cursor: not one this server issued")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] AuditError),
}

/// A listing's filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    /// Stored form (as listed).
    pub agent_id: Option<String>,
    /// Only this tenant's alerts (a tenant's admin); `None`: every tenant's.
    pub tenant_id: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The open alerts as this instance knows them: what `raise` checks, and what the gauge shows.
#[derive(Default)]
struct Known {
    /// Open in the table as last read, or opened here since: the kinds open per agent (a lookup by reference,
    /// so a rule checking on every call allocates nothing).
    open: HashMap<StoredKey, HashSet<Kind>>,
    /// Raised here and not yet stored.
    queued: Vec<AlertRow>,
}

impl Known {
    fn is_open(&self, kind: Kind, agent: &StoredKey) -> bool {
        self.open
            .get(agent)
            .is_some_and(|kinds| kinds.contains(&kind))
    }
}

/// The alerts of this instance.
pub struct Alerts {
    store: AuditStore,
    audit: AuditLog,
    metrics: AlertMetrics,
    /// A std Mutex: held for a set lookup or a push, never across an await.
    known: Mutex<Known>,
    /// Wakes the keeper; its own `Arc` so the keeper can wait on it without keeping the alerts alive.
    wake: Arc<tokio::sync::Notify>,
    /// The audit writer's failure counter: a rise opens `audit_write_failure`.
    write_failures: IntCounter,
    failures_seen: Mutex<u64>,
    /// Severity counts of the open alerts in the table, as last read.
    stored_open: Mutex<HashMap<Severity, i64>>,
}

impl Alerts {
    /// Reads the open alerts; start-up fails if the database cannot answer.
    pub async fn load(
        store: AuditStore,
        audit: AuditLog,
        metrics: AlertMetrics,
        write_failures: IntCounter,
    ) -> Result<Alerts, AuditError> {
        let failures_seen = Mutex::new(write_failures.get());
        // Every kind from the first scrape, at 0 until one opens.
        for kind in Kind::ALL {
            metrics
                .opened
                .with_label_values(&[kind.as_str(), kind.severity().as_str()]);
        }
        let alerts = Alerts {
            store,
            audit,
            metrics,
            known: Mutex::new(Known::default()),
            wake: Arc::new(tokio::sync::Notify::new()),
            write_failures,
            failures_seen,
            stored_open: Mutex::new(HashMap::new()),
        };
        alerts.refresh().await?;
        Ok(alerts)
    }

    /// Opens an alert of `kind` for `agent` (stored form; `None` for one of no agent) unless one of that kind is
    /// open for it already. Cheap and synchronous: the keeper stores it within [`TICK`]. `detail` is redacted
    /// and capped here.
    pub fn raise(&self, kind: Kind, severity: Severity, agent: Option<&StoredKey>, detail: &str) {
        let agent = agent.cloned().unwrap_or(StoredKey {
            tenant_id: String::new(),
            agent_id: String::new(),
        });
        {
            let mut known = lock(&self.known);
            if known.is_open(kind, &agent) || known.queued.len() >= MAX_QUEUED {
                return;
            }
            known.open.entry(agent.clone()).or_default().insert(kind);
            known.queued.push(AlertRow {
                id: uuid::Uuid::now_v7().to_string(),
                kind: kind.as_str().to_owned(),
                severity: severity.as_str().to_owned(),
                tenant_id: agent.tenant_id,
                agent_id: agent.agent_id,
                status: Status::Open.as_str().to_owned(),
                opened_at: crate::telemetry::now_rfc3339(),
                detail: stored_text(detail.to_owned()),
                acknowledged_at: None,
                acknowledged_by: None,
                resolved_at: None,
                resolved_by: None,
            });
        }
        self.set_gauge();
        self.wake.notify_one();
    }

    /// Whether an alert of `kind` is open for `agent` (stored form) as far as this instance knows: a rule that
    /// holds on every call checks this before it builds its alert's detail.
    pub fn is_open(&self, kind: Kind, agent: &StoredKey) -> bool {
        lock(&self.known).is_open(kind, agent)
    }

    /// [`Alerts::raise`] with the kind's own severity.
    pub fn raise_kind(&self, kind: Kind, agent: Option<&StoredKey>, detail: &str) {
        self.raise(kind, kind.severity(), agent, detail);
    }

    /// Opens `dlp_critical` for the agent when `findings` hold a critical one; `place` says where they were ("a
    /// message to demo"). The detail names the finding types, never a value. `agent` (its stored form) is made
    /// only when there is something to raise, since making it runs the redaction.
    pub fn raise_dlp_critical(
        &self,
        agent: impl FnOnce() -> StoredKey,
        place: &str,
        findings: &[toolgate_engine::dlp::Finding],
    ) {
        let mut critical: Vec<&str> = findings
            .iter()
            .filter(|f| f.severity == toolgate_engine::dlp::Severity::Critical)
            .map(|f| f.kind.as_str())
            .collect();
        if critical.is_empty() {
            return;
        }
        critical.sort_unstable();
        critical.dedup();
        let agent = agent();
        if self.is_open(Kind::DlpCritical, &agent) {
            return;
        }
        self.raise_kind(
            Kind::DlpCritical,
            Some(&agent),
            &format!(
                "critical DLP finding(s) in {place}: {}",
                critical.join(", ")
            ),
        );
    }

    /// Stores what was raised: each alert it opens becomes an `alert` audit event (except an
    /// `audit_write_failure`, which the failing log cannot take). An alert the database could not take waits for
    /// the next call.
    pub async fn store_raised(&self) -> Result<(), AuditError> {
        let queued = std::mem::take(&mut lock(&self.known).queued);
        let mut failed = Vec::new();
        let mut error = None;
        for row in queued {
            if error.is_some() {
                failed.push(row);
                continue;
            }
            match self.store.insert_alert(&row).await {
                Ok(true) => {
                    self.metrics
                        .opened
                        .with_label_values(&[&row.kind, &row.severity])
                        .inc();
                    self.record_opened(&row).await
                }
                // Open already (another instance raised it a moment ago): nothing more to do.
                Ok(false) => {}
                Err(e) => {
                    failed.push(row);
                    error = Some(e);
                }
            }
        }
        if !failed.is_empty() {
            let mut known = lock(&self.known);
            failed.append(&mut known.queued);
            failed.truncate(MAX_QUEUED);
            known.queued = failed;
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn record_opened(&self, row: &AlertRow) {
        tracing::warn!(
            kind = %row.kind,
            severity = %row.severity,
            agent = %row.agent_id,
            alert_id = %row.id,
            "alert opened"
        );
        if row.kind == Kind::AuditWriteFailure.as_str() {
            return;
        }
        let draft = EventDraft {
            event_type: "alert".into(),
            agent_id: (!row.agent_id.is_empty()).then(|| row.agent_id.clone()),
            tenant_id: (!row.tenant_id.is_empty()).then(|| row.tenant_id.clone()),
            dlp_findings: json!([]),
            extra: json!({
                "alert_id": row.id,
                "kind": row.kind,
                "severity": row.severity,
                "detail": row.detail,
            }),
            ..EventDraft::default()
        };
        // A failed write is counted by the writer (and so opens `audit_write_failure`); the alert stands.
        if let Err(e) = self.audit.append(draft).await {
            tracing::error!(error = %e, "audit write failed");
        }
    }

    /// Reads the open alerts back (changes on other instances, acks and resolves) and sets the gauge.
    pub async fn refresh(&self) -> Result<(), AuditError> {
        let rows = self.store.open_alerts().await?;
        let mut open: HashMap<StoredKey, HashSet<Kind>> = HashMap::with_capacity(rows.len());
        let mut counts: HashMap<Severity, i64> = HashMap::new();
        for (kind, tenant_id, agent_id, severity) in rows {
            if let Some(kind) = Kind::parse(&kind) {
                open.entry(StoredKey {
                    tenant_id,
                    agent_id,
                })
                .or_default()
                .insert(kind);
            }
            if let Some(s) = Severity::parse(&severity) {
                *counts.entry(s).or_default() += 1;
            }
        }
        {
            let mut known = lock(&self.known);
            // Raised here and not stored yet: still open as far as `raise` is concerned.
            for row in &known.queued {
                if let Some(kind) = Kind::parse(&row.kind) {
                    open.entry(StoredKey {
                        tenant_id: row.tenant_id.clone(),
                        agent_id: row.agent_id.clone(),
                    })
                    .or_default()
                    .insert(kind);
                }
            }
            known.open = open;
        }
        *lock(&self.stored_open) = counts;
        self.set_gauge();
        Ok(())
    }

    /// `toolgate_alerts_open_total{severity}`: the open alerts in the table plus those waiting to be stored.
    fn set_gauge(&self) {
        let mut counts = lock(&self.stored_open).clone();
        for row in &lock(&self.known).queued {
            if let Some(s) = Severity::parse(&row.severity) {
                *counts.entry(s).or_default() += 1;
            }
        }
        for s in Severity::ALL {
            self.metrics
                .open
                .with_label_values(&[s.as_str()])
                .set(counts.get(&s).copied().unwrap_or(0));
        }
    }

    /// Opens `audit_write_failure` when the audit writer counted failures since the last look.
    pub fn watch_audit_writer(&self) {
        let now = self.write_failures.get();
        let before = std::mem::replace(&mut *lock(&self.failures_seen), now);
        if now > before {
            self.raise_kind(
                Kind::AuditWriteFailure,
                None,
                &format!(
                    "{} audit event(s) could not be committed; the calls they recorded were refused",
                    now - before
                ),
            );
        }
    }

    /// One page of alerts, newest first, and the cursor of the next page.
    pub async fn list(
        &self,
        query: &ListQuery,
    ) -> Result<(Vec<AlertView>, Option<String>), AlertError> {
        let limit = query.limit.unwrap_or(PAGE_LIMIT).clamp(1, PAGE_LIMIT);
        let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let page = AlertPage {
            status: query.status.map(|s| s.as_str().to_owned()),
            kind: query.kind.map(|k| k.as_str().to_owned()),
            agent_id: query.agent_id.clone(),
            tenant_id: query.tenant_id.clone(),
            after,
            limit: limit + 1,
        };
        let mut rows = self.store.alerts_page(&page).await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(json!([r.opened_at, r.id]).to_string())
            })
        } else {
            None
        };
        Ok((rows.into_iter().map(AlertView::from).collect(), next))
    }

    /// Acknowledges an open alert (`to` = acknowledged) or resolves an open or acknowledged one (`to` =
    /// resolved); answers the changed alert.
    /// One alert by id.
    pub async fn get(&self, id: &str) -> Result<Option<AlertView>, AlertError> {
        Ok(self.store.alert(id).await?.map(AlertView::from))
    }

    pub async fn change(&self, id: &str, to: Status, by: &str) -> Result<AlertView, AlertError> {
        let from: &[&str] = match to {
            Status::Acknowledged => &["open"],
            Status::Resolved => &["open", "acknowledged"],
            Status::Open => &[],
        };
        let at = crate::telemetry::now_rfc3339();
        let changed = !from.is_empty()
            && self
                .store
                .set_alert_status(id, from, to.as_str(), &at, by)
                .await?;
        let row = self
            .store
            .alert(id)
            .await?
            .ok_or_else(|| AlertError::NotFound(id.to_owned()))?;
        if !changed {
            let status = Status::parse(&row.status).unwrap_or(Status::Resolved);
            return Err(AlertError::AlreadyInState {
                id: id.to_owned(),
                status: status.as_str(),
            });
        }
        // The gauge and the "already open" check follow at once here (other instances within REFRESH).
        if let Err(e) = self.refresh().await {
            tracing::error!(error = %e, "cannot read the open alerts back");
        }
        Ok(AlertView::from(row))
    }
}

fn parse_cursor(cursor: &str) -> Result<(String, String), AlertError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| AlertError::BadCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| AlertError::BadCursor)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the keeper: stores raised alerts at once, watches the audit writer's failures, reads the open alerts
/// back on the bus's changes (at most every [`REFRESH`]); it ends once the alerts are dropped.
pub fn start(alerts: &Arc<Alerts>, bus: &crate::shared_state::Bus) {
    tokio::spawn(keep(
        Arc::downgrade(alerts),
        bus.subscribe(),
        bus.hears_changes(),
    ));
    tokio::spawn(watch_siem(Arc::downgrade(alerts), alerts.audit.subscribe()));
}

/// `siem_delivery_failure`: the SIEM sinks record a `siem_delivery` event `failed` when a sink keeps failing (or
/// retention waits for one); the alert follows from that event as it is committed, so the sinks need no handle
/// on the alerts.
async fn watch_siem(
    alerts: Weak<Alerts>,
    mut committed: tokio::sync::broadcast::Receiver<Arc<toolgate_engine::chain::AuditEvent>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match committed.recv().await {
            Ok(event) => event,
            // Events missed while this task was behind: a failure among them is recorded again while it lasts.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if event.event_type != "siem_delivery" || event.extra["status"] != "failed" {
            continue;
        }
        let Some(a) = alerts.upgrade() else { return };
        let sinks = event.extra["sinks"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let reason = event.extra["reason"].as_str().unwrap_or("unknown");
        a.raise_kind(
            Kind::SiemDeliveryFailure,
            None,
            &format!("SIEM delivery failing ({reason}) for sink(s): {sinks}"),
        );
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        // The keeper wakes, finds the alerts gone and ends.
        self.wake.notify_one();
    }
}

async fn keep(alerts: Weak<Alerts>, mut changes: crate::shared_state::Subscription, hearing: bool) {
    use crate::shared_state::Change;
    use tokio::time::Instant;
    let Some((wake, mut failures)) = alerts
        .upgrade()
        .map(|a| (a.wake.clone(), a.audit.failures()))
    else {
        return;
    };
    let mut writer_running = true;
    // `load` read the open alerts just now.
    let mut last_refresh = Instant::now();
    // When the open alerts are to be read back next: every REFRESH hearing of no changes, else on a change (at
    // most every REFRESH) and every SAFETY_NET.
    let every = if hearing { SAFETY_NET } else { REFRESH };
    let mut refresh_at = last_refresh + every;
    // When a failed store is tried again.
    let mut retry_at: Option<Instant> = None;
    let mut failing = false;
    loop {
        let timer = retry_at.map_or(refresh_at, |retry| retry.min(refresh_at));
        tokio::select! {
            () = wake.notified() => {}
            changed = failures.changed(), if writer_running => writer_running = changed.is_ok(),
            change = changes.next() => match change {
                None => return,
                Some(Change::Alerts | Change::Written | Change::Resync) => {
                    refresh_at = refresh_at.min((last_refresh + REFRESH).max(Instant::now()));
                }
                Some(_) => continue,
            },
            () = tokio::time::sleep_until(timer) => {}
        }
        let Some(a) = alerts.upgrade() else { return };
        a.watch_audit_writer();
        retry_at = None;
        let mut result = a.store_raised().await;
        if result.is_ok() && refresh_at <= Instant::now() {
            last_refresh = Instant::now();
            result = a.refresh().await;
            refresh_at = last_refresh + if result.is_err() { REFRESH } else { every };
        }
        match result {
            Ok(()) => failing = false,
            Err(e) => {
                // What was raised waits in memory; it is stored on the next try.
                retry_at = Some(Instant::now() + TICK);
                if !failing {
                    tracing::error!(error = %e, "cannot store or read the alerts; raised ones wait in memory");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
