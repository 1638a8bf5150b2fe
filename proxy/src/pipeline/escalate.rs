//! An escalated request: recorded as pending (durable first), held up to the hold time for a reviewer, and
//! resolved into an approval, a denial, or still pending. A reviewer's answer to an identical earlier request
//! of the same agent (tenant and `sub`) that no held request received is applied to this one; a retry of a
//! pending escalation joins it. An agent already at `escalation.max_pending_per_agent` gets a recorded deny.

use serde_json::{json, Value};
use toolgate_engine::canonical::exact_hash;
use toolgate_engine::policy::Decision;

use super::record::Record;
use super::refusal::Refusal;
use crate::escalation::{Escalation, Fingerprint, Lookup, Review};

/// A reviewer's approval: an allow decision made by the engine from the escalation, and the event `extra`.
pub(super) struct Approval {
    pub decision: Decision,
    pub extra: Value,
}

/// Holds an escalated request. `hashed` is what `input_hash` covers (a tool's arguments, else the params): the
/// escalation's identity hashes it exactly. `Ok` carries an approval to forward; every other end is a refusal.
pub(super) async fn hold(
    record: &Record<'_>,
    id: Option<&Value>,
    decision: &Decision,
    hashed: &Value,
) -> Result<Approval, Refusal> {
    let app = record.app;
    let caller = record.caller;
    let agent = caller.identity.key();
    // Which requests count as the same: the agent (tenant and `sub`), the upstream, the method, the name and the
    // exact hash of what is judged (`input_hash` follows JCS, which rounds integers beyond 2^53, so one approval
    // would cover a call with another large id).
    let fingerprint = Fingerprint::of(
        &agent,
        caller.upstream_name,
        record.method,
        record.tool_name,
        &exact_hash(hashed),
    );
    let ttl = std::time::Duration::from_secs(app.config.escalation.answer_ttl_seconds);
    let (escalation_id, joined) = match app.escalations.lookup(&agent, &fingerprint, ttl) {
        Lookup::Answered {
            id: escalation_id,
            review,
        } => return answer(record, id, decision, review, escalation_id).await,
        Lookup::Pending { id: escalation_id } => (escalation_id, true),
        Lookup::None if !app.escalations.has_room(&agent) => {
            return Err(too_many_pending(record, id, decision).await)
        }
        Lookup::None => (uuid::Uuid::now_v7().to_string(), false),
    };
    let extra = json!({ "escalation_id": escalation_id });
    if record
        .append("policy_escalate", decision, extra)
        .await
        .is_err()
    {
        return Err(Refusal::AuditUnavailable { id: id.cloned() });
    }
    let waiter = if joined {
        app.escalations.join(&escalation_id)
    } else {
        // The reviewer sees the fields as the audit log stores them (redacted where DLP flags them, capped), and
        // `open` keeps a bounded copy of each field (`escalation::MAX_FIELD_BYTES`): a call's target may be
        // megabytes.
        let opened = app.escalations.open(
            Escalation {
                id: escalation_id.clone(),
                status: "pending",
                created_at: crate::telemetry::now_rfc3339(),
                agent_id: agent.agent_id,
                tenant_id: agent.tenant_id,
                tool_name: record
                    .stored_tool_name()
                    .unwrap_or_else(|| record.method.to_owned()),
                mcp_server: caller.upstream_name.to_owned(),
                action: record.action.unwrap_or("unknown").to_owned(),
                target: record.stored_target(),
                policy_id: decision.policy_id().to_owned(),
                reason: record.stored_reason(decision),
                delivered: None,
            },
            fingerprint,
        );
        match opened {
            Ok(waiter) => Some(waiter),
            // Another call of the agent filled its last slot since `has_room`: its `policy_escalate` is
            // recorded, and the deny that follows says why nothing is pending under that id.
            Err(_) => return Err(too_many_pending(record, id, decision).await),
        }
    };
    let hold = std::time::Duration::from_secs(app.config.escalation.hold_seconds);
    let review = match waiter {
        Some(mut waiter) => match tokio::time::timeout(hold, &mut waiter).await {
            Ok(review) => review.ok(),
            // Closed before the last look, so a decision made just now is either taken here or kept for the
            // retry by the reviewer's side, never lost in between.
            Err(_) => {
                waiter.close();
                waiter.try_recv().ok()
            }
        },
        // Decided between the lookup and the join: the answer waits for the next retry.
        None => None,
    };
    match review {
        Some(review) => answer(record, id, decision, review, escalation_id).await,
        None => Err(Refusal::EscalationPending {
            id: id.cloned(),
            escalation_id,
            decision: decision.clone(),
        }),
    }
}

/// The recorded deny of an escalation beyond the agent's cap of pending ones.
async fn too_many_pending(record: &Record<'_>, id: Option<&Value>, decision: &Decision) -> Refusal {
    let limit = record.app.escalations.max_pending_per_agent();
    let denied =
        Decision::too_many_pending(decision, limit).expect("hold() is only called for escalations");
    // The deny stands whether or not it could be recorded; a failed write is counted by the writer.
    let _ = record.append("policy_deny", &denied, json!({})).await;
    Refusal::Denied {
        id: id.cloned(),
        decision: denied,
    }
}

/// Carries out a reviewer's answer: an approval to forward, or a recorded denial.
async fn answer(
    record: &Record<'_>,
    id: Option<&Value>,
    decision: &Decision,
    review: Review,
    escalation_id: String,
) -> Result<Approval, Refusal> {
    let extra = json!({ "escalation_id": escalation_id });
    match review {
        Review::Approved => {
            let approved =
                Decision::approved(decision).expect("hold() is only called for escalations");
            Ok(Approval {
                decision: approved,
                extra,
            })
        }
        Review::Denied => {
            let denied =
                Decision::reviewer_denied(decision).expect("hold() is only called for escalations");
            // The denial stands whether or not it could be recorded; a failed write is counted by the writer.
            let _ = record.append("policy_deny", &denied, extra).await;
            Err(Refusal::Denied {
                id: id.cloned(),
                decision: denied,
            })
        }
    }
}
