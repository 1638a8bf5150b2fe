//! Load a folder of `.rego` and data files, compile, smoke-evaluate and evaluate them with regorus.
//!
//! Requests are judged on regorus' bytecode VM: the program is compiled once per [`PolicySet`] and each
//! worker owns an [`Evaluator`] (a VM), because a VM evaluation with the input built as a `Value` costs a
//! few microseconds where the interpreter with a JSON input costs several times that. The VM lacks
//! `with`, so `toolgate policy test` and `policy eval` run on the interpreter ([`run_tests`],
//! [`eval_once`]); a differential test keeps the two in agreement on the shipped library. toolgate's own
//! builtins ([`extensions`]) are registered on both.
//!
//! Entry points: [`DECISION_RULE`] (required) judges requests; the optional [`VISIBLE_RULE`] filters list
//! items, [`RESULT_DECISION_RULE`] judges upstream answers ([`results`]) and [`PLUMBING_DECISION_RULE`] may
//! refuse protocol plumbing. Each optional rule is compiled into the VM program only when the policies
//! define it; otherwise its documented default applies without an evaluation.

#[cfg(test)]
mod authoring_tests;
#[cfg(test)]
mod entry_point_tests;
mod explain;
pub mod extensions;
mod files;
mod results;
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vm_patch_tests;

use std::path::Path;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::{ExecutionMode, ExecutionState, SuspendReason};
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Value};

pub use explain::{explain_once, Contribution, DecisionRule, Explanation};
use files::{located, Sources};
pub use results::{ResultDecision, ResultVerdict};
pub use testing::{
    eval_once, run_tests, run_tests_with, FileCoverage, TestOptions, TestOutcome, TestReport,
};

/// The rule every policy set must define.
pub const DECISION_RULE: &str = "data.toolgate.decision";
/// The optional rule that filters the items of list methods (`tools/list`, `resources/list`...).
pub const VISIBLE_RULE: &str = "data.toolgate.visible";
/// The optional rule that judges an upstream's answer: pass, redact or block.
pub const RESULT_DECISION_RULE: &str = "data.toolgate.result_decision";
/// The optional rule that may refuse protocol plumbing (`initialize`, `ping`, `notifications/*`).
pub const PLUMBING_DECISION_RULE: &str = "data.toolgate.plumbing_decision";

// Far above what the shipped library needs per decision (a few hundred instructions), low enough that a
// runaway policy fails closed in well under a millisecond instead of holding a worker.
const MAX_INSTRUCTIONS: usize = 100_000;
// Each toolgate builtin call suspends the VM once; a policy that calls them in a loop over a huge input
// fails closed here rather than spinning.
const MAX_HOST_CALLS: usize = 10_000;

/// What the policy says about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Escalate,
}

impl Verdict {
    /// The name used in the decision object, the audit log and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Escalate => "escalate",
        }
    }
}

