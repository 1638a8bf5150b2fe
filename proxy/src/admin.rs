//! The admin API under `/api/v1/`: audit query, verify and export, the live SSE feed, escalations, tool
//! definitions, policy status, agents and the kill switch, alerts and prompt pins, agent runs (read only:
//! agents start and finish them with their own token, `crate::server::runs`).
//!
//! Every route needs `Authorization: Bearer <admin.token>`; with no token configured the admin API is off (404).
//! This module authenticates the caller and hands the request to the module of its first path segment; each of
//! those answers its routes and records the changes it makes as `admin_action` audit events
//! ([`record_admin_action`]).

mod agents;
mod alerts;
mod audit_routes;
mod policy;
mod query;
mod review;
mod runs;
mod siem;
mod stream;
mod tools;

use crate::config::admin_tokens::AdminScope;

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use toolgate_engine::chain::EventDraft;

use crate::app::App;
use crate::audit::AuditError;
use crate::response::{json_response, Body};

/// Why an admin request got no answer; [`AdminError::into_response`] is the one place admin errors become
/// responses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("set admin.token to enable the admin API")]
    Off,
    #[error("admin API needs Authorization: Bearer <admin.token>")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
}

impl AdminError {
    pub(crate) fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    /// A failed read of the audit log: a bad range is the caller's, anything else the database's.
    pub(crate) fn audit(code: &'static str, e: AuditError) -> AdminError {
        match e {
            AuditError::BadRange(_) => AdminError::bad_request(e.to_string()),
            e => AdminError::Unavailable {
                code,
                message: e.to_string(),
            },
        }
    }

    fn into_response(self) -> Response<Body> {
        let message = self.to_string();
        let (status, code) = match &self {
            AdminError::Off => (StatusCode::NOT_FOUND, "admin_api_off"),
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AdminError::Conflict { code, .. } => (StatusCode::CONFLICT, *code),
            AdminError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, *code),
        };
        let mut resp = json_response(status, &json!({ "error": code, "message": message }));
        if matches!(self, AdminError::Unauthorized) {
            resp.headers_mut().insert(
                "www-authenticate",
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A 200 with `value` as its JSON body.
pub(crate) fn ok(value: impl serde::Serialize) -> Result<Response<Body>, AdminError> {
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(value).unwrap_or_default(),
    ))
}

/// Who made an admin change, as its `admin_action` event's `requester_id` names them: `admin` for `admin.token`,
/// `admin:<tenant>` for a tenant's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// The one tenant this admin sees; `None` for `admin.token`, which sees every tenant.
    pub tenant: Option<String>,
}

impl Admin {
    /// The admin of `admin.token`.
    pub fn all() -> Admin {
        Admin {
            name: "admin".to_owned(),
            tenant: None,
        }
    }

    /// Whether this admin sees an object of `tenant` (`None`: an agent without a tenant, seen by `admin.token`
    /// alone).
    pub fn sees_tenant(&self, tenant: Option<&str>) -> bool {
        self.tenant.is_none() || self.tenant.as_deref() == tenant
    }

    /// Refuses what this admin does not see as if it did not exist (404 `not_found`, `what`): `tenant` is the
    /// tenant of the object found, `None` when there is none.
    pub(crate) fn must_see(
        &self,
        tenant: Option<Option<&str>>,
        what: &str,
    ) -> Result<(), AdminError> {
        match tenant {
            Some(tenant) if self.sees_tenant(tenant) => Ok(()),
            _ => Err(AdminError::NotFound(what.to_owned())),
        }
    }

    /// The admin of one tenant's token.
    pub fn of_tenant(tenant: &str) -> Admin {
        Admin {
            name: format!("admin:{tenant}"),
            tenant: Some(tenant.to_owned()),
        }
    }
}

/// One authenticated admin request, as the route modules see it.
pub(crate) struct AdminRequest<'a> {
    pub app: &'a Arc<App>,
    pub admin: Admin,
    pub method: Method,
    /// The path after `/api/v1/`, split at `/`, without a trailing empty segment.
    pub segments: Vec<&'a str>,
    pub query: HashMap<String, String>,
    pub headers: &'a hyper::HeaderMap,
}

