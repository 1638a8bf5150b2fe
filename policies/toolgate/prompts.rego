# prompts/get (and the items of prompts/list) by the prompt's name, and completion/complete as a whole.
package toolgate.prompts

import rego.v1

cfg := data.toolgate_config.prompts

name := input.prompt.name if is_string(input.prompt.name)

deny contains {
	"policy_id": "toolgate.prompts.denied",
	"reason": sprintf("the prompt %s is on the deny list", [name]),
} if {
	name in cfg.denied
}

deny contains {
	"policy_id": "toolgate.prompts.not_allowed",
	"reason": sprintf("the prompt %s is not on the allow list", [name]),
} if {
	cfg.allow_all == false
	not name in cfg.allowed
}

deny contains {
	"policy_id": "toolgate.prompts.no_name",
	"reason": "the request names no prompt",
} if {
	input.request.method == "prompts/get"
	not name
}

allow contains {
	"policy_id": "toolgate.prompts.allowed",
	"reason": sprintf("the prompt %s may be used", [name]),
} if {
	name
}

deny contains {
	"policy_id": "toolgate.completion.disabled",
	"reason": "argument completion is disabled (completion.enabled)",
} if {
	input.request.method == "completion/complete"
	data.toolgate_config.completion.enabled == false
}

allow contains {
	"policy_id": "toolgate.completion.enabled",
	"reason": "argument completion is enabled",
} if {
	input.request.method == "completion/complete"
	not data.toolgate_config.completion.enabled == false
}