/// A judged call. Only the engine makes one (the fields are private), so nothing downstream can forge an
/// allow that no policy gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    verdict: Verdict,
    policy_id: String,
    reason: String,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    pub fn policy_id(&self) -> &str {
        &self.policy_id
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Fail closed: an evaluation error becomes a deny with policy_id `toolgate.error` (or
    /// `toolgate.undefined` when the policy gave no decision) and the error as reason.
    pub fn from_error(err: &PolicyError) -> Decision {
        let policy_id = match err {
            PolicyError::Undefined => "toolgate.undefined",
            _ => "toolgate.error",
        };
        Decision {
            verdict: Verdict::Deny,
            policy_id: policy_id.to_string(),
            reason: err.to_string(),
        }
    }

    /// A human reviewer approved an escalated call: an allow that keeps the escalating policy's id, so the
    /// audit log shows which rule asked for the review. `None` unless `escalated` is an escalation.
    pub fn approved(escalated: &Decision) -> Option<Decision> {
        (escalated.verdict == Verdict::Escalate).then(|| Decision {
            verdict: Verdict::Allow,
            policy_id: escalated.policy_id.clone(),
            reason: format!("approved by a reviewer: {}", escalated.reason),
        })
    }

    /// List methods are answered by contract (their items are filtered by `visible`): the allow for the
    /// list request itself.
    pub fn list_answered(method: &str) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            policy_id: "toolgate.list".to_string(),
            reason: format!("{method} is answered with the items the policy shows"),
        }
    }

    /// A critical DLP finding refuses plumbing whatever the policy says.
    pub fn plumbing_refused(reason: String) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            policy_id: "toolgate.plumbing.dlp".to_string(),
            reason,
        }
    }

    /// toolgate itself refused a message no policy is asked about (a request of an upstream's it cannot route to
    /// one agent, an agent's answer to a request it was never given): always a deny.
    pub fn routing_refused(policy_id: &str, reason: String) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            policy_id: policy_id.to_string(),
            reason,
        }
    }

    /// Protocol plumbing no policy rule refused.
    fn plumbing_allowed() -> Decision {
        Decision {
            verdict: Verdict::Allow,
            policy_id: "toolgate.plumbing".to_string(),
            reason: "protocol plumbing carries no data to judge".to_string(),
        }
    }

    /// A human reviewer denied an escalated call. `None` unless `escalated` is an escalation.
    pub fn reviewer_denied(escalated: &Decision) -> Option<Decision> {
        (escalated.verdict == Verdict::Escalate).then(|| Decision {
            verdict: Verdict::Deny,
            policy_id: escalated.policy_id.clone(),
            reason: format!("denied by a reviewer: {}", escalated.reason),
        })
    }

    /// An escalation nobody decided within `escalation.timeout_seconds`: a deny naming the expiry, with the
    /// escalating rule in the reason. `None` unless `escalated` is an escalation.
    pub fn review_expired(escalated: &Decision) -> Option<Decision> {
        (escalated.verdict == Verdict::Escalate).then(|| Decision {
            verdict: Verdict::Deny,
            policy_id: "toolgate.escalation.expired".to_string(),
            reason: format!(
                "no reviewer decided in time (escalated by {}: {})",
                escalated.policy_id, escalated.reason
            ),
        })
    }

    /// An escalation refused because its agent already has `limit` pending (`escalation.max_pending_per_agent`):
    /// a deny naming the cap, with the escalating rule in the reason. `None` unless `escalated` is an escalation.
    pub fn too_many_pending(escalated: &Decision, limit: usize) -> Option<Decision> {
        (escalated.verdict == Verdict::Escalate).then(|| Decision {
            verdict: Verdict::Deny,
            policy_id: "toolgate.escalation.pending_limit".to_string(),
            reason: format!(
                "{limit} escalations of this agent already wait for a reviewer (escalated by {})",
                escalated.policy_id
            ),
        })
    }

    /// Reads a decision object `{"result", "policy_id", "reason"}` as the policy produced it.
    fn from_value(value: &Value) -> Result<Decision, PolicyError> {
        if *value == Value::Undefined {
            return Err(PolicyError::Undefined);
        }
        let object = value
            .as_object()
            .map_err(|_| PolicyError::Malformed("the decision is not an object".into()))?;
        let field = |name: &str| -> Result<String, PolicyError> {
            match object.get(&Value::from(name)) {
                Some(Value::String(s)) => Ok(s.to_string()),
                Some(_) => Err(PolicyError::Malformed(format!("`{name}` is not a string"))),
                None => Err(PolicyError::Malformed(format!("`{name}` is missing"))),
            }
        };
        let result = field("result")?;
        let verdict = match result.as_str() {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            "escalate" => Verdict::Escalate,
            _ => {
                return Err(PolicyError::Malformed(
                    "`result` is not one of allow, deny, escalate".into(),
                ))
            }
        };
        Ok(Decision {
            verdict,
            policy_id: field("policy_id")?,
            reason: field("reason")?,
        })
    }
}

