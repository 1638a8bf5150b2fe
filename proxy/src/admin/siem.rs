//! `/api/v1/siem…`: each SIEM sink's cursor, lag, delivered count and last error, and a test send. Nothing
//! here ever shows a sink's credential or its URL's userinfo.

use hyper::{Method, Response};
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use super::query::percent_decode_segment;
use super::{ok, record_admin_action, AdminError, AdminRequest};
use crate::response::Body;

/// Answers the SIEM routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, []) => list(call).await,
        (&Method::POST, [name, "test"]) => match percent_decode_segment(name) {
            Some(name) => test(call, &name).await,
            None => Err(AdminError::bad_request(
                "the sink name must be percent-encoded UTF-8",
            )),
        },
        _ => return None,
    };
    Some(answer)
}

async fn list(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let sinks = call
        .app
        .siem
        .status()
        .await
        .map_err(|e| AdminError::audit("siem_status_unavailable", e))?;
    ok(json!({ "sinks": sinks, "next_cursor": null }))
}

/// Sends one test event to the sink and answers what it said; recorded as an `admin_action`.
async fn test(call: &AdminRequest<'_>, name: &str) -> Result<Response<Body>, AdminError> {
    let app = call.app;
    let sink = app
        .siem
        .sink(name)
        .map_err(|e| AdminError::NotFound(e.to_string()))?;
    let sink_name = sink.name().to_owned();
    let answer = app
        .siem
        .send_test(&sink_name, &call.admin.name)
        .await
        .map_err(|e| AdminError::NotFound(e.to_string()))?;
    let draft = EventDraft {
        extra: json!({
            "sink": sink_name,
            "outcome": answer["outcome"],
            "status": answer["status"],
        }),
        ..EventDraft::default()
    };
    record_admin_action(
        app,
        &call.admin,
        "siem_test",
        draft,
        "the test event was sent",
    )
    .await?;
    ok(answer)
}
