package toolgate

import rego.v1

import data.toolgate.fixtures

test_a_harmless_tool_is_allowed_by_the_default_rule if {
	d := decision with input as fixtures.call("echo", "unknown", [])
	d == {"result": "allow", "policy_id": "toolgate.default", "reason": "echo is listed as harmless"}
}

test_an_unclassified_tool_that_is_not_harmless_is_denied if {
	d := decision with input as fixtures.call("frobnicate", "unknown", [])
	d.result == "deny"
	d.policy_id == "toolgate.default.unknown_tool"
	d.reason == "frobnicate does something toolgate cannot classify and is not listed as harmless"
}

test_a_harmless_tool_is_still_judged_on_its_targets if {
	d := decision with input as fixtures.call("echo", "unknown", [fixtures.path("/etc/passwd")])
	d.policy_id == "toolgate.filesystem.system_path"
}

test_harmless_tools_come_from_data if {
	d := decision with input as fixtures.call("frobnicate", "unknown", [])
		with data.toolgate_config.harmless_tools as ["frobnicate"]
	d.result == "allow"
}

test_an_action_no_rule_knows_is_denied if {
	d := decision with input as fixtures.call("teleport", "teleport", [fixtures.path("/workspace/a")])
	d == {"result": "deny", "policy_id": "toolgate.default.no_rule", "reason": "no rule allows this request"}
}

test_an_empty_input_is_denied if {
	d := decision with input as {}
	d.policy_id == "toolgate.default.unknown_method"
}

test_escalate_beats_allow if {
	doc := fixtures.with_findings(fixtures.call("read_file", "read", [fixtures.path("/workspace/a")]), [fixtures.finding("jwt", "high")])
	d := decision with input as doc
	d.result == "escalate"
}

test_deny_beats_escalate if {
	doc := fixtures.with_findings(fixtures.call("write_file", "write", [fixtures.path("/workspace/a")]), [fixtures.finding("jwt", "critical")])
	d := decision with input as doc
	d.result == "deny"
}

test_a_denied_target_beats_an_escalated_one if {
	doc := fixtures.call("write_files", "write", [fixtures.path("/workspace/a"), fixtures.path("/etc/b")])
	d := decision with input as doc
	d.policy_id == "toolgate.filesystem.system_path"
}

test_an_escalated_target_beats_an_allowed_one if {
	doc := fixtures.with_roles(fixtures.call("run_and_mail", "execute", [fixtures.command("make"), fixtures.address("ops@example.com")]), ["shell"])
	d := decision with input as doc
	d.policy_id == "toolgate.network.send_review"
}

test_every_decision_has_the_three_fields if {
	every action in ["read", "write", "delete", "execute", "network", "send", "unknown"] {
		d := decision with input as fixtures.call("t", action, [fixtures.path("/workspace/a")])
		d.result in {"allow", "deny", "escalate"}
		is_string(d.policy_id)
		is_string(d.reason)
	}
}

test_the_same_request_gets_the_same_rule if {
	doc := fixtures.call("write_files", "write", [fixtures.path("/etc/b"), fixtures.path("/root/a"), fixtures.path("/opt/c")])
	d := decision with input as doc
	d.policy_id == "toolgate.filesystem.outside_roots"
	d.reason == "/opt/c is outside the allowed roots"
}

test_logging_and_tasks_are_allowed if {
	every method in ["logging/setLevel", "tasks/get", "tasks/list", "tasks/result", "tasks/cancel"] {
		d := decision with input as fixtures.request(method, {})
		d.result == "allow"
		d.policy_id == "toolgate.default.session"
		d.reason == sprintf("%s concerns only the agent's own session", [method])
	}
}

test_unknown_methods_are_denied if {
	every method in ["tools/destroy", "resources/write", "sampling/createMessage", "x"] {
		d := decision with input as fixtures.request(method, {})
		d == {"result": "deny", "policy_id": "toolgate.default.unknown_method", "reason": "the method is not one toolgate judges"}
	}
}

test_an_upstream_cannot_send_client_methods if {
	every method in ["tools/call", "resources/read", "prompts/get", "logging/setLevel", "tasks/get"] {
		d := decision with input as fixtures.server_request(method)
		d.policy_id == "toolgate.default.unknown_method"
	}
}

test_an_input_without_a_direction_comes_from_the_agent if {
	doc := json.remove(fixtures.call("read_file", "read", [fixtures.path("/workspace/a")]), ["request/direction"])
	d := decision with input as doc
	d.policy_id == "toolgate.filesystem.read"
}

test_plumbing_decision_is_left_to_the_proxy if {
	not data.toolgate.plumbing_decision with input as fixtures.request("initialize", {})
}
