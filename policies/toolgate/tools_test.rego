package toolgate.tools_test

import rego.v1

import data.toolgate.fixtures

read_call := fixtures.call("read_file", "read", [fixtures.path("/workspace/a")])

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

definition(hash, status, poisoning) := {"hash": hash, "status": status, "poisoning": poisoning}

test_a_pinned_tool_is_judged_on_its_arguments if {
	decide(read_call).policy_id == "toolgate.filesystem.read"
}

test_arguments_named_twice_under_folded_keys_are_denied if {
	# {"PATH": "/workspace/a", "path": "/etc/passwd"}: the decoy judged, the other read
	d := decide(fixtures.with_ambiguous_keys(read_call, ["/path"]))
	d.result == "deny"
	d.policy_id == "toolgate.tools.ambiguous_arguments"
	d.reason == "read_file names an argument twice, under keys that differ only in case, `_` or `-`, with different values"
}

test_no_ambiguous_keys_is_no_denial if {
	count(data.toolgate.tools.deny) == 0 with input as read_call
	count(data.toolgate.tools.deny) == 0 with input as fixtures.single_target_call("read_file", "read", "/workspace/a")
}

test_a_changed_definition_is_denied_and_hidden if {
	changed := definition("9a9a", "changed", [])
	d := decide(fixtures.with_definition(read_call, changed))
	d.result == "deny"
	d.policy_id == "toolgate.tools.changed"
	d.reason == "the definition of read_file changed since it was pinned; an admin must approve it"
	not data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", changed)
}

test_a_poisoned_definition_is_denied_and_hidden if {
	poisoned := definition("0f1e", "pinned", ["hidden_instruction", "exfiltration"])
	d := decide(fixtures.with_definition(read_call, poisoned))
	d.result == "deny"
	d.policy_id == "toolgate.tools.poisoned"
	d.reason == "the definition of read_file carries exfiltration, hidden_instruction"
	not data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", poisoned)
}

test_a_listed_definition_awaiting_approval_is_denied_and_hidden if {
	awaiting := definition("0f1e", "new", [])
	d := decide(fixtures.with_definition(read_call, awaiting))
	d.policy_id == "toolgate.tools.unapproved"
	d.reason == "read_file awaits an admin's approval"
	not data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", awaiting)
}

test_a_tool_never_listed_is_allowed_by_default if {
	unseen := definition(null, "new", [])
	decide(fixtures.with_definition(read_call, unseen)).policy_id == "toolgate.filesystem.read"
	data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", unseen)
}

test_deny_new_refuses_and_hides_tools_never_listed if {
	unseen := definition(null, "new", [])
	d := data.toolgate.decision with input as fixtures.with_definition(read_call, unseen)
		with data.toolgate_config.tools.deny_new as true
	d.policy_id == "toolgate.tools.new"
	d.reason == "read_file was never listed by the upstream and tools.deny_new is set"
	not data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", unseen)
		with data.toolgate_config.tools.deny_new as true
}

test_deny_new_leaves_pinned_tools_alone if {
	d := data.toolgate.decision with input as read_call
		with data.toolgate_config.tools.deny_new as true
	d.result == "allow"
}

test_a_call_without_a_definition_is_judged_on_its_arguments if {
	decide(fixtures.with_definition(read_call, null)).result == "allow"
	decide(fixtures.single_target_call("read_file", "read", "/workspace/a")).result == "allow"
}

test_a_pinned_tool_stays_visible if {
	data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", fixtures.pinned)
}

test_truncated_targets_are_denied if {
	doc := object.union(read_call, {"tool": {"targets_truncated": true}})
	d := decide(doc)
	d.policy_id == "toolgate.tools.targets_truncated"
	d.reason == "read_file names more targets than toolgate judges"
}

test_a_target_of_an_unknown_kind_is_denied if {
	doc := fixtures.call("read_file", "read", [fixtures.path("/workspace/a"), {"kind": "socket", "key": "/s", "value": "x"}])
	d := decide(doc)
	d.policy_id == "toolgate.tools.unknown_target"
	d.reason == "read_file names a target of kind socket, which no rule judges"
}

test_the_single_target_stands_in_for_an_absent_list if {
	data.toolgate.tools.targets == [{"kind": "path", "key": "", "value": "/workspace/a"}] with input as fixtures.single_target_call("read_file", "read", "/workspace/a")
	data.toolgate.tools.targets == [] with input as fixtures.single_target_call("echo", "unknown", "hello")
	data.toolgate.tools.targets == [] with input as fixtures.call("echo", "unknown", [])
}
