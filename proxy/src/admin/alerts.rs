//! `/api/v1/alerts…`: behavioural and operational alerts (list, acknowledge, resolve), and
//! `POST /api/v1/agents/{id}/prompt/repin` (the agents router hands it here): an admin drops an agent's pinned
//! prompt hash so its next declared one is pinned. Each change is an `admin_action` audit event.

use hyper::{Method, Response};
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use super::{ok, record_admin_action, AdminError, AdminRequest};
use crate::alerts::{AlertError, Kind, ListQuery, Status, PAGE_LIMIT};
use crate::response::Body;

/// Answers the alert routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call).await,
        (&Method::POST, [id, "ack"]) => change(call, id, Status::Acknowledged).await,
        (&Method::POST, [id, "resolve"]) => change(call, id, Status::Resolved).await,
        _ => return None,
    };
    Some(answer)
}

async fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let status = match call.q("status") {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            AdminError::bad_request("status must be open, acknowledged or resolved")
        })?),
    };
    let kind = match call.q("kind") {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            AdminError::bad_request(format!("kind must be one of {}", kinds.join(", ")))
        })?),
    };
    let limit = match call.q("limit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if (1..=PAGE_LIMIT).contains(&n) => Some(n),
        Some(_) => {
            return Err(AdminError::bad_request(format!(
                "limit must be an integer from 1 to {PAGE_LIMIT}"
            )))
        }
    };
    let query = ListQuery {
        status,
        kind,
        agent_id: call.q("agent_id").map(str::to_owned),
        tenant_id: call.admin.tenant.clone(),
        cursor: call.q("cursor").map(str::to_owned),
        limit,
    };
    let (alerts, next_cursor) = call.app.alerts.list(&query).await.map_err(alert_error)?;
    ok(json!({ "alerts": alerts, "next_cursor": next_cursor }))
}

/// Acknowledges or resolves an alert, then records the change as an `admin_action` event (a log that cannot
/// take it answers 503; the change stands).
async fn change(
    call: &AdminRequest<'_>,
    id: &str,
    to: Status,
) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    // Another tenant's alert is as unknown as one that does not exist.
    if call.admin.tenant.is_some() {
        let seen = app.alerts.get(id).await.map_err(alert_error)?;
        let tenant = seen.as_ref().map(|a| a.tenant_id.as_deref());
        call.admin.must_see(tenant, "no alert with this id")?;
    }
    let changed = app
        .alerts
        .change(id, to, &call.admin.name)
        .await
        .map_err(alert_error)?;
    let action = match to {
        Status::Resolved => "alert_resolve",
        _ => "alert_ack",
    };
    let draft = EventDraft {
        agent_id: changed.agent_id.clone(),
        tenant_id: changed.tenant_id.clone(),
        dlp_findings: json!([]),
        extra: json!({ "alert_id": changed.id, "kind": changed.kind, "status": changed.status }),
        ..EventDraft::default()
    };
    let what_stands = format!("the alert is {}", changed.status);
    record_admin_action(app, &call.admin, action, draft, &what_stands).await?;
    ok(changed)
}

/// `POST /api/v1/agents/{id}/prompt/repin` (`?tenant=T` for one tenant): drops the agent's pinned prompt hash;
/// its next declared hash is pinned. 404 when nothing was pinned.
pub(super) async fn repin(
    call: &AdminRequest<'_>,
    agent_id: &str,
) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    // A tenant's admin re-pins in its own tenant only; naming another is as unknown as a missing pin.
    let tenant = match (&call.admin.tenant, call.q("tenant")) {
        (Some(own), Some(named)) if named != own => {
            return Err(AdminError::NotFound(format!(
                "agent {agent_id:?} has no pinned prompt hash in this tenant"
            )))
        }
        (Some(own), _) => Some(own.as_str()),
        (None, named) => named,
    };
    let removed = app
        .behaviour
        .unpin_prompt(agent_id, tenant)
        .await
        .map_err(|e| AdminError::audit("behaviour_unavailable", e))?;
    if removed.is_empty() {
        return Err(AdminError::NotFound(format!(
            "agent {agent_id:?} has no pinned prompt hash"
        )));
    }
    for pin in &removed {
        let draft = EventDraft {
            agent_id: Some(pin.agent_id.clone()),
            tenant_id: pin.tenant_id.clone(),
            dlp_findings: json!([]),
            extra: json!({ "previous_prompt_hash": pin.previous_prompt_hash }),
            ..EventDraft::default()
        };
        record_admin_action(
            app,
            &call.admin,
            "prompt_repin",
            draft,
            "the prompt pin is removed",
        )
        .await?;
    }
    if removed.len() == 1 {
        return ok(&removed[0]);
    }
    ok(json!({ "agents": removed }))
}

fn alert_error(e: AlertError) -> AdminError {
    match e {
        AlertError::NotFound(_) => AdminError::NotFound(e.to_string()),
        AlertError::AlreadyInState { status, .. } => AdminError::Conflict {
            code: if status == "resolved" {
                "already_resolved"
            } else {
                "already_acknowledged"
            },
            message: e.to_string(),
        },
        AlertError::BadCursor => AdminError::bad_request(e.to_string()),
        AlertError::Store(e) => AdminError::audit("alerts_unavailable", e),
    }
}
