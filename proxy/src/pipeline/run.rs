//! run: the agent run a message belongs to, when it names one (header `Toolgate-Run-Id` or
//! `_meta["io.toolgate/run_id"]`). Between the session stage and the route, so every event of the message
//! carries the run as `workflow_id` and the policy sees `agent.run_id`.
//!
//! A run id that is unknown, ended, past its deadline or another agent's is refused (`-31001`,
//! `denied by policy toolgate.run: …`) and recorded as a `policy_deny`; the same answer for each, so an agent
//! learns nothing of other agents' runs. The presented id is never written anywhere unless it was attached.

use std::sync::Arc;

use hyper::header::HeaderMap;
use toolgate_engine::policy::Decision;

use super::refusal::Refusal;
use super::Caller;
use crate::app::App;
use crate::mcp::jsonrpc::Message;
use crate::runs::Attachment;

/// The policy id of a refused run id, in the answer and the `policy_deny` event.
pub const POLICY_ID: &str = "toolgate.run";

/// The run `message` belongs to (`None`: it names none), its call counted; or the recorded refusal.
pub(super) async fn attach(
    app: &App,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    message: &Message,
) -> Result<Option<Arc<str>>, Refusal> {
    let reason = match crate::runs::presented(headers.get(crate::runs::HEADER), message.params()) {
        Ok(None) => return Ok(None),
        Ok(Some(run_id)) => match app.runs.attach(caller.identity, run_id).await {
            Ok(Attachment::Run(id)) => return Ok(Some(id)),
            Ok(Attachment::Refused) => "unknown_run: no running run of this agent has this id",
            Err(e) => {
                // Fail closed: a run that cannot be checked is not attached, and the message not forwarded.
                tracing::error!(error = %e, "run lookup failed");
                "run_unavailable: the run could not be looked up"
            }
        },
        Err(crate::runs::BadRunId) => {
            "bad_run_id: the run id must be one string (header and _meta must agree)"
        }
    };
    let method = message.method().unwrap_or_default();
    let decision = Decision::routing_refused(POLICY_ID, reason.to_owned());
    let mut draft = super::stages::refused_draft(app, caller, method);
    draft.policy_id = Some(POLICY_ID.to_owned());
    draft.policy_reason = Some(reason.to_owned());
    super::stages::record_refused(app, caller, method, draft).await;
    Err(Refusal::Denied {
        id: message.id().cloned(),
        decision,
    })
}
