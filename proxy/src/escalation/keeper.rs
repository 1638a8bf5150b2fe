//! The escalations' background task, one per instance. It expires the pending escalations past their timeout
//! (each an `escalation_expired` audit event, recorded by whichever instance expired it), wakes the calls held
//! here on escalations settled by another instance, and sets `toolgate_escalations_pending` from the database's
//! count, so the gauge follows every instance's changes. Once an hour it deletes the escalations settled longer
//! ago than the audit log keeps events (`audit.retention_days`, and never before an approval's answer could
//! still be taken).
//!
//! When the state-change bus hears of the database's changes (PostgreSQL's notifications; a SQLite file's
//! writes, by any process), the keeper wakes on each escalation opened, decided or expired on any instance (on
//! SQLite: on each write to the file, at most every `WRITTEN_PERIOD`), and otherwise sleeps until the
//! soonest pending expiry (or a slow safety net): no timer runs while nothing is pending. Hearing nothing (a
//! SQLite file that cannot be watched), it looks every [`TICK`].

use std::sync::Weak;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{from_row, Shared};
use crate::audit::AuditLog;
use crate::shared_state::{Change, Subscription};

/// How often the database is looked at hearing of no changes (and while it fails): an expiry, or a decision
/// made elsewhere, reaches a held call within about this long (well within a second).
pub(super) const TICK: Duration = Duration::from_millis(250);

/// Hearing of changes, the longest the keeper sleeps with nothing due.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// How often settled escalations past `keep_settled` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(super) fn spawn(
    shared: Weak<Shared>,
    audit: AuditLog,
    keep_settled: Option<Duration>,
    mut changes: Subscription,
    listening: bool,
) {
    tokio::spawn(async move {
        let mut failing = false;
        let mut pruned_at: Option<Instant> = None;
        let mut wake = Instant::now() + TICK;
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    None => return,
                    Some(Change::Escalation(_) | Change::Written | Change::Resync) => {}
                    Some(_) => continue,
                },
                () = tokio::time::sleep_until(wake) => {}
            }
            // Gone with the App: nothing left to keep.
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Some(keep) = keep_settled {
                if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned_at = Some(Instant::now());
                    prune(&shared, keep).await;
                }
            }
            match tick(&shared, &audit).await {
                Ok(soonest) => {
                    if failing {
                        tracing::info!("escalation upkeep works again");
                        failing = false;
                    }
                    wake = if listening {
                        Instant::now()
                            + crate::shared_state::sleep_before(
                                soonest.as_deref(),
                                SAFETY_NET,
                                TICK,
                            )
                    } else {
                        Instant::now() + TICK
                    };
                }
                // Logged once per outage, not four times a second.
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "escalation upkeep failed; retrying");
                        failing = true;
                    }
                    wake = Instant::now() + TICK;
                }
            }
        }
    });
}

/// One look at the database; answers the soonest expiry still pending.
async fn tick(shared: &Shared, audit: &AuditLog) -> Result<Option<String>, super::EscalationError> {
    let now = crate::telemetry::now_rfc3339();
    let (mut pending, mut soonest) = shared.store.pending_escalations().await?;
    if soonest.as_ref().is_some_and(|at| *at <= now) {
        let expired = shared.store.expire_escalations(&now).await?;
        for row in expired {
            shared.raise(&row.id);
            record_expiry(shared, audit, from_row(row)?).await;
        }
        (pending, soonest) = shared.store.pending_escalations().await?;
    }
    shared.gauge.set(pending.max(0));
    let held: Vec<String> = shared.held().keys().cloned().collect();
    for id in shared.store.decided_among(&held).await? {
        shared.raise(&id);
    }
    Ok(soonest)
}

/// Deletes the escalations settled more than `keep` ago. A failure is logged and retried an hour later: the rows
/// only take space.
pub(super) async fn prune(shared: &Shared, keep: Duration) {
    let cutoff = time::OffsetDateTime::now_utc() - keep;
    let before = crate::audit::timestamp::format(cutoff);
    match shared.store.prune_settled_escalations(&before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "settled escalations past retention deleted"),
        Err(e) => tracing::warn!(error = %e, "deleting settled escalations failed"),
    }
}

/// The `escalation_expired` event; the expiry stands whether or not it could be recorded (a failed write is
/// counted by the writer).
async fn record_expiry(shared: &Shared, audit: &AuditLog, escalation: super::Escalation) {
    let draft = escalation.event_draft(
        "escalation_expired",
        json!({
            "escalation_id": escalation.id,
            "timeout_seconds": shared.timeout.as_secs(),
        }),
    );
    if let Err(e) = audit.append(draft).await {
        tracing::error!(error = %e, "audit write failed");
    }
}
