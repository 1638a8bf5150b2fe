//! `/api/v1/audit/…`: the audit query, one event, statistics, chain verification, the export and the live feed.

use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Response};
use serde_json::json;

use super::{ok, AdminError, AdminRequest};
use crate::audit::{cursor_after, AuditError, EventFilter, ExportFormat};
use crate::response::{Body, BoxError};

/// Answers the audit routes; `None` for a path that is not one of them.
pub(super) async fn route(call: &AdminRequest<'_>) -> Option<Result<Response<Body>, AdminError>> {
    let app = call.app;
    let answer = match (&call.method, &call.segments[1..]) {
        (&Method::GET, ["events"]) => events(call).await,
        (&Method::GET, ["events", id]) => match app.audit.store().event(id).await {
            // Another tenant's event is as unknown as one that does not exist.
            Ok(Some(event)) if call.admin.sees_tenant(event.tenant_id.as_deref()) => ok(event),
            Ok(_) => Err(AdminError::NotFound("no audit event with this id".into())),
            Err(e) => Err(AdminError::audit("query_failed", e)),
        },
        (&Method::GET, ["stats"]) => stats(call).await,
        (&Method::GET, ["verify"]) => {
            let store = app.audit.store();
            let (start, end) = (call.q("start"), call.q("end"));
            match call.admin.tenant.as_deref() {
                None => store.verify(start, end).await,
                Some(tenant) => store.verify_for_tenant(start, end, tenant).await,
            }
            .map_err(|e| AdminError::audit("verify_failed", e))
            .and_then(ok)
        }
        (&Method::GET, ["export"]) => export(call).await,
        (&Method::GET, ["stream"]) => super::stream::stream(call).await,
        _ => return None,
    };
    Some(answer)
}

async fn events(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let filter = EventFilter {
        tenant_id: call.admin.tenant.clone(),
        agent_id: call.q("agent_id").map(str::to_owned),
        tool_name: call.q("tool_name").map(str::to_owned),
        policy_result: call.q("policy_result").map(str::to_owned),
        start: call.q("start").map(str::to_owned),
        end: call.q("end").map(str::to_owned),
        limit: match call.q("limit").map(str::parse::<u32>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return Err(AdminError::bad_request("limit must be a positive integer"))
            }
        },
        cursor: call.q("cursor").map(str::to_owned),
    };
    // A filter the store cannot apply (a malformed cursor or time) is the caller's mistake.
    let page = call
        .app
        .audit
        .store()
        .query(&filter)
        .await
        .map_err(|e| AdminError::BadRequest {
            code: "query_failed",
            message: e.to_string(),
        })?;
    // A full page may have a next one; a short page is the last.
    let next_cursor = (page.len() == filter.effective_limit() as usize)
        .then(|| page.last().map(cursor_after))
        .flatten();
    ok(json!({ "events": page, "next_cursor": next_cursor }))
}

async fn stats(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let width = call
        .q("bucket")
        .unwrap_or("hour")
        .parse()
        .map_err(|e: AuditError| AdminError::bad_request(e.to_string()))?;
    let stats = crate::audit::stats::stats(
        call.app.audit.store(),
        call.q("start"),
        call.q("end"),
        width,
        call.admin.tenant.as_deref(),
    )
    .await
    .map_err(|e| AdminError::audit("stats_failed", e))?;
    ok(stats)
}

async fn export(call: &AdminRequest<'_>) -> Result<Response<Body>, AdminError> {
    let format: ExportFormat = call
        .q("format")
        .unwrap_or("ndjson")
        .parse()
        .map_err(|_| AdminError::bad_request("format must be csv, json or ndjson"))?;
    let (start, end) = (call.q("start"), call.q("end"));
    if call.q("manifest") == Some("true") {
        if call.admin.tenant.is_some() {
            // A manifest vouches for a whole-log export; a tenant's export is a subset of the chains.
            return Err(AdminError::Forbidden(
                "an export manifest covers every tenant: it needs admin.token".into(),
            ));
        }
        let manifest =
            crate::audit::export::Manifest::compute(call.app.audit.store(), format, start, end)
                .await
                .map_err(|e| AdminError::audit("export_failed", e))?;
        return ok(manifest);
    }
    // The export streams from a task once the answer has begun (200): a bad range must be refused
    // before, as verify refuses it, not end as an empty 200 body.
    crate::audit::export::check_range(start, end)
        .map_err(|e| AdminError::audit("export_failed", e))?;
    Ok(streamed_export(
        call.app,
        format,
        start.map(str::to_owned),
        end.map(str::to_owned),
        call.admin.tenant.clone(),
    ))
}

/// Streams an export: the store writes into one end of a pipe while the response reads the other.
fn streamed_export(
    app: &crate::app::App,
    format: ExportFormat,
    start: Option<String>,
    end: Option<String>,
    tenant: Option<String>,
) -> Response<Body> {
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Json => "application/json",
        ExportFormat::Ndjson => "application/x-ndjson",
    };
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let store = app.audit.store().clone();
    tokio::spawn(async move {
        if let Err(e) = store
            .export_of(
                format,
                start.as_deref(),
                end.as_deref(),
                tenant.as_deref(),
                &mut writer,
            )
            .await
        {
            tracing::error!(error = %e, "audit export failed");
        }
    });
    let stream = tokio_util::io::ReaderStream::new(reader)
        .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .expect("valid response")
}
