package toolgate

import rego.v1

tool_call(name, action, target) := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {}},
	"tool": {"name": name, "arguments": {}, "action": action, "target": target},
	"dlp": {"findings": []},
}

test_a_harmless_tool_is_allowed_by_the_default_rule if {
	d := decision with input as tool_call("echo", "unknown", null)
	d == {"result": "allow", "policy_id": "toolgate.default", "reason": "echo is listed as harmless"}
}

test_an_unclassified_tool_that_is_not_harmless_is_denied if {
	d := decision with input as tool_call("frobnicate", "unknown", null)
	d.result == "deny"
	d.policy_id == "toolgate.default.unknown_tool"
}

test_harmless_tools_come_from_data if {
	d := decision with input as tool_call("frobnicate", "unknown", null)
		with data.toolgate_config.harmless_tools as ["frobnicate"]
	d.result == "allow"
}

test_an_action_no_rule_knows_is_denied if {
	d := decision with input as tool_call("teleport", "teleport", "/workspace/a")
	d == {"result": "deny", "policy_id": "toolgate.default.no_rule", "reason": "no rule allows this call"}
}

test_an_empty_input_is_denied if {
	decision.result == "deny" with input as {}
}

test_escalate_beats_allow if {
	i := object.union(tool_call("read_file", "read", "/workspace/a"), {"dlp": {"findings": [{"type": "jwt", "severity": "high", "path": "/t", "count": 1}]}})
	d := decision with input as i
	d.result == "escalate"
}

test_deny_beats_escalate if {
	i := object.union(tool_call("write_file", "write", "/workspace/a"), {"dlp": {"findings": [{"type": "jwt", "severity": "critical", "path": "/t", "count": 1}]}})
	d := decision with input as i
	d.result == "deny"
}

test_every_decision_has_the_three_fields if {
	every action in ["read", "write", "delete", "execute", "network", "send", "unknown"] {
		d := decision with input as tool_call("t", action, "/workspace/a")
		d.result in {"allow", "deny", "escalate"}
		is_string(d.policy_id)
		is_string(d.reason)
	}
}
