# An agent behaving unlike itself: a request whose behaviour score (input.behavior.score, 0..1, from the
# agent's own baseline of call rate, tool mix, deny rate and targets) reaches `behavior.escalate_score` is
# held for a human, whatever else allows it. Denials still win. A knob above 1 turns the rule off.
package toolgate.behaviour

import rego.v1

cfg := data.toolgate_config.behavior

escalate contains {
	"policy_id": "toolgate.behaviour.anomalous",
	"reason": "the agent's behaviour is anomalous against its own baseline (score at or above behavior.escalate_score)",
} if {
	not input.request.direction == "server_to_client"
	is_number(input.behavior.score)
	is_number(cfg.escalate_score)
	input.behavior.score >= cfg.escalate_score
}