/// Why a policy set could not be loaded or a decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A parse or compile error that points into a file.
    #[error("{file}:{line}:{col}: {message}")]
    Located {
        file: String,
        line: u32,
        col: u32,
        message: String,
    },
    #[error("{file}: {message}")]
    Load { file: String, message: String },
    #[error("no policy modules (*.rego) found below {0}")]
    NoModules(String),
    #[error("the policies define no {DECISION_RULE} rule")]
    NoDecisionRule,
    #[error("policy compilation failed: {0}")]
    Compile(String),
    #[error("policy evaluation failed: {0}")]
    Eval(String),
    #[error("decision undefined: {DECISION_RULE} has no value for this input")]
    Undefined,
    #[error("malformed decision: {0}")]
    Malformed(String),
    #[error("smoke evaluation of the new policies failed: {0}")]
    Smoke(Box<PolicyError>),
}

/// A compiled, smoke-evaluated set of policies: immutable, cheap to clone and share between threads.
#[derive(Clone)]
pub struct PolicySet {
    inner: Arc<Compiled>,
}

struct Compiled {
    policy: CompiledPolicy,
    program: Arc<Program>,
    data: Value,
    has_visible: bool,
    has_result: bool,
    has_plumbing: bool,
    revision: String,
    modules: Vec<String>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("revision", &self.inner.revision)
            .field("modules", &self.inner.modules)
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Loads every `*.rego` (not `*_test.rego`) and data file (`*.json`, `*.yaml`/`*.yml`, merged under
    /// `data` by their own top-level keys) below `dir` recursively, compiles `data.toolgate.decision`
    /// (and each optional entry point the policies define) to the VM, and smoke-evaluates them on sample
    /// inputs, so unknown functions and conflicts fail here, not on a request.
    pub fn load(dir: &Path) -> Result<PolicySet, PolicyError> {
        let sources = Sources::read(dir)?;
        let (mut engine, _) = sources.engine(false)?;

        let has_visible = defines(&mut engine, VISIBLE_RULE)?;
        let has_result = defines(&mut engine, RESULT_DECISION_RULE)?;
        let has_plumbing = defines(&mut engine, PLUMBING_DECISION_RULE)?;
        let policy = engine
            .compile_with_entrypoint(&DECISION_RULE.into())
            .map_err(|err| compile_error(&err.to_string()))?;
        let mut entry_points = vec![DECISION_RULE];
        for (defined, rule) in [
            (has_visible, VISIBLE_RULE),
            (has_result, RESULT_DECISION_RULE),
            (has_plumbing, PLUMBING_DECISION_RULE),
        ] {
            if defined {
                entry_points.push(rule);
            }
        }
        let program = Compiler::compile_from_policy_with_host_await(
            &policy,
            &entry_points,
            &extensions::host_await_builtins(),
        )
        .map_err(|err| compile_error(&err.to_string()))?;

        let set = PolicySet {
            inner: Arc::new(Compiled {
                policy,
                program,
                data: engine.get_data(),
                has_visible,
                has_result,
                has_plumbing,
                revision: sources.revision(),
                modules: sources.modules.iter().map(|m| m.relative.clone()).collect(),
            }),
        };
        set.smoke()?;
        Ok(set)
    }

    /// Evaluates every entry point once. An undefined decision is allowed here (a policy may leave the
    /// sample undecided); an error or a malformed decision is not.
    fn smoke(&self) -> Result<(), PolicyError> {
        let mut evaluator = self.evaluator();
        let smoke = |err: PolicyError| PolicyError::Smoke(Box::new(err));
        match evaluator.decide(samples::call()) {
            Ok(_) | Err(PolicyError::Undefined) => {}
            Err(err) => return Err(smoke(err)),
        }
        evaluator.visible(samples::call()).map_err(smoke)?;
        evaluator
            .result_decision(samples::result(), true)
            .map_err(smoke)?;
        evaluator
            .plumbing_decision(samples::plumbing())
            .map_err(smoke)?;
        Ok(())
    }

    /// `sha256:<hex>` over the sorted (relative path, content) of all loaded files.
    pub fn revision(&self) -> &str {
        &self.inner.revision
    }

    /// Relative paths of the loaded `.rego` files.
    pub fn modules(&self) -> &[String] {
        &self.inner.modules
    }

    /// A VM of its own for one worker, with program and data loaded.
    pub fn evaluator(&self) -> Evaluator {
        let mut vm = RegoVM::new_with_policy(self.inner.policy.clone());
        vm.load_program(self.inner.program.clone());
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        // Without this the VM turns a failing builtin into undefined, so `not f(x)` on a bad argument would
        // succeed; strict, the error fails the whole rule body instead (the VM does not surface it).
        vm.set_strict_builtin_errors(true);
        // Rules that read neither the input nor a clock (the library's config-derived sets and tables)
        // are evaluated once per evaluator instead of once per request (vendored regorus patch).
        vm.set_cache_static_rules(true);
        // Only a program that calls a toolgate builtin needs to suspend; the others keep the cheaper mode.
        if self.inner.program.has_host_await() {
            vm.set_execution_mode(ExecutionMode::Suspendable);
        }
        // `load` set the same data on the same program during the smoke evaluation, so this cannot fail
        // for a loaded set; should it ever, every decision of this evaluator fails closed.
        let broken = vm
            .set_data(self.inner.data.clone())
            .err()
            .map(|e| e.to_string());
        Evaluator {
            vm,
            set: self.clone(),
            broken,
        }
    }
}

/// One worker's VM: `Send`, not shared. Evaluations on it run one at a time (`&mut self`).
pub struct Evaluator {
    vm: RegoVM,
    set: PolicySet,
    broken: Option<String>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("revision", &self.set.inner.revision)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    /// The revision of the policy set this evaluator runs.
    pub fn revision(&self) -> &str {
        self.set.revision()
    }

