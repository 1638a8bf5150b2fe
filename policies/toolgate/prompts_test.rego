package toolgate.prompts_test

import rego.v1

import data.toolgate.fixtures

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_prompts_are_allowed_by_default if {
	d := decide(fixtures.prompt_request("summarise"))
	d == {"result": "allow", "policy_id": "toolgate.prompts.allowed", "reason": "the prompt summarise may be used"}
}

test_a_denied_prompt_is_refused_and_hidden if {
	d := data.toolgate.decision with input as fixtures.prompt_request("jailbreak")
		with data.toolgate_config.prompts.denied as ["jailbreak"]
	d.result == "deny"
	d.policy_id == "toolgate.prompts.denied"
	d.reason == "the prompt jailbreak is on the deny list"
	not data.toolgate.visible with input as fixtures.listed_prompt("jailbreak")
		with data.toolgate_config.prompts.denied as ["jailbreak"]
	data.toolgate.visible with input as fixtures.listed_prompt("summarise")
		with data.toolgate_config.prompts.denied as ["jailbreak"]
}

test_an_allow_list_refuses_and_hides_the_others if {
	d := data.toolgate.decision with input as fixtures.prompt_request("other")
		with data.toolgate_config.prompts.allow_all as false
		with data.toolgate_config.prompts.allowed as ["summarise"]
	d.policy_id == "toolgate.prompts.not_allowed"
	d.reason == "the prompt other is not on the allow list"
	e := data.toolgate.decision with input as fixtures.prompt_request("summarise")
		with data.toolgate_config.prompts.allow_all as false
		with data.toolgate_config.prompts.allowed as ["summarise"]
	e.result == "allow"
	not data.toolgate.visible with input as fixtures.listed_prompt("other")
		with data.toolgate_config.prompts.allow_all as false
		with data.toolgate_config.prompts.allowed as ["summarise"]
}

test_the_deny_list_beats_the_allow_list if {
	d := data.toolgate.decision with input as fixtures.prompt_request("summarise")
		with data.toolgate_config.prompts.allow_all as false
		with data.toolgate_config.prompts.allowed as ["summarise"]
		with data.toolgate_config.prompts.denied as ["summarise"]
	d.policy_id == "toolgate.prompts.denied"
}

test_a_prompt_request_without_a_name_is_denied if {
	d := decide(object.union(fixtures.request("prompts/get", {}), {"prompt": null}))
	d.policy_id == "toolgate.prompts.no_name"
	d.reason == "the request names no prompt"
}

test_completion_is_allowed_unless_disabled if {
	d := decide(fixtures.request("completion/complete", {"ref": {"type": "ref/prompt", "name": "summarise"}}))
	d == {"result": "allow", "policy_id": "toolgate.completion.enabled", "reason": "argument completion is enabled"}
	e := data.toolgate.decision with input as fixtures.request("completion/complete", {})
		with data.toolgate_config.completion.enabled as false
	e == {"result": "deny", "policy_id": "toolgate.completion.disabled", "reason": "argument completion is disabled (completion.enabled)"}
}

test_rule_sets_are_only_about_prompts_and_completion if {
	count(data.toolgate.prompts.deny) == 0 with input as fixtures.request("logging/setLevel", {})
	count(data.toolgate.prompts.allow) == 0 with input as fixtures.request("logging/setLevel", {})
}
