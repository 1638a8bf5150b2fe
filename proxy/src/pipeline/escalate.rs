//! An escalated request: recorded as pending (the `policy_escalate` event durable first, then the stored
//! escalation), held up to the hold time for a reviewer, and resolved into an approval, a denial, or still
//! pending. A reviewer's answer (or an expiry) of an identical earlier request of the same agent (tenant and
//! `sub`) that no held request received is applied to this one; a retry of a pending escalation joins it. An
//! agent already at `escalation.max_pending_per_agent` gets a recorded deny. The escalations store is the audit
//! database: when it cannot be read or written, the request is refused as the audit log being unavailable.

use serde_json::{json, Value};
use toolgate_engine::canonical::exact_hash;
use toolgate_engine::policy::Decision;

use super::record::Record;
use super::refusal::Refusal;
use crate::escalation::{Answer, EscalationError, Fingerprint, Held, Lookup, NewEscalation};

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
    // Fail closed: without the store there is no telling whether an answer or a pending escalation exists.
    let unavailable = |e: EscalationError| {
        tracing::error!(error = %e, "escalation store failed");
        Refusal::AuditUnavailable { id: id.cloned() }
    };
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
    let lookup = app
        .escalations
        .lookup(&agent, &fingerprint, ttl)
        .await
        .map_err(unavailable)?;
    let (escalation_id, joined) = match lookup {
        Lookup::Answered {
            id: escalation_id,
            answer: given,
        } => return answer(record, id, decision, given, escalation_id).await,
        Lookup::Pending { id: escalation_id } => (escalation_id, true),
        Lookup::None => {
            if !app
                .escalations
                .has_room(&agent)
                .await
                .map_err(unavailable)?
            {
                return Err(too_many_pending(record, id, decision).await);
            }
            (uuid::Uuid::now_v7().to_string(), false)
        }
    };
    let extra = json!({ "escalation_id": escalation_id });
    if record
        .append("policy_escalate", decision, extra)
        .await
        .is_err()
    {
        return Err(Refusal::AuditUnavailable { id: id.cloned() });
    }
    if !joined {
        // The reviewer sees the fields as the audit log stores them (redacted where DLP flags them, capped):
        // `open` stores each through the same rule.
        let opened = app
            .escalations
            .open(
                NewEscalation {
                    id: escalation_id.clone(),
                    agent,
                    tool_name: record.tool_name.unwrap_or(record.method).to_owned(),
                    mcp_server: caller.upstream_name.to_owned(),
                    action: record.action.unwrap_or("unknown").to_owned(),
                    target: record.target.map(str::to_owned),
                    policy_id: decision.policy_id().to_owned(),
                    reason: decision.reason().to_owned(),
                },
                fingerprint,
            )
            .await;
        match opened {
            Ok(_) => {}
            // Another call of the agent filled its last slot since `has_room`: its `policy_escalate` is
            // recorded, and the deny that follows says why nothing is pending under that id.
            Err(EscalationError::TooManyPending(_)) => {
                return Err(too_many_pending(record, id, decision).await)
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    let hold = std::time::Duration::from_secs(app.config.escalation.hold_seconds);
    let held = if hold.is_zero() {
        Held::StillPending
    } else {
        app.escalations.hold(&escalation_id, hold).await
    };
    match held {
        Held::Answered(given) => answer(record, id, decision, given, escalation_id).await,
        // Still pending, or another call took the one approval: this call was not let through, and its retry
        // asks again.
        Held::StillPending | Held::ApprovalTaken => Err(Refusal::EscalationPending {
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

/// Carries out an escalation's answer: an approval to forward, or a recorded denial (a reviewer's, or the
/// expiry's).
async fn answer(
    record: &Record<'_>,
    id: Option<&Value>,
    decision: &Decision,
    given: Answer,
    escalation_id: String,
) -> Result<Approval, Refusal> {
    let extra = json!({ "escalation_id": escalation_id });
    let denied = match given {
        Answer::Approved => {
            let approved =
                Decision::approved(decision).expect("hold() is only called for escalations");
            return Ok(Approval {
                decision: approved,
                extra,
            });
        }
        Answer::Denied => Decision::reviewer_denied(decision),
        Answer::Expired => Decision::review_expired(decision),
    }
    .expect("hold() is only called for escalations");
    // The denial stands whether or not it could be recorded; a failed write is counted by the writer.
    let _ = record.append("policy_deny", &denied, extra).await;
    Err(Refusal::Denied {
        id: id.cloned(),
        decision: denied,
    })
}
