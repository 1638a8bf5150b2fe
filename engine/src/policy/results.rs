//! `data.toolgate.result_decision`: what happens to an upstream's answer before the agent sees it.

use regorus::Value;

use super::{Evaluator, PolicyError, RESULT_DECISION_RULE};

/// What the policy says about an upstream's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultVerdict {
    /// Forward the answer as it is.
    Pass,
    /// Replace each finding's matched text with `[REDACTED:<type>]`.
    Redact,
    /// Answer the agent with a JSON-RPC error instead.
    Block,
}

impl ResultVerdict {
    /// The name used in the decision object, the audit log and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultVerdict::Pass => "pass",
            ResultVerdict::Redact => "redact",
            ResultVerdict::Block => "block",
        }
    }
}

/// A judged answer. Only the engine makes one (the fields are private), so nothing downstream can forge a
/// pass that no policy gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultDecision {
    verdict: ResultVerdict,
    policy_id: String,
    reason: String,
}

impl ResultDecision {
    pub fn verdict(&self) -> ResultVerdict {
        self.verdict
    }

    pub fn policy_id(&self) -> &str {
        &self.policy_id
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Fail closed: an evaluation error or a malformed decision blocks the answer, with policy_id
    /// `toolgate.error` and the error as reason.
    pub fn from_error(err: &PolicyError) -> ResultDecision {
        ResultDecision {
            verdict: ResultVerdict::Block,
            policy_id: "toolgate.error".to_string(),
            reason: err.to_string(),
        }
    }

    /// No rule judged the answer: pass it when DLP found nothing in it, redact it otherwise.
    /// `findings` is `response.dlp.findings` of the input document, to name the finding types.
    fn by_default(findings: Option<&Value>, has_findings: bool) -> ResultDecision {
        let policy_id = "toolgate.default.result".to_string();
        if !has_findings {
            return ResultDecision {
                verdict: ResultVerdict::Pass,
                policy_id,
                reason: "no DLP finding in the result".to_string(),
            };
        }
        let mut types: Vec<&str> = Vec::new();
        if let Some(Ok(findings)) = findings.map(Value::as_array) {
            for finding in findings {
                let kind = finding
                    .as_object()
                    .ok()
                    .and_then(|f| f.get(&Value::from("type")))
                    .and_then(|t| t.as_string().ok());
                if let Some(kind) = kind {
                    if !types.contains(&kind.as_ref()) {
                        types.push(kind.as_ref());
                    }
                }
            }
        }
        let reason = if types.is_empty() {
            "the result holds DLP findings".to_string()
        } else {
            format!("the result holds DLP findings: {}", types.join(", "))
        };
        ResultDecision {
            verdict: ResultVerdict::Redact,
            policy_id,
            reason,
        }
    }

    /// Reads a decision object `{"result", "policy_id", "reason"}` as the policy produced it.
    fn from_value(value: &Value) -> Result<ResultDecision, PolicyError> {
        let object = value
            .as_object()
            .map_err(|_| PolicyError::Malformed("the result decision is not an object".into()))?;
        let field = |name: &str| -> Result<String, PolicyError> {
            match object.get(&Value::from(name)) {
                Some(Value::String(s)) => Ok(s.to_string()),
                Some(_) => Err(PolicyError::Malformed(format!("`{name}` is not a string"))),
                None => Err(PolicyError::Malformed(format!("`{name}` is missing"))),
            }
        };
        let verdict = match field("result")?.as_str() {
            "pass" => ResultVerdict::Pass,
            "redact" => ResultVerdict::Redact,
            "block" => ResultVerdict::Block,
            _ => {
                return Err(PolicyError::Malformed(
                    "`result` is not one of pass, redact, block".into(),
                ))
            }
        };
        Ok(ResultDecision {
            verdict,
            policy_id: field("policy_id")?,
            reason: field("reason")?,
        })
    }
}

impl Evaluator {
    /// `data.toolgate.result_decision` for an upstream's answer (the input document with `response`
    /// set). When the policy does not define it, or it is undefined for this input: pass without
    /// findings, redact with findings (policy_id `toolgate.default.result`, the reason naming the finding
    /// types). An evaluation error or a malformed object is `Err`: the caller fails closed and blocks
    /// ([`ResultDecision::from_error`]).
    pub fn result_decision(
        &mut self,
        input: Value,
        has_findings: bool,
    ) -> Result<ResultDecision, PolicyError> {
        // Values share their contents: keeping the findings for the default costs a reference count.
        let findings = has_findings.then(|| response_findings(&input)).flatten();
        if !self.set.inner.has_result {
            return Ok(ResultDecision::by_default(findings.as_ref(), has_findings));
        }
        match self.run(RESULT_DECISION_RULE, input)? {
            Value::Undefined => Ok(ResultDecision::by_default(findings.as_ref(), has_findings)),
            value => ResultDecision::from_value(&value),
        }
    }
}

fn response_findings(input: &Value) -> Option<Value> {
    let field = |v: &Value, name: &str| v.as_object().ok()?.get(&Value::from(name)).cloned();
    let response = field(input, "response")?;
    let dlp = field(&response, "dlp")?;
    field(&dlp, "findings")
}
