//! `GET /api/v1/runs` and `GET /api/v1/runs/{id}`: the admin's view of agent runs. Agents start and finish
//! their runs with their own token (`crate::server::runs`); the router sends every `POST` there.

use hyper::{Method, Response};
use serde_json::json;

use super::query::percent_decode_segment;
use super::{ok, AdminError, AdminRequest};
use crate::response::Body;
use crate::runs::{ListQuery, RunError};

/// Answers the run routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call).await,
        (&Method::GET, [id]) => match percent_decode_segment(id) {
            Some(id) => one(call, &id).await,
            None => Err(AdminError::bad_request(
                "the run id must be percent-encoded UTF-8",
            )),
        },
        _ => return None,
    };
    Some(answer)
}

async fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let status = match call.q("status") {
        None => None,
        Some(s @ ("running" | "succeeded" | "failed" | "canceled")) => Some(s.to_owned()),
        Some(_) => {
            return Err(AdminError::bad_request(
                "status must be one of running, succeeded, failed, canceled",
            ))
        }
    };
    let limit = match call.q("limit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => return Err(AdminError::bad_request("limit must be a positive integer")),
    };
    let query = ListQuery {
        tenant_id: call.admin.tenant.clone(),
        // Agents are matched as the audit log stores their ids, as `/agents` shows them.
        agent_id: call
            .q("agent_id")
            .map(|a| crate::redaction::stored_text(a.to_owned())),
        status,
        cursor: call.q("cursor").map(str::to_owned),
        limit,
    };
    let (runs, next_cursor) = call.app.runs.list(&query).await.map_err(|e| match e {
        RunError::BadCursor => AdminError::bad_request(e.to_string()),
        RunError::Store(e) => AdminError::audit("runs_unavailable", e),
        e => AdminError::Unavailable {
            code: "runs_unavailable",
            message: e.to_string(),
        },
    })?;
    ok(json!({ "runs": runs, "next_cursor": next_cursor }))
}

async fn one(call: &AdminRequest<'_>, run_id: &str) -> Result<Response<Body>, AdminError> {
    match call.app.runs.get(run_id).await {
        // Another tenant's run is as unknown as one that does not exist.
        Ok(Some(run)) if call.admin.sees_tenant(run.tenant_id.as_deref()) => ok(run),
        Ok(_) => Err(AdminError::NotFound("no run with this id".into())),
        Err(e) => Err(AdminError::audit("runs_unavailable", e)),
    }
}
