//! What an agent says about its run (objective, plan, artifacts, error): parsed strictly, held to its caps, and
//! scanned by DLP like tool arguments. What is stored and shown is the redacted text (each finding replaced by
//! `[REDACTED:<type>]`) and the findings (type, severity, path, count), never a matched value.
//!
//! Over-cap input is refused (400), never truncated: the caps are on what the agent sent, before redaction.

use serde::Deserialize;
use serde_json::{json, Value};
use toolgate_engine::dlp::{Finding, Scanner};

/// Most characters of `objective` (required, not empty).
pub const OBJECTIVE_MAX_CHARS: usize = 2_048;
/// Most bytes of `plan` as compact JSON.
pub const PLAN_MAX_BYTES: usize = 32 * 1024;
/// Most bytes of `artifacts` as compact JSON.
pub const ARTIFACTS_MAX_BYTES: usize = 64 * 1024;
/// Most characters of `error`.
pub const ERROR_MAX_CHARS: usize = 2_048;

/// Why a run's body was refused; the message is safe to answer (it never echoes the input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadContent(pub String);

/// How a run ends, as its agent says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    Succeeded,
    Failed,
    Canceled,
}

impl FinalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "succeeded",
            FinalStatus::Failed => "failed",
            FinalStatus::Canceled => "canceled",
        }
    }
}

/// A start, redacted: what is stored and audited.
#[derive(Debug, Clone)]
pub struct Start {
    pub objective: String,
    pub plan: Value,
    pub dry_run: bool,
    /// Findings at `/objective…` and `/plan…`.
    pub findings: Vec<Finding>,
}

/// A finish, redacted.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: FinalStatus,
    /// `None`: the agent sent none (what the run has is kept).
    pub artifacts: Option<Value>,
    pub error: Option<String>,
    /// Findings at `/artifacts…` and `/error`.
    pub findings: Vec<Finding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    objective: Option<Value>,
    #[serde(default)]
    plan: Value,
    #[serde(default)]
    dry_run: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishBody {
    status: Option<Value>,
    #[serde(default)]
    artifacts: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// Parses, checks and redacts the body of `POST /api/v1/runs`.
pub fn start(scanner: &Scanner, body: &[u8]) -> Result<Start, BadContent> {
    let body: StartBody = parse(body)?;
    let objective = match body.objective {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) | None => {
            return Err(BadContent(
                "objective is required: a non-empty string".into(),
            ))
        }
        Some(_) => return Err(BadContent("objective must be a string".into())),
    };
    let chars = objective.chars().count();
    if chars > OBJECTIVE_MAX_CHARS {
        return Err(BadContent(format!(
            "objective has {chars} characters; at most {OBJECTIVE_MAX_CHARS} are accepted"
        )));
    }
    let dry_run = match body.dry_run {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(BadContent("dry_run must be true or false".into())),
    };
    json_cap("plan", &body.plan, PLAN_MAX_BYTES)?;
    let mut doc = json!({ "objective": objective, "plan": body.plan });
    let findings = scanner.redact(&mut doc);
    let Value::Object(mut parts) = doc else {
        unreachable!("built as an object")
    };
    Ok(Start {
        objective: match parts.remove("objective") {
            Some(Value::String(s)) => s,
            _ => unreachable!("redaction keeps a string a string"),
        },
        plan: parts.remove("plan").unwrap_or(Value::Null),
        dry_run,
        findings,
    })
}

/// Parses, checks and redacts the body of `POST /api/v1/runs/{id}/finish`.
pub fn finish(scanner: &Scanner, body: &[u8]) -> Result<Finish, BadContent> {
    let body: FinishBody = parse(body)?;
    let status = match body.status.as_ref().and_then(Value::as_str) {
        Some("succeeded") => FinalStatus::Succeeded,
        Some("failed") => FinalStatus::Failed,
        Some("canceled") => FinalStatus::Canceled,
        _ => {
            return Err(BadContent(
                "status is required: one of \"succeeded\", \"failed\", \"canceled\"".into(),
            ))
        }
    };
    let error = match body.error {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let chars = s.chars().count();
            if chars > ERROR_MAX_CHARS {
                return Err(BadContent(format!(
                    "error has {chars} characters; at most {ERROR_MAX_CHARS} are accepted"
                )));
            }
            Some(s)
        }
        Some(_) => return Err(BadContent("error must be a string".into())),
    };
    if let Some(artifacts) = &body.artifacts {
        json_cap("artifacts", artifacts, ARTIFACTS_MAX_BYTES)?;
    }
    let mut doc = json!({ "artifacts": body.artifacts, "error": error });
    let findings = scanner.redact(&mut doc);
    Ok(Finish {
        status,
        artifacts: body.artifacts.is_some().then(|| doc["artifacts"].take()),
        error: doc["error"].as_str().map(str::to_owned),
        findings,
    })
}

