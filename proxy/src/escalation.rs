//! Escalated calls held for a human: recorded as pending with an id, decided through the admin API.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::IntGauge;
use serde::Serialize;
use tokio::sync::oneshot;

/// What a reviewer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Approved,
    Denied,
}

/// One escalation as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Escalation {
    pub id: String,
    pub status: &'static str,
    pub created_at: String,
    pub agent_id: String,
    pub tool_name: String,
    pub mcp_server: String,
    pub action: String,
    pub target: Option<String>,
    pub policy_id: String,
    pub reason: String,
}

/// Escalations kept in memory before decided ones are forgotten.
const MAX_KEPT: usize = 10_000;

struct Entry {
    escalation: Escalation,
    /// Present while a call is still held waiting for this review.
    waiter: Option<oneshot::Sender<Review>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EscalationError {
    #[error("no escalation {0}")]
    NotFound(String),
    #[error("escalation {0} was already decided")]
    AlreadyDecided(String),
}

pub struct Escalations {
    /// A std mutex: held for map operations only, never across an await.
    entries: Mutex<HashMap<String, Entry>>,
    pending: IntGauge,
}

impl Escalations {
    pub fn new(pending: IntGauge) -> Escalations {
        Escalations {
            entries: Mutex::new(HashMap::new()),
            pending,
        }
    }

    /// Records a pending escalation; the receiver resolves when a reviewer decides.
    pub fn open(&self, escalation: Escalation) -> oneshot::Receiver<Review> {
        let (tx, rx) = oneshot::channel();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded memory: decided escalations are kept for the admin API only while there is room (they are
        // in the audit log for good); pending ones are never dropped.
        if entries.len() >= MAX_KEPT {
            entries.retain(|_, e| e.escalation.status == "pending");
        }
        entries.insert(
            escalation.id.clone(),
            Entry {
                escalation,
                waiter: Some(tx),
            },
        );
        self.pending.inc();
        rx
    }

    /// Records a reviewer's decision and releases the held call, if it is still held.
    pub fn decide(&self, id: &str, review: Review) -> Result<Escalation, EscalationError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| EscalationError::NotFound(id.to_owned()))?;
        if entry.escalation.status != "pending" {
            return Err(EscalationError::AlreadyDecided(id.to_owned()));
        }
        entry.escalation.status = match review {
            Review::Approved => "approved",
            Review::Denied => "denied",
        };
        self.pending.dec();
        if let Some(waiter) = entry.waiter.take() {
            let _ = waiter.send(review);
        }
        Ok(entry.escalation.clone())
    }

    /// Escalations, newest first, optionally only those with `status`.
    pub fn list(&self, status: Option<&str>) -> Vec<Escalation> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = entries
            .values()
            .filter(|e| status.is_none_or(|s| e.escalation.status == s))
            .map(|e| e.escalation.clone())
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(id: &str) -> Escalation {
        Escalation {
            id: id.into(),
            status: "pending",
            created_at: crate::telemetry::now_rfc3339(),
            agent_id: "a".into(),
            tool_name: "write_file".into(),
            mcp_server: "demo".into(),
            action: "write".into(),
            target: None,
            policy_id: "p".into(),
            reason: "r".into(),
        }
    }

    #[tokio::test]
    async fn a_decision_releases_the_held_call_once() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let e = Escalations::new(gauge.clone());
        let rx = e.open(esc("e1"));
        assert_eq!(gauge.get(), 1);
        assert_eq!(e.list(Some("pending")).len(), 1);
        e.decide("e1", Review::Approved).unwrap();
        assert_eq!(rx.await.unwrap(), Review::Approved);
        assert_eq!(gauge.get(), 0);
        assert_eq!(
            e.decide("e1", Review::Denied).unwrap_err(),
            EscalationError::AlreadyDecided("e1".into())
        );
        assert_eq!(
            e.decide("nope", Review::Denied).unwrap_err(),
            EscalationError::NotFound("nope".into())
        );
        assert_eq!(e.list(Some("approved"))[0].id, "e1");
    }
}
