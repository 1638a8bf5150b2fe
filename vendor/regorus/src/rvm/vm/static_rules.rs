// toolgate patch (not in regorus 0.14.1): results of input-independent rules kept across evaluations.
//
//! A rule whose bodies read neither `input` nor the evaluation context, call no host, and call only rules,
//! functions and builtins that are themselves independent of the evaluation (no clock, randomness or
//! network), has the same value in every evaluation on the same program, data and builtin strictness. With
//! [`RegoVM::set_cache_static_rules`] on, such a rule is evaluated once and its value reused by later
//! evaluations until the program, data, context or strictness changes. Off by default.

use crate::rvm::instructions::Instruction;
use crate::rvm::program::Program;
use crate::value::Value;
use alloc::vec;
use alloc::vec::Vec;

use super::machine::RegoVM;

/// Builtins whose value depends only on their arguments. Anything not listed (time, randomness, UUIDs,
/// HTTP, `opa.runtime`, JWT verification against the clock, tracing, extensions) makes a rule dynamic.
const PURE_BUILTINS: &[&str] = &[
    "__builtin_sets.union",
    "__builtin_sets.intersection",
    "__builtin_sets.difference",
    "abs",
    "array.concat",
    "array.reverse",
    "array.slice",
    "base64.decode",
    "base64.encode",
    "base64url.decode",
    "base64url.encode",
    "ceil",
    "concat",
    "contains",
    "count",
    "endswith",
    "floor",
    "format_int",
    "glob.match",
    "indexof",
    "indexof_n",
    "intersection",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "json.marshal",
    "json.unmarshal",
    "lower",
    "max",
    "min",
    "net.cidr_contains",
    "object.get",
    "object.keys",
    "object.remove",
    "object.union",
    "regex.match",
    "replace",
    "round",
    "sort",
    "split",
    "sprintf",
    "startswith",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "strings.count",
    "strings.replace_n",
    "strings.reverse",
    "substring",
    "sum",
    "to_number",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "type_name",
    "union",
    "upper",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unknown,
    Visiting,
    Static,
    Dynamic,
}

/// Per rule of `program`: whether it is static (see the module doc).
pub(super) fn static_rules(program: &Program) -> Vec<bool> {
    let mut marks = vec![Mark::Unknown; program.rule_infos.len()];
    for index in 0..marks.len() {
        rule_is_static(program, index, &mut marks);
    }
    marks.into_iter().map(|m| m == Mark::Static).collect()
}

fn rule_is_static(program: &Program, index: usize, marks: &mut [Mark]) -> bool {
    match marks.get(index).copied() {
        Some(Mark::Static) => return true,
        Some(Mark::Unknown) => {}
        // A cycle (which Rego forbids anyway), a dynamic rule or an index out of range.
        _ => return false,
    }
    if let Some(mark) = marks.get_mut(index) {
        *mark = Mark::Visiting;
    }
    let is_static = program.rule_infos.get(index).is_some_and(|info| {
        info.definitions
            .iter()
            .flatten()
            .copied()
            .chain(info.destructuring_blocks.iter().flatten().copied())
            .all(|entry| body_is_static(program, entry, marks))
    });
    if let Some(mark) = marks.get_mut(index) {
        *mark = if is_static {
            Mark::Static
        } else {
            Mark::Dynamic
        };
    }
    is_static
}

/// A rule body (or destructuring block) runs from its entry point to its `RuleReturn`
/// (`DestructuringSuccess`); loops and comprehensions are laid out inline in between.
fn body_is_static(program: &Program, entry: u32, marks: &mut [Mark]) -> bool {
    let Ok(mut pc) = usize::try_from(entry) else {
        return false;
    };
    loop {
        let Some(instruction) = program.instructions.get(pc) else {
            return false;
        };
        match *instruction {
            Instruction::RuleReturn {} | Instruction::DestructuringSuccess {} => return true,
            Instruction::LoadInput { .. }
            | Instruction::LoadContext { .. }
            | Instruction::HostAwait { .. }
            | Instruction::VirtualDataDocumentLookup { .. }
            | Instruction::Return { .. }
            | Instruction::Halt {} => return false,
            Instruction::CallRule { rule_index, .. } => {
                if !rule_is_static(program, usize::from(rule_index), marks) {
                    return false;
                }
            }
            Instruction::FunctionCall { params_index } => {
                let Some(params) = program
                    .instruction_data
                    .get_function_call_params(params_index)
                else {
                    return false;
                };
                if !rule_is_static(program, usize::from(params.func_rule_index), marks) {
                    return false;
                }
            }
            Instruction::BuiltinCall { params_index } => {
                let pure = program
                    .instruction_data
                    .get_builtin_call_params(params_index)
                    .and_then(|params| program.get_builtin_info(params.builtin_index))
                    .is_some_and(|info| PURE_BUILTINS.contains(&info.name.as_str()));
                if !pure {
                    return false;
                }
            }
            _ => {}
        }
        pc = match pc.checked_add(1) {
            Some(next) => next,
            None => return false,
        };
    }
}

impl RegoVM {
    /// Keep the values of static rules (see the module doc) across evaluations. Off by default.
    pub fn set_cache_static_rules(&mut self, enabled: bool) {
        self.cache_static_rules = enabled;
        self.forget_static_rules();
        if enabled {
            self.static_rules = static_rules(&self.program);
        }
    }

    /// Drops every kept value, for a change of program, data, context or builtin strictness.
    pub(super) fn forget_static_rules(&mut self) {
        self.static_rule_values.clear();
        if self.cache_static_rules {
            self.static_rule_values
                .resize(self.program.rule_infos.len(), None);
        } else {
            self.static_rules.clear();
        }
    }

    /// The value a static rule had in an earlier evaluation, if any.
    pub(super) fn kept_static_rule(&self, rule_index: usize) -> Option<&Value> {
        if !self.cache_static_rules {
            return None;
        }
        self.static_rule_values
            .get(rule_index)
            .and_then(Option::as_ref)
    }

    /// Keeps the value a rule just got when the rule is static.
    pub(super) fn keep_static_rule(&mut self, rule_index: usize, value: &Value) {
        if !self.cache_static_rules || !self.static_rules.get(rule_index).copied().unwrap_or(false)
        {
            return;
        }
        if let Some(slot) = self.static_rule_values.get_mut(rule_index) {
            *slot = Some(value.clone());
        }
    }
}