impl AdminRequest<'_> {
    /// A query parameter, percent-decoded.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    route(app, req)
        .await
        .unwrap_or_else(AdminError::into_response)
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, AdminError> {
    let admin = authenticate(app, &req)?;
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let call = AdminRequest {
        app,
        admin,
        method: req.method().clone(),
        segments: path.trim_start_matches("/api/v1/").split('/').collect(),
        query: query::parse_query(req.uri().query().unwrap_or("")),
        headers: req.headers(),
    };
    if call.admin.tenant.is_some() {
        tenant_may(&call.segments)?;
    }
    let answer = match call.segments.first().copied() {
        Some("audit") => audit_routes::route(&call).await,
        Some("escalations") => review::route(&call).await,
        Some("tools") => tools::route(&call).await,
        Some("policy") => policy::route(&call).await,
        Some("agents") => agents::route(&call).await,
        Some("alerts") => alerts::route(&call).await,
        Some("runs") => runs::route(&call).await,
        Some("siem") => siem::route(&call).await,
        _ => None,
    };
    answer.unwrap_or_else(|| {
        Err(AdminError::NotFound(format!(
            "no admin route {} {path}",
            req.method()
        )))
    })
}

/// Whether a tenant's admin may use the route of `segments` at all; the routes it may use answer for its tenant
/// only (their handlers scope every read and change; chain verification recomputes every chain but counts and
/// names only the tenant's rows). What belongs to no tenant (tool approvals, SIEM, policy) is refused, never
/// answered unscoped.
fn tenant_may(segments: &[&str]) -> Result<(), AdminError> {
    match segments {
        ["audit", "events" | "export" | "stats" | "stream" | "verify", ..]
        | ["escalations" | "agents" | "runs" | "alerts", ..] => Ok(()),
        ["tools" | "policy" | "siem", ..] => Err(AdminError::Forbidden(
            "this belongs to no tenant: it needs admin.token".into(),
        )),
        _ => Err(AdminError::Forbidden(
            "not available to a tenant's admin token: it needs admin.token".into(),
        )),
    }
}

/// The admin the request's bearer token names; no token configured turns the admin API off.
fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Admin, AdminError> {
    if app.admin_tokens.is_off() {
        return Err(AdminError::Off);
    }
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|presented| app.admin_tokens.identify(presented))
        .map(|scope| match scope {
            AdminScope::All => Admin::all(),
            AdminScope::Tenant(tenant) => Admin::of_tenant(&tenant),
        })
        .ok_or(AdminError::Unauthorized)
}

/// Records an admin change as an `admin_action` event in the hash chain: `requester_id` is the admin,
/// `extra.action` the change, and `draft` the rest (what it changed). A log that cannot take it answers 503 with
/// `what_stands` saying what the change did all the same.
pub(crate) async fn record_admin_action(
    app: &App,
    admin: &Admin,
    action: &str,
    draft: EventDraft,
    what_stands: &str,
) -> Result<(), AdminError> {
    let mut extra = match draft.extra {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    extra.insert("action".to_owned(), json!(action));
    let draft = EventDraft {
        event_type: "admin_action".to_owned(),
        requester_id: Some(admin.name.clone()),
        extra: serde_json::Value::Object(extra),
        ..draft
    };
    app.audit.append(draft).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "audit write failed");
        AdminError::Unavailable {
            code: "audit_unavailable",
            message: format!("{what_stands}, but it was not recorded: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_admin_reaches_only_the_routes_scoped_to_its_tenant() {
        let may = |path: &str| tenant_may(&path.split('/').collect::<Vec<_>>()).is_ok();
        for open in [
            "audit/events",
            "audit/events/x",
            "audit/export",
            "audit/stats",
            "audit/stream",
            "audit/verify",
            "escalations",
            "escalations/e1/approve",
            "agents",
            "agents/a1/disable",
            "runs",
            "runs/r1",
            "alerts",
            "alerts/x/ack",
        ] {
            assert!(may(open), "{open}");
        }
        for closed in [
            "tools",
            "tools/demo/x/approve",
            "policy",
            "siem",
            "siem/s/test",
            "policy/reload",
            "anything",
        ] {
            assert!(!may(closed), "{closed}");
        }
    }
}
