//! `/api/v1/tools…`: tool definitions seen and pinned, and an admin's approval of a changed or new one.

use hyper::{Method, Response};
use serde_json::json;

use super::query::percent_decode_segment;
use super::{ok, record_admin_action, AdminError, AdminRequest};
use crate::response::Body;

/// Answers the tool routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call),
        (&Method::POST, [upstream, name, "approve"]) => {
            match (
                percent_decode_segment(upstream),
                percent_decode_segment(name),
            ) {
                (Some(upstream), Some(name)) => approve_tool(call, &upstream, &name).await,
                _ => Err(AdminError::bad_request(
                    "the upstream and tool name must be percent-encoded UTF-8",
                )),
            }
        }
        _ => return None,
    };
    Some(answer)
}

fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let status = match call.q("status") {
        None => None,
        Some(s) => Some(
            crate::tools::parse_status(s)
                .ok_or_else(|| AdminError::bad_request("status must be new, pinned or changed"))?,
        ),
    };
    ok(json!({ "tools": call.app.tools.list(status), "next_cursor": null }))
}

/// Pins a tool's current definition, and records the approval as an `admin_action` and a `tool_definition`
/// event. The pin is stored first: an audit log that cannot take the events answers 503, the pin stays.
async fn approve_tool(
    call: &AdminRequest<'_>,
    upstream: &str,
    name: &str,
) -> Result<Response<Body>, AdminError> {
    use crate::tools::ApproveError;
    use toolgate_engine::chain::EventDraft;

    let app = call.app;
    let record = app
        .tools
        .approve(upstream, name)
        .await
        .map_err(|e| match e {
            ApproveError::NotFound { .. } => AdminError::NotFound(e.to_string()),
            ApproveError::AlreadyPinned { .. } => AdminError::Conflict {
                code: "already_pinned",
                message: e.to_string(),
            },
            ApproveError::Store(e) => {
                tracing::error!(error = %e, "tool approval failed");
                AdminError::Unavailable {
                    code: "approval_failed",
                    message: e.to_string(),
                }
            }
        })?;
    let draft = |event_type: &str, extra: serde_json::Value| EventDraft {
        event_type: event_type.to_owned(),
        requester_id: Some(call.admin.name.clone()),
        mcp_server: Some(record.upstream.clone()),
        tool_name: Some(record.name.clone()),
        extra,
        ..EventDraft::default()
    };
    let what_stands = "the definition is pinned";
    record_admin_action(
        app,
        &call.admin,
        "tool_approval",
        draft("admin_action", json!({})),
        what_stands,
    )
    .await?;
    let approved = draft(
        "tool_definition",
        json!({ "status": "approved", "hash": record.pinned_hash }),
    );
    app.audit.append(approved).await.map_err(|e| {
        tracing::error!(error = %e, "audit write failed");
        AdminError::Unavailable {
            code: "audit_unavailable",
            message: format!("{what_stands}, but its approval was not recorded: {e}"),
        }
    })?;
    ok(record)
}
