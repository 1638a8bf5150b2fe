//! `/api/v1/policy…`: the loaded policy revision and modules, and a reload on demand.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::{ok, record_admin_action, AdminError, AdminRequest};
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
        (&Method::POST, ["reload"]) => reload(call).await,
        _ => return None,
    };
    Some(answer)
}

/// Reloads the policy folder now, announces a successful reload to the other instances on the database (each
/// reloads its own folder), and records the attempt as an `admin_action` event (`policy_reload`, with its
/// result and the revision serving after it), refused or not. A log that cannot take the event answers 503;
/// the reload stands all the same.
async fn reload(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    let status = app
        .policies
        .reload(crate::policy_reload::Trigger::Api)
        .await;
    if status.result == "ok" {
        // Behind a balancer the other replicas reload too. A lost announcement leaves them on their revision
        // until their own watcher or SIGHUP: said in the log, the reload here stands.
        let chain = app.config.audit.effective_chain_id();
        if let Err(e) = app.audit.store().announce("policy_reload", chain).await {
            tracing::error!(error = %e, "the policy reload was not announced to the other instances");
        }
    }
    let draft = toolgate_engine::chain::EventDraft {
        extra: json!({
            "result": status.result,
            "revision": status.revision,
            "changed": status.changed,
            "error": status.error,
        }),
        ..Default::default()
    };
    let what_stands = if status.result == "ok" {
        "the reloaded policy set serves"
    } else {
        "the reload was refused and the last good policy set keeps serving"
    };
    record_admin_action(app, &call.admin, "policy_reload", draft, what_stands).await?;
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
