//! Pins what the patches to the vendored regorus VM and compiler (`vendor/regorus/TOOLGATE-PATCHES.md`)
//! must keep: a rule named through an import alias is called on its own (not its whole package built
//! and indexed), values kept across evaluations are only those of rules that cannot change between
//! them, and every decision stays what the interpreter and a fresh evaluator say.

use serde_json::json;

use super::tests::folder;
use super::*;

/// The decision's reason of a policy evaluated on the VM and on the interpreter, which must agree.
fn both(dir: &Path, input: serde_json::Value) -> String {
    let set = PolicySet::load(dir).unwrap_or_else(|e| panic!("load: {e}"));
    let vm = set
        .evaluator()
        .decide(crate::input::json_to_value(&input))
        .unwrap_or_else(|e| panic!("vm: {e}"));
    let (interpreted, _) = eval_once(dir, &input).unwrap_or_else(|e| panic!("interpreter: {e}"));
    assert_eq!(interpreted["reason"], json!(vm.reason()));
    vm.reason().to_string()
}

#[test]
fn a_rule_named_through_an_import_alias_is_called_without_building_its_package() {
    // `lib.cheap` used to build all of `data.toolgate.lib` (so also `costly`, far beyond the instruction
    // limit) only to index `cheap` out of it; the decision then failed closed.
    let dir = folder(&[
        (
            "lib.rego",
            r#"package toolgate.lib
cheap := "cheap"
costly := count([x | some x in numbers.range(1, 200000)])
"#,
        ),
        (
            "sub.rego",
            r#"package toolgate.sub
import data.toolgate.lib
reason := concat(" ", [lib.cheap, input.word])
"#,
        ),
        (
            "main.rego",
            r#"package toolgate
import data.toolgate.sub
decision := {"result": "allow", "policy_id": "t", "reason": sub.reason}
"#,
        ),
    ]);
    assert_eq!(both(dir.path(), json!({"word": "call"})), "cheap call");
}

#[test]
fn an_import_alias_alone_still_names_the_whole_package() {
    let dir = folder(&[
        (
            "lib.rego",
            r#"package toolgate.lib
a := 1
b := 2
"#,
        ),
        (
            "sub.rego",
            r#"package toolgate.sub
import data.toolgate.lib
reason := sprintf("%v", [lib])
"#,
        ),
        (
            "main.rego",
            r#"package toolgate
import data.toolgate.sub
decision := {"result": "allow", "policy_id": "t", "reason": sub.reason}
"#,
        ),
    ]);
    assert_eq!(both(dir.path(), json!({})), r#"{"a": 1, "b": 2}"#);
}

#[test]
fn only_rules_that_cannot_change_between_evaluations_keep_their_value() {
    // `prefixes` reads data only (kept); `mine` reads the input and `stamp` the clock (both evaluated
    // anew every time). One long-lived evaluator must answer like a fresh one for each input in turn.
    let dir = folder(&[
        (
            "main.rego",
            r#"package toolgate
import rego.v1
prefixes := {concat("", [trim_right(d, "/"), "/"]) | some d in data.dirs}
mine := {d | some d in prefixes; startswith(concat("", [input.path, "/"]), d)}
stamp := time.now_ns()
decision := {"result": "allow", "policy_id": "t", "reason": sprintf("%v %v", [sort(mine), stamp > 0])}
"#,
        ),
        ("data.json", r#"{"dirs": ["/a/", "/b", "/c/d"]}"#),
    ]);
    let set = PolicySet::load(dir.path()).unwrap_or_else(|e| panic!("load: {e}"));
    let mut shared = set.evaluator();
    for (path, expected) in [
        ("/a/x", r#"["/a/"] true"#),
        ("/b", r#"["/b/"] true"#),
        ("/c/d/e", r#"["/c/d/"] true"#),
        ("/bb", "[] true"),
        ("/a/x", r#"["/a/"] true"#),
    ] {
        let input = crate::input::json_to_value(&json!({ "path": path }));
        let kept = shared.decide(input.clone()).expect("shared");
        let fresh = set.evaluator().decide(input).expect("fresh");
        assert_eq!(kept, fresh, "{path}");
        assert_eq!(kept.reason(), expected, "{path}");
    }
}

#[test]
fn a_rule_reading_the_clock_is_evaluated_every_time() {
    let dir = folder(&[(
        "main.rego",
        r#"package toolgate
decision := {"result": "allow", "policy_id": "t", "reason": sprintf("%d", [time.now_ns()])}
"#,
    )]);
    let set = PolicySet::load(dir.path()).unwrap_or_else(|e| panic!("load: {e}"));
    let mut evaluator = set.evaluator();
    let first = evaluator.decide(Value::new_object()).expect("first");
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = evaluator.decide(Value::new_object()).expect("second");
    assert_ne!(first.reason(), second.reason());
}