/// One JSON object; a parse error is answered without quoting the input (serde names unknown fields, and a
/// field name is the agent's text), so its message is redacted of what DLP flags.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadContent> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadContent("the body must be a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| {
        BadContent(crate::redaction::stored_text(format!(
            "the body is not an acceptable JSON object: {e}"
        )))
    })
}

fn json_cap(name: &str, value: &Value, limit: usize) -> Result<(), BadContent> {
    let len = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > limit {
        return Err(BadContent(format!(
            "{name} is {len} bytes as JSON; at most {limit} are accepted"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn a_start_is_redacted_and_its_findings_kept() {
        let body = json!({
            "objective": format!("deploy with {AWS}"),
            "plan": { "steps": ["read", format!("use {AWS}")] },
            "dry_run": true,
        });
        let start = start(&Scanner::new(), body.to_string().as_bytes()).unwrap();
        assert_eq!(start.objective, "deploy with [REDACTED:aws_access_key]");
        assert!(!start.plan.to_string().contains(AWS), "{}", start.plan);
        assert!(start.dry_run);
        let paths: Vec<&str> = start.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/objective", "/plan/steps/1"]);
        assert!(start.findings.iter().all(|f| f.kind == "aws_access_key"));
    }

    #[test]
    fn caps_and_types_are_enforced_not_truncated() {
        let scanner = Scanner::new();
        let long = "x".repeat(OBJECTIVE_MAX_CHARS + 1);
        for (body, wanted) in [
            (json!({}), "objective is required"),
            (json!({ "objective": "" }), "objective is required"),
            (json!({ "objective": 3 }), "objective must be a string"),
            (json!({ "objective": long }), "at most 2048"),
            (json!({ "objective": "o", "dry_run": "yes" }), "dry_run"),
            (
                json!({ "objective": "o", "plan": "p".repeat(PLAN_MAX_BYTES) }),
                "plan is",
            ),
            (json!({ "objective": "o", "extra": 1 }), "unknown field"),
        ] {
            let err = start(&scanner, body.to_string().as_bytes()).unwrap_err();
            assert!(err.0.contains(wanted), "{body}: {err}");
        }
        let exact = "é".repeat(OBJECTIVE_MAX_CHARS);
        let ok = start(
            &scanner,
            json!({ "objective": exact }).to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.objective.chars().count(), OBJECTIVE_MAX_CHARS);
        assert!(start(&scanner, b"{not json").is_err());
        assert!(start(&scanner, b"").is_err());
    }

    #[test]
    fn a_finish_checks_its_status_and_error() {
        let scanner = Scanner::new();
        for (body, wanted) in [
            (json!({ "status": "done" }), "status is required"),
            (json!({}), "status is required"),
            (
                json!({ "status": "failed", "error": "e".repeat(ERROR_MAX_CHARS + 1) }),
                "at most 2048",
            ),
            (
                json!({ "status": "failed", "error": 5 }),
                "error must be a string",
            ),
        ] {
            let err = finish(&scanner, body.to_string().as_bytes()).unwrap_err();
            assert!(err.0.contains(wanted), "{body}: {err}");
        }
        let done = finish(
            &scanner,
            json!({ "status": "failed", "error": format!("key {AWS}"), "artifacts": [AWS] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(done.status, FinalStatus::Failed);
        assert_eq!(done.error.as_deref(), Some("key [REDACTED:aws_access_key]"));
        assert_eq!(done.artifacts, Some(json!(["[REDACTED:aws_access_key]"])));
        assert_eq!(done.findings.len(), 2);
        let bare = finish(&scanner, br#"{"status":"succeeded"}"#).unwrap();
        assert_eq!((bare.artifacts, bare.error), (None, None));
    }

    #[test]
    fn a_secret_in_a_field_name_is_not_echoed() {
        let err = start(
            &Scanner::new(),
            format!(r#"{{"objective":"o","{AWS}":1}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(!err.0.contains(AWS), "{err}");
    }
}