    /// `data.toolgate.decision` for one input document (see [`crate::input::PolicyInput::to_value`]).
    pub fn decide(&mut self, input: Value) -> Result<Decision, PolicyError> {
        let value = self.run(DECISION_RULE, input)?;
        Decision::from_value(&value)
    }

    /// `data.toolgate.visible` for `tools/list`: true when the policy does not define it, false when it
    /// is defined but undefined for this input; an error is `Err` (the caller hides the tool).
    pub fn visible(&mut self, input: Value) -> Result<bool, PolicyError> {
        if !self.set.inner.has_visible {
            return Ok(true);
        }
        match self.run(VISIBLE_RULE, input)? {
            Value::Bool(b) => Ok(b),
            Value::Undefined => Ok(false),
            _ => Err(PolicyError::Malformed(format!(
                "{VISIBLE_RULE} is not a boolean"
            ))),
        }
    }

    /// `data.toolgate.plumbing_decision` for protocol plumbing (`initialize`, `ping`, `notifications/*`):
    /// an allow (policy_id `toolgate.plumbing`) when the policy does not define it or it is undefined for
    /// this input; the policy's decision otherwise, an escalate turned into a deny (plumbing cannot wait for
    /// a human). An error or a malformed decision is `Err` (the caller refuses the message).
    pub fn plumbing_decision(&mut self, input: Value) -> Result<Decision, PolicyError> {
        if !self.set.inner.has_plumbing {
            return Ok(Decision::plumbing_allowed());
        }
        let value = self.run(PLUMBING_DECISION_RULE, input)?;
        if value == Value::Undefined {
            return Ok(Decision::plumbing_allowed());
        }
        let decision = Decision::from_value(&value)?;
        Ok(match decision.verdict {
            Verdict::Escalate => Decision {
                verdict: Verdict::Deny,
                reason: format!(
                    "protocol plumbing cannot wait for a review: {}",
                    decision.reason
                ),
                ..decision
            },
            _ => decision,
        })
    }

    fn run(&mut self, entry_point: &str, input: Value) -> Result<Value, PolicyError> {
        if let Some(err) = &self.broken {
            return Err(PolicyError::Eval(err.clone()));
        }
        self.vm.set_input(input);
        let result = self.execute(entry_point);
        // The input can hold argument values; don't keep them alive past the call.
        self.vm.set_input(Value::Null);
        result
    }

