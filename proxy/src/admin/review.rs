//! `/api/v1/escalations…`: the queue of escalated calls and a reviewer's approve or deny, each decision recorded
//! as an `escalation_decided` event naming the reviewer and an `admin_action` event.

use hyper::{Method, Response};
use serde_json::json;

use super::{ok, record_admin_action, AdminError, AdminRequest};
use crate::escalation::{EscalationError, ListQuery, Review, Status};
use crate::response::Body;

/// Answers the escalation routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call).await,
        (&Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let review = if *verb == "approve" {
                Review::Approved
            } else {
                Review::Denied
            };
            decide(call, id, review).await
        }
        _ => return None,
    };
    Some(answer)
}

async fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let status = match call.q("status") {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            AdminError::bad_request("status must be pending, approved, denied or expired")
        })?),
    };
    let limit = match call.q("limit").map(str::parse::<u32>) {
        None => ListQuery::DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=ListQuery::MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(AdminError::bad_request(format!(
                "limit must be an integer from 1 to {}",
                ListQuery::MAX_LIMIT
            )))
        }
    };
    let query = ListQuery {
        status,
        tenant_id: call.admin.tenant.clone(),
        limit,
        cursor: call.q("cursor").map(str::to_owned),
    };
    ok(call
        .app
        .escalations
        .list(&query)
        .await
        .map_err(escalation_error)?)
}

/// Decides an escalation, then records the decision: an `admin_action` and an `escalation_decided` event. The
/// decision is stored first; an audit log that cannot take the events answers 503, and the decision stands.
async fn decide(
    call: &AdminRequest<'_>,
    id: &str,
    review: Review,
) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    // Another tenant's escalation is as unknown as one that does not exist.
    if call.admin.tenant.is_some() {
        let seen = app.escalations.get(id).await.map_err(escalation_error)?;
        let tenant = seen.as_ref().map(|e| e.tenant_id.as_deref());
        call.admin.must_see(tenant, "no escalation with this id")?;
    }
    let decided = app
        .escalations
        .decide(id, review, &call.admin.name)
        .await
        .map_err(escalation_error)?;
    let (action, decision) = match review {
        Review::Approved => ("escalation_approve", "approve"),
        Review::Denied => ("escalation_deny", "deny"),
    };
    let extra = json!({ "escalation_id": decided.id, "decision": decision });
    let what_stands = format!("the escalation is {}", Status::from(review).as_str());
    record_admin_action(
        app,
        &call.admin,
        action,
        decided.event_draft("admin_action", extra.clone()),
        &what_stands,
    )
    .await?;
    let event = toolgate_engine::chain::EventDraft {
        requester_id: Some(call.admin.name.clone()),
        ..decided.event_draft("escalation_decided", extra)
    };
    app.audit.append(event).await.map_err(|e| {
        tracing::error!(error = %e, "audit write failed");
        AdminError::Unavailable {
            code: "audit_unavailable",
            message: format!("{what_stands}, but the decision was not recorded: {e}"),
        }
    })?;
    ok(decided)
}

fn escalation_error(e: EscalationError) -> AdminError {
    match e {
        EscalationError::NotFound(_) => AdminError::NotFound(e.to_string()),
        EscalationError::AlreadyDecided(_) => AdminError::Conflict {
            code: "already_decided",
            message: e.to_string(),
        },
        EscalationError::Expired(_) => AdminError::Conflict {
            code: "expired",
            message: e.to_string(),
        },
        EscalationError::BadCursor => AdminError::bad_request(e.to_string()),
        EscalationError::TooManyPending(_) | EscalationError::Store(_) => {
            tracing::error!(error = %e, "escalation store failed");
            AdminError::Unavailable {
                code: "escalations_unavailable",
                message: e.to_string(),
            }
        }
    }
}
