//! Escalated calls held for a human: recorded as pending with an id, decided through the admin API.
//!
//! A reviewer's answer reaches the agent either at once, when its call is still held (`escalation.hold_seconds`),
//! or on the agent's next identical call (same agent, upstream, tool and arguments) within
//! `escalation.answer_ttl_seconds`: an approval lets that one retry through, a denial denies it. A retry while
//! the escalation is still pending joins it instead of opening another one for the reviewers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// Once decided: whether the agent has received the answer (its held call, or a retry, took it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
}

/// Escalations kept in memory before decided ones are forgotten.
const MAX_KEPT: usize = 10_000;

struct Entry {
    escalation: Escalation,
    /// Which calls count as the same call: agent, upstream, tool and the hash of the arguments.
    fingerprint: String,
    /// Present while a call is (or was) held waiting for this review.
    waiter: Option<oneshot::Sender<Review>>,
    /// A decision no held call received, kept for the agent's next identical call, and when it was made.
    undelivered: Option<(Review, Instant)>,
}

/// What an escalated call finds for its fingerprint.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A reviewer already decided an earlier identical call; the answer is now taken (it serves one call).
    Answered { id: String, review: Review },
    /// An identical call is pending and nobody waits for it: join it rather than open another.
    Pending { id: String },
    /// Nothing: open a new escalation.
    None,
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

    /// What an escalated call with this fingerprint should do; an answer found is consumed. Answers older
    /// than `ttl` are not given out.
    pub fn lookup(&self, fingerprint: &str, ttl: Duration) -> Lookup {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = None;
        for (id, entry) in entries
            .iter_mut()
            .filter(|(_, e)| e.fingerprint == fingerprint)
        {
            match &entry.undelivered {
                Some((review, at)) if at.elapsed() <= ttl => {
                    let review = review.clone();
                    entry.undelivered = None;
                    entry.escalation.delivered = Some(true);
                    return Lookup::Answered {
                        id: id.clone(),
                        review,
                    };
                }
                _ => {}
            }
            let nobody_waits = entry.waiter.as_ref().is_none_or(|w| w.is_closed());
            if entry.escalation.status == "pending" && nobody_waits {
                pending = Some(id.clone());
            }
        }
        pending.map_or(Lookup::None, |id| Lookup::Pending { id })
    }

    /// Holds a call on the pending escalation `id` (a retry joining it); `None` if it is no longer pending.
    pub fn join(&self, id: &str) -> Option<oneshot::Receiver<Review>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(id)?;
        if entry.escalation.status != "pending" {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        entry.waiter = Some(tx);
        Some(rx)
    }

    /// Records a pending escalation; the receiver resolves when a reviewer decides.
    pub fn open(&self, escalation: Escalation, fingerprint: String) -> oneshot::Receiver<Review> {
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
                fingerprint,
                waiter: Some(tx),
                undelivered: None,
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
        let delivered = entry
            .waiter
            .take()
            .is_some_and(|waiter| waiter.send(review.clone()).is_ok());
        if !delivered {
            entry.undelivered = Some((review, Instant::now()));
        }
        entry.escalation.delivered = Some(delivered);
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
            delivered: None,
        }
    }

    const TTL: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_decision_releases_the_held_call_once() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let e = Escalations::new(gauge.clone());
        let rx = e.open(esc("e1"), "f1".into());
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
        assert_eq!(e.list(Some("approved"))[0].delivered, Some(true));
        // The held call took the answer: an identical retry opens a new escalation.
        assert_eq!(e.lookup("f1", TTL), Lookup::None);
    }

    #[tokio::test]
    async fn an_answer_no_held_call_took_serves_the_next_identical_call_once() {
        let e = Escalations::new(IntGauge::new("g", "g").unwrap());
        for (id, review) in [("a", Review::Approved), ("d", Review::Denied)] {
            let fingerprint = format!("f-{id}");
            drop(e.open(esc(id), fingerprint.clone())); // the call stopped waiting (hold time over)
            assert_eq!(e.lookup("other", TTL), Lookup::None);
            assert_eq!(
                e.lookup(&fingerprint, TTL),
                Lookup::Pending { id: id.into() },
                "a retry joins the pending escalation"
            );
            let joined = e.join(id).unwrap();
            assert_eq!(
                e.lookup(&fingerprint, TTL),
                Lookup::None,
                "a held retry is waiting: no second joiner"
            );
            drop(joined);
            e.decide(id, review.clone()).unwrap();
            assert_eq!(
                e.list(None).iter().find(|x| x.id == id).unwrap().delivered,
                Some(false)
            );
            assert!(e.join(id).is_none(), "decided: nothing to join");
            assert_eq!(
                e.lookup(&fingerprint, Duration::ZERO),
                Lookup::None,
                "an answer older than the ttl is not given out"
            );
        }
        // Within the ttl: given out once, to the identical call only.
        let e2 = Escalations::new(IntGauge::new("g", "g").unwrap());
        drop(e2.open(esc("x"), "fx".into()));
        e2.decide("x", Review::Approved).unwrap();
        assert_eq!(e2.lookup("fy", TTL), Lookup::None);
        assert_eq!(
            e2.lookup("fx", TTL),
            Lookup::Answered {
                id: "x".into(),
                review: Review::Approved
            }
        );
        assert_eq!(e2.list(None)[0].delivered, Some(true));
        assert_eq!(
            e2.lookup("fx", TTL),
            Lookup::None,
            "one answer serves one call"
        );
    }
}
