//! `/api/v1/agents…`: the agents seen, and the kill switch (disable, enable).

use std::collections::HashSet;

use hyper::{Method, Response};
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use super::query::percent_decode_segment;
use super::{ok, record_admin_action, AdminError, AdminRequest};
use crate::agents::{AgentView, ChangeError, ListError, ListQuery, StoredKey};
use crate::response::Body;

/// Answers the agent routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call).await,
        (&Method::POST, [id, verb @ ("disable" | "enable")]) => match percent_decode_segment(id) {
            Some(id) => switch(call, &id, *verb == "disable").await,
            None => Err(AdminError::bad_request(
                "the agent id must be percent-encoded UTF-8",
            )),
        },
        (&Method::POST, [id, "prompt", "repin"]) => match percent_decode_segment(id) {
            Some(id) => super::alerts::repin(call, &id).await,
            None => Err(AdminError::bad_request(
                "the agent id must be percent-encoded UTF-8",
            )),
        },
        _ => return None,
    };
    Some(answer)
}

async fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let disabled = match call.q("disabled") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(AdminError::bad_request("disabled must be true or false")),
    };
    let limit = match call.q("limit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => return Err(AdminError::bad_request("limit must be a positive integer")),
    };
    let query = ListQuery {
        disabled,
        tenant_id: call.admin.tenant.clone(),
        cursor: call.q("cursor").map(str::to_owned),
        limit,
    };
    let (agents, next_cursor) = call.app.agents.list(&query).await.map_err(|e| match e {
        ListError::BadCursor => AdminError::bad_request(e.to_string()),
        ListError::Store(e) => AdminError::audit("agents_unavailable", e),
    })?;
    ok(json!({ "agents": agents, "next_cursor": next_cursor }))
}

/// Disables or enables an agent (in every tenant, or in `?tenant=`), ends the sessions of the agents it
/// disabled, and records each change as an `admin_action` event. One agent changed is answered bare; several
/// (the same id in several tenants) as `{"agents": […]}`.
async fn switch(
    call: &AdminRequest<'_>,
    agent_id: &str,
    disable: bool,
) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    // A tenant's admin acts in its own tenant only; naming another is as unknown as a missing agent.
    let tenant = match (&call.admin.tenant, call.q("tenant")) {
        (Some(own), Some(named)) if named != own => {
            return Err(AdminError::NotFound(format!(
                "no agent {agent_id:?} in this tenant"
            )))
        }
        (Some(own), _) => Some(own.as_str()),
        (None, named) => named,
    };
    let changed = app
        .agents
        .set_disabled(agent_id, tenant, disable, &call.admin.name)
        .await
        .map_err(|e| match e {
            ChangeError::NotFound(_) => AdminError::NotFound(e.to_string()),
            ChangeError::AlreadyDisabled(_) => AdminError::Conflict {
                code: "already_disabled",
                message: e.to_string(),
            },
            ChangeError::AlreadyEnabled(_) => AdminError::Conflict {
                code: "already_enabled",
                message: e.to_string(),
            },
            ChangeError::DisabledByConfig(_) => AdminError::Conflict {
                code: "disabled_by_config",
                message: e.to_string(),
            },
            ChangeError::Store(e) => {
                tracing::error!(error = %e, "agent switch failed");
                AdminError::Unavailable {
                    code: "agents_unavailable",
                    message: e.to_string(),
                }
            }
        })?;
    if disable {
        let keys: HashSet<StoredKey> = changed.iter().map(stored_key).collect();
        crate::agents::end_sessions(&app.sessions, &app.audit, &keys).await;
    }
    let (action, what_stands) = if disable {
        ("agent_disable", "the agent is disabled")
    } else {
        ("agent_enable", "the agent is enabled")
    };
    for agent in &changed {
        let draft = EventDraft {
            agent_id: Some(agent.agent_id.clone()),
            tenant_id: agent.tenant_id.clone(),
            extra: json!({}),
            ..EventDraft::default()
        };
        record_admin_action(app, &call.admin, action, draft, what_stands).await?;
    }
    match changed.as_slice() {
        [one] => ok(one),
        several => ok(json!({ "agents": several })),
    }
}

fn stored_key(agent: &AgentView) -> StoredKey {
    StoredKey {
        tenant_id: agent.tenant_id.clone().unwrap_or_default(),
        agent_id: agent.agent_id.clone(),
    }
}
