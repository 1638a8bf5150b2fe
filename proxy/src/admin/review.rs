//! `/api/v1/escalations…`: the queue of escalated calls and a reviewer's approve or deny.

use hyper::{Method, Response};
use serde_json::json;

use super::{ok, AdminError, AdminRequest};
use crate::escalation::{EscalationError, Review};
use crate::response::Body;

/// Answers the escalation routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let app = call.app;
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => ok(json!({ "escalations": app.escalations.list(call.q("status")) })),
        (&Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let review = if *verb == "approve" {
                Review::Approved
            } else {
                Review::Denied
            };
            match app.escalations.decide(id, review) {
                Ok(e) => ok(e),
                Err(e @ EscalationError::NotFound(_)) => Err(AdminError::NotFound(e.to_string())),
                Err(e) => Err(AdminError::Conflict {
                    code: "already_decided",
                    message: e.to_string(),
                }),
            }
        }
        _ => return None,
    };
    Some(answer)
}
