# Requests an upstream sends to the agent through toolgate (direction server_to_client): sampling (the
# server asks the agent's model for a completion), elicitation (it asks the user a question) and roots/list
# (it asks which folders the agent works in). Each one's knob gives its verdict: "allow", "escalate" or
# "deny"; any other value matches no rule, and the request is denied.
package toolgate.sampling

import rego.v1

cfg := data.toolgate_config

asks := {
	"sampling/createMessage": {
		"policy_id": "toolgate.sampling.create_message",
		"what": "the upstream asks the agent's model for a completion",
		"knob": "sampling",
	},
	"elicitation/create": {
		"policy_id": "toolgate.sampling.elicitation",
		"what": "the upstream asks the user for input",
		"knob": "elicitation",
	},
	"roots/list": {
		"policy_id": "toolgate.sampling.roots",
		"what": "the upstream asks for the agent's roots",
		"knob": "roots",
	},
}

ask := asks[input.request.method]

mode := cfg[ask.knob].mode

judged(result) := {
	"policy_id": ask.policy_id,
	"reason": sprintf("%s (%s.mode = %s)", [ask.what, ask.knob, result]),
}

deny contains judged("deny") if mode == "deny"

escalate contains judged("escalate") if mode == "escalate"

allow contains judged("allow") if mode == "allow"
