//! Escalated calls held for a human: recorded as pending with an id, decided through the admin API.
//!
//! A reviewer's answer reaches the agent either at once, when its call is still held (`escalation.hold_seconds`),
//! or on the agent's next identical call (same agent, upstream, method, name and exact arguments, see
//! [`Fingerprint`]) within `escalation.answer_ttl_seconds`: an approval lets that one retry through, a denial
//! denies it. A retry while the escalation is still pending joins it instead of opening another one for the
//! reviewers. The agent is its tenant and `sub` together ([`AgentKey`]): the same `sub` in another tenant never
//! joins, nor takes the answer of, another tenant's escalation.
//!
//! Memory is bounded: every escalation keeps its text fields cut to [`MAX_FIELD_BYTES`] and a 32-byte
//! fingerprint, each agent has at most `escalation.max_pending_per_agent` pending, and decided ones are
//! forgotten past [`MAX_KEPT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::auth::AgentKey;

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
    /// The agent's tenant: two tenants' agents may share an `agent_id`.
    pub tenant_id: Option<String>,
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

/// The longest text an escalation keeps in any field (bytes); longer text is cut at a character boundary and
/// ends in `…`. The agent chooses a tool's name and target and may make them megabytes; a reviewer needs the
/// start, and the audit event (whose `input_hash` pins the arguments) has the rest.
pub const MAX_FIELD_BYTES: usize = 4096;

impl Escalation {
    /// The agent the escalation belongs to.
    pub fn agent(&self) -> AgentKey {
        AgentKey {
            tenant_id: self.tenant_id.clone(),
            agent_id: self.agent_id.clone(),
        }
    }

    /// The same escalation with every text field at most [`MAX_FIELD_BYTES`], and no spare capacity.
    fn bounded(self) -> Escalation {
        let cut = |text: String| bounded_text(&text);
        Escalation {
            id: cut(self.id),
            created_at: cut(self.created_at),
            agent_id: cut(self.agent_id),
            tenant_id: self.tenant_id.map(cut),
            tool_name: cut(self.tool_name),
            mcp_server: cut(self.mcp_server),
            action: cut(self.action),
            target: self.target.map(cut),
            policy_id: cut(self.policy_id),
            reason: cut(self.reason),
            ..self
        }
    }

    /// Heap bytes this escalation holds (its strings' capacities).
    pub fn heap_bytes(&self) -> usize {
        [
            &self.id,
            &self.created_at,
            &self.agent_id,
            &self.tool_name,
            &self.mcp_server,
            &self.action,
            &self.policy_id,
            &self.reason,
        ]
        .iter()
        .map(|s| s.capacity())
        .sum::<usize>()
            + self.tenant_id.as_ref().map_or(0, String::capacity)
            + self.target.as_ref().map_or(0, String::capacity)
    }
}

/// `text` if it fits in [`MAX_FIELD_BYTES`], else its longest prefix that fits with a closing `…`.
fn bounded_text(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&text[..end]);
    out.push('…');
    out
}

