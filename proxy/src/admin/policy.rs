//! `/api/v1/policy…`: the loaded policy revision and modules, and a reload on demand.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::{ok, AdminError, AdminRequest};
use crate::response::{json_response, Body};

/// Answers the policy routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let app = call.app;
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => {
            let set = app.policies.current();
            ok(json!({
                "revision": set.revision(),
                "modules": set.modules(),
                "dir": app.config.policy.dir,
                "last_reload": app.policies.last_reload(),
            }))
        }
        (&Method::POST, ["reload"]) => {
            let status = app
                .policies
                .reload(crate::policy_reload::Trigger::Api)
                .await;
            let code = if status.result == "ok" {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(json_response(
                code,
                &serde_json::to_value(status).unwrap_or_default(),
            ))
        }
        _ => return None,
    };
    Some(answer)
}
