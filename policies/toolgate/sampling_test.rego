package toolgate.sampling_test

import rego.v1

import data.toolgate.fixtures

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_sampling_is_escalated_by_default if {
	d := decide(fixtures.server_request("sampling/createMessage"))
	d.result == "escalate"
	d.policy_id == "toolgate.sampling.create_message"
	d.reason == "the upstream asks the agent's model for a completion (sampling.mode = escalate)"
}

test_elicitation_and_roots_are_allowed_by_default if {
	d := decide(fixtures.server_request("elicitation/create"))
	d == {"result": "allow", "policy_id": "toolgate.sampling.elicitation", "reason": "the upstream asks the user for input (elicitation.mode = allow)"}
	e := decide(fixtures.server_request("roots/list"))
	e == {"result": "allow", "policy_id": "toolgate.sampling.roots", "reason": "the upstream asks for the agent's roots (roots.mode = allow)"}
}

test_each_mode_comes_from_data if {
	d := data.toolgate.decision with input as fixtures.server_request("sampling/createMessage")
		with data.toolgate_config.sampling.mode as "deny"
	d.result == "deny"
	d.policy_id == "toolgate.sampling.create_message"
	e := data.toolgate.decision with input as fixtures.server_request("sampling/createMessage")
		with data.toolgate_config.sampling.mode as "allow"
	e.result == "allow"
	f := data.toolgate.decision with input as fixtures.server_request("elicitation/create")
		with data.toolgate_config.elicitation.mode as "escalate"
	f.result == "escalate"
	g := data.toolgate.decision with input as fixtures.server_request("roots/list")
		with data.toolgate_config.roots.mode as "deny"
	g.result == "deny"
}

test_a_mode_that_is_not_a_verdict_denies if {
	d := data.toolgate.decision with input as fixtures.server_request("sampling/createMessage")
		with data.toolgate_config.sampling.mode as "yes"
	d.policy_id == "toolgate.default.no_rule"
}

test_the_agent_cannot_send_server_requests if {
	d := decide(fixtures.request("sampling/createMessage", {}))
	d.policy_id == "toolgate.default.unknown_method"
}