/// Which calls count as the same call: SHA-256 over the agent (tenant and `sub`), the upstream, the method, the
/// tool or prompt name and the exact hash of the arguments (`toolgate_engine::canonical::exact_hash`, which,
/// unlike `input_hash`, does not round large integers). Fixed-size whatever the call's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(
        agent: &AgentKey,
        upstream: &str,
        method: &str,
        name: Option<&str>,
        arguments: &[u8; 32],
    ) -> Fingerprint {
        let mut hasher = Sha256::new();
        // Each part length-prefixed (and the optional ones flagged), so no two different calls give the same
        // bytes: `("ab", "c")` and `("a", "bc")` differ, and no tenant differs from an empty tenant.
        let mut part = |bytes: Option<&[u8]>| match bytes {
            None => hasher.update([0u8]),
            Some(bytes) => {
                hasher.update([1u8]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
        };
        part(agent.tenant_id.as_deref().map(str::as_bytes));
        part(Some(agent.agent_id.as_bytes()));
        part(Some(upstream.as_bytes()));
        part(Some(method.as_bytes()));
        part(name.map(str::as_bytes));
        part(Some(arguments.as_slice()));
        Fingerprint(hasher.finalize().into())
    }
}

/// Escalations kept in memory before decided ones are forgotten.
const MAX_KEPT: usize = 10_000;

struct Entry {
    escalation: Escalation,
    /// Whose it is, compared whole before the fingerprint (which covers it too).
    agent: AgentKey,
    fingerprint: Fingerprint,
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
    /// The agent already has `escalation.max_pending_per_agent` pending: nothing was opened.
    #[error("{0} escalations of this agent already wait for a reviewer")]
    TooManyPending(usize),
}

pub struct Escalations {
    /// A std mutex: held for map operations only, never across an await.
    entries: Mutex<HashMap<String, Entry>>,
    pending: IntGauge,
    max_pending_per_agent: usize,
}

impl Escalations {
    pub fn new(pending: IntGauge, max_pending_per_agent: usize) -> Escalations {
        Escalations {
            entries: Mutex::new(HashMap::new()),
            pending,
            max_pending_per_agent,
        }
    }

    /// The most pending escalations one agent may have.
    pub fn max_pending_per_agent(&self) -> usize {
        self.max_pending_per_agent
    }

    /// What `agent`'s escalated call with this fingerprint should do; an answer found is consumed. Answers older
    /// than `ttl` are not given out.
    pub fn lookup(&self, agent: &AgentKey, fingerprint: &Fingerprint, ttl: Duration) -> Lookup {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = None;
        for (id, entry) in entries
            .iter_mut()
            .filter(|(_, e)| e.agent == *agent && e.fingerprint == *fingerprint)
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

    /// Whether `agent` may open another escalation (it has fewer than the cap pending). Checked before the
    /// `policy_escalate` event is written; [`Escalations::open`] checks again under the same lock as it inserts.
    pub fn has_room(&self, agent: &AgentKey) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        pending_of(&entries, agent) < self.max_pending_per_agent
    }

    /// Records a pending escalation (its text cut to [`MAX_FIELD_BYTES`]); the receiver resolves when a
    /// reviewer decides. Refused when its agent already has `max_pending_per_agent` pending.
    pub fn open(
        &self,
        escalation: Escalation,
        fingerprint: Fingerprint,
    ) -> Result<oneshot::Receiver<Review>, EscalationError> {
        // The key from the fields as given: cut, a long `sub` would no longer match its own key, and its agent
        // would escape the cap and never find its answers.
        let agent = escalation.agent();
        let escalation = escalation.bounded();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if pending_of(&entries, &agent) >= self.max_pending_per_agent {
            return Err(EscalationError::TooManyPending(self.max_pending_per_agent));
        }
        let (tx, rx) = oneshot::channel();
        // Bounded memory: decided escalations are kept for the admin API only while there is room (they are
        // in the audit log for good); pending ones are never dropped.
        if entries.len() >= MAX_KEPT {
            entries.retain(|_, e| e.escalation.status == "pending");
        }
        entries.insert(
            escalation.id.clone(),
            Entry {
                escalation,
                agent,
                fingerprint,
                waiter: Some(tx),
                undelivered: None,
            },
        );
        self.pending.inc();
        Ok(rx)
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

    /// The heap bytes held for the escalation `id` (its fields and its fingerprint), for memory checks.
    pub fn held_bytes(&self, id: &str) -> Option<usize> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(id).map(|e| {
            e.escalation.heap_bytes()
                + std::mem::size_of::<Entry>()
                + e.agent.agent_id.capacity()
                + e.agent.tenant_id.as_ref().map_or(0, String::capacity)
        })
    }
}

fn pending_of(entries: &HashMap<String, Entry>, agent: &AgentKey) -> usize {
    entries
        .values()
        .filter(|e| e.escalation.status == "pending" && e.agent == *agent)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(tenant: &str, sub: &str) -> AgentKey {
        AgentKey {
            tenant_id: Some(tenant.into()),
            agent_id: sub.into(),
        }
    }

    fn esc_of(id: &str, who: &AgentKey) -> Escalation {
        Escalation {
            id: id.into(),
            status: "pending",
            created_at: crate::telemetry::now_rfc3339(),
            agent_id: who.agent_id.clone(),
            tenant_id: who.tenant_id.clone(),
            tool_name: "write_file".into(),
            mcp_server: "demo".into(),
            action: "write".into(),
            target: None,
            policy_id: "p".into(),
            reason: "r".into(),
            delivered: None,
        }
    }

    fn a() -> AgentKey {
        agent("t1", "a")
    }

    fn esc(id: &str) -> Escalation {
        esc_of(id, &a())
    }

    /// The fingerprint of `a`'s call with arguments hashing to `[n; 32]`.
    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of(&a(), "demo", "tools/call", Some("write_file"), &[n; 32])
    }

    fn escalations() -> Escalations {
        Escalations::new(IntGauge::new("g", "g").unwrap(), 16)
    }

    const TTL: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_decision_releases_the_held_call_once() {
        let gauge = IntGauge::new("g", "g").unwrap();
        let e = Escalations::new(gauge.clone(), 16);
        let rx = e.open(esc("e1"), fp(1)).unwrap();
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
        assert_eq!(e.lookup(&a(), &fp(1), TTL), Lookup::None);
    }

    #[tokio::test]
    async fn an_answer_no_held_call_took_serves_the_next_identical_call_once() {
        let e = escalations();
        for (n, id, review) in [(1, "a", Review::Approved), (2, "d", Review::Denied)] {
            let fingerprint = fp(n);
            drop(e.open(esc(id), fingerprint).unwrap()); // the call stopped waiting (hold time over)
            assert_eq!(e.lookup(&a(), &fp(99), TTL), Lookup::None);
            assert_eq!(
                e.lookup(&a(), &fingerprint, TTL),
                Lookup::Pending { id: id.into() },
                "a retry joins the pending escalation"
            );
            let joined = e.join(id).unwrap();
            assert_eq!(
                e.lookup(&a(), &fingerprint, TTL),
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
                e.lookup(&a(), &fingerprint, Duration::ZERO),
                Lookup::None,
                "an answer older than the ttl is not given out"
            );
        }
        // Within the ttl: given out once, to the identical call only.
        let e2 = escalations();
        drop(e2.open(esc("x"), fp(1)).unwrap());
        e2.decide("x", Review::Approved).unwrap();
        assert_eq!(e2.lookup(&a(), &fp(2), TTL), Lookup::None);
        assert_eq!(
            e2.lookup(&a(), &fp(1), TTL),
            Lookup::Answered {
                id: "x".into(),
                review: Review::Approved
            }
        );
        assert_eq!(e2.list(None)[0].delivered, Some(true));
        assert_eq!(
            e2.lookup(&a(), &fp(1), TTL),
            Lookup::None,
            "one answer serves one call"
        );
    }

    #[test]
    fn another_tenants_agent_of_the_same_name_never_takes_an_answer() {
        let t1 = agent("t1", "alice");
        let t2 = agent("t2", "alice");
        let of = |who: &AgentKey| Fingerprint::of(who, "demo", "tools/call", Some("w"), &[7; 32]);
        assert_ne!(of(&t1), of(&t2));
        let none = AgentKey {
            tenant_id: None,
            agent_id: "alice".into(),
        };
        let empty = agent("", "alice");
        assert_ne!(of(&none), of(&empty), "no tenant is not the empty tenant");
        let e = escalations();
        drop(e.open(esc_of("x", &t1), of(&t1)).unwrap());
        e.decide("x", Review::Approved).unwrap();
        // Even presenting t1's fingerprint, t2's alice finds nothing: the agent is compared whole too.
        assert_eq!(e.lookup(&t2, &of(&t1), TTL), Lookup::None);
        assert_eq!(e.lookup(&t2, &of(&t2), TTL), Lookup::None);
        assert!(matches!(
            e.lookup(&t1, &of(&t1), TTL),
            Lookup::Answered { .. }
        ));
    }

    #[test]
    fn fingerprint_parts_cannot_be_shifted_into_each_other() {
        let key = agent("t", "ab");
        let shifted = agent("t", "a");
        assert_ne!(
            Fingerprint::of(&key, "c", "m", None, &[0; 32]),
            Fingerprint::of(&shifted, "bc", "m", None, &[0; 32])
        );
        assert_ne!(
            Fingerprint::of(&key, "c", "m", None, &[0; 32]),
            Fingerprint::of(&key, "c", "m", Some(""), &[0; 32])
        );
    }

    #[test]
    fn an_agent_has_at_most_its_cap_pending_and_others_are_unaffected() {
        let e = Escalations::new(IntGauge::new("g", "g").unwrap(), 2);
        let b = agent("t1", "b");
        for i in 0..2u8 {
            assert!(e.has_room(&a()));
            drop(e.open(esc(&format!("a{i}")), fp(i)).unwrap());
        }
        assert!(!e.has_room(&a()));
        assert_eq!(
            e.open(esc("a2"), fp(2)).unwrap_err(),
            EscalationError::TooManyPending(2)
        );
        assert!(e.has_room(&b));
        drop(e.open(esc_of("b0", &b), fp(0)).unwrap());
        // A decision frees a slot.
        e.decide("a0", Review::Denied).unwrap();
        assert!(e.has_room(&a()));
        drop(e.open(esc("a3"), fp(3)).unwrap());
        assert_eq!(e.list(Some("pending")).len(), 3);
    }

    #[test]
    fn an_escalation_of_a_huge_call_holds_a_bounded_copy() {
        let e = escalations();
        let huge = "/workspace/".to_owned() + &"é".repeat(2 * 1024 * 1024); // 4 MiB and more
        let mut escalation = esc("big");
        escalation.target = Some(huge.clone());
        escalation.tool_name = huge.clone();
        escalation.reason = huge;
        drop(e.open(escalation, fp(1)).unwrap());
        let held = e.held_bytes("big").unwrap();
        assert!(held < 4 * MAX_FIELD_BYTES, "{held} bytes held");
        let listed = &e.list(None)[0];
        let target = listed.target.as_deref().unwrap();
        assert!(target.len() <= MAX_FIELD_BYTES && target.ends_with('…'));
        assert!(target.starts_with("/workspace/é"));
        assert_eq!(std::mem::size_of::<Fingerprint>(), 32);
        assert_eq!(bounded_text("short"), "short");
    }
}