    /// Runs an entry point, serving each toolgate builtin the VM suspends on.
    fn execute(&mut self, entry_point: &str) -> Result<Value, PolicyError> {
        let vm_error =
            |err: regorus::rvm::vm::VmError| PolicyError::Eval(one_line(&err.to_string()));
        let mut value = self
            .vm
            .execute_entry_point_by_name(entry_point)
            .map_err(vm_error)?;
        for _ in 0..MAX_HOST_CALLS {
            let ExecutionState::Suspended {
                reason:
                    SuspendReason::HostAwait {
                        argument,
                        identifier,
                        ..
                    },
                ..
            } = self.vm.execution_state()
            else {
                return Ok(value);
            };
            let answer = extensions::call(identifier, argument)?;
            value = self.vm.resume(Some(answer)).map_err(vm_error)?;
        }
        Err(PolicyError::Eval(format!(
            "more than {MAX_HOST_CALLS} toolgate builtin calls in one evaluation"
        )))
    }
}

fn compile_error(message: &str) -> PolicyError {
    if message.contains("not a valid rule path") {
        return PolicyError::NoDecisionRule;
    }
    located(message).unwrap_or_else(|| PolicyError::Compile(one_line(message)))
}

/// regorus messages can span several lines (a code excerpt with a caret); logs and JSON-RPC errors want one.
fn one_line(message: &str) -> String {
    match located(message) {
        Some(err) => err.to_string(),
        None => message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Whether the policies define `rule`. A default-only rule is not in `CompiledPolicy::get_rules`, but
/// compiling it as an entry point succeeds exactly when the rule path exists; any other compile error is
/// the policy's and fails the load (it must not silently switch the rule off).
fn defines(engine: &mut regorus::Engine, rule: &str) -> Result<bool, PolicyError> {
    match engine.compile_with_entrypoint(&rule.into()) {
        Ok(_) => Ok(true),
        Err(err) if err.to_string().contains("not a valid rule path") => Ok(false),
        Err(err) => Err(compile_error(&err.to_string())),
    }
}

/// Plausible inputs, to make every rule the policies reach run once at load time.
mod samples {
    use regorus::Value;

    use crate::dlp::{Finding, Severity};
    use crate::input::{
        classify, AgentInfo, BehaviorInfo, Direction, PolicyInput, RequestInfo, ResponseInput,
        SessionInfo, ToolInput,
    };

    fn with(method: &str, build: impl FnOnce(PolicyInput<'_>) -> Value) -> Value {
        let agent = AgentInfo {
            id: "toolgate-smoke".into(),
            tenant_id: None,
            roles: Vec::new(),
            claims: serde_json::json!({}),
            prompt_hash: None,
            run_id: None,
        };
        let session = SessionInfo {
            id: None,
            calls: 0,
            started_at: None,
        };
        let request = RequestInfo {
            method: method.into(),
            direction: Direction::ClientToServer,
            upstream: "smoke".into(),
            protocol_version: None,
        };
        let params = serde_json::json!({});
        build(PolicyInput {
            agent: &agent,
            session: &session,
            request: &request,
            tool: None,
            resource: None,
            prompt: None,
            params: Some(&params),
            findings: &[],
            behavior: BehaviorInfo::default(),
            response: None,
            now: "1970-01-01T00:00:00Z",
        })
    }

    fn tool_call(response: Option<ResponseInput<'_>>) -> Value {
        with("tools/call", |input| {
            let arguments = serde_json::json!({"path": "/tmp/toolgate-smoke"});
            let params = serde_json::json!({"name": "read_file", "arguments": arguments});
            let class = classify("read_file", &arguments, "/");
            PolicyInput {
                tool: Some(ToolInput {
                    name: "read_file",
                    arguments: Some(&arguments),
                    class: &class,
                    definition: None,
                }),
                params: Some(&params),
                response,
                ..input
            }
            .to_value()
        })
    }

    /// A `tools/call` reading a file.
    pub(super) fn call() -> Value {
        tool_call(None)
    }

    /// The answer to [`call`], with a finding in its content.
    pub(super) fn result() -> Value {
        let findings = [Finding {
            kind: "email".into(),
            severity: Severity::Medium,
            path: "/content/0/text".into(),
            count: 1,
        }];
        tool_call(Some(ResponseInput {
            is_error: false,
            findings: &findings,
            injection: &[],
        }))
    }

    /// A `ping`.
    pub(super) fn plumbing() -> Value {
        with("ping", |input| input.to_value())
    }
}
