package toolgate.behaviour_test

import rego.v1

import data.toolgate.fixtures

read_call := fixtures.call("read_file", "read", [fixtures.path("/workspace/a")])

with_score(doc, score) := object.union(doc, {"behavior": {"score": score, "zscore": 4.2, "new_tool": true}})

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_a_usual_call_is_judged_on_its_arguments if {
	decide(with_score(read_call, 0.3)).policy_id == "toolgate.filesystem.read"
}

test_an_anomalous_agent_is_escalated if {
	d := decide(with_score(read_call, 0.85))
	d.result == "escalate"
	d.policy_id == "toolgate.behaviour.anomalous"
}

test_the_knob_is_the_threshold if {
	d := data.toolgate.decision with input as with_score(read_call, 0.5)
		with data.toolgate_config.behavior.escalate_score as 0.5
	d.policy_id == "toolgate.behaviour.anomalous"
	e := data.toolgate.decision with input as with_score(read_call, 0.99)
		with data.toolgate_config.behavior.escalate_score as 1.1
	e.policy_id == "toolgate.filesystem.read"
}

test_a_denial_still_wins if {
	d := decide(with_score(fixtures.call("read_file", "read", [fixtures.path("/etc/passwd")]), 0.95))
	d.result == "deny"
}

test_other_methods_are_escalated_too if {
	d := decide(with_score(fixtures.prompt_request("summarise"), 0.9))
	d.policy_id == "toolgate.behaviour.anomalous"
}

test_a_server_request_is_not_the_agents_behaviour if {
	d := decide(with_score(fixtures.server_request("roots/list"), 0.99))
	d.result == "allow"
}
