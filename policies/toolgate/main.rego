# The entry point of the shipped library: data.toolgate.decision combines the verdicts of the rule
# packages (filesystem, shell, network, dlp) and the default rules below.
#
# Each rule package contributes objects {"policy_id", "reason"} to its partial sets `deny`, `escalate`
# and `allow`. Deny beats escalate beats allow; a call no rule speaks for is denied.
package toolgate

import rego.v1

import data.toolgate.dlp
import data.toolgate.filesystem
import data.toolgate.network
import data.toolgate.shell

config := data.toolgate_config

file_action if input.tool.action in {"read", "write", "delete"}

network_action if input.tool.action in {"network", "send"}

# Only the package that owns the call's action is consulted (DLP applies to every call): the others could
# not fire anyway, and every rule the VM need not enter is time saved on each call.
denials := filesystem.deny | dlp.deny if file_action
else := shell.deny | dlp.deny if input.tool.action == "execute"
else := network.deny | dlp.deny if network_action
else := default_deny | dlp.deny

escalations := filesystem.escalate | dlp.escalate if file_action
else := network.escalate | dlp.escalate if network_action
else := dlp.escalate

allowances := filesystem.allow if file_action
else := shell.allow if input.tool.action == "execute"
else := network.allow if network_action
else := default_allow

default decision := {
	"result": "deny",
	"policy_id": "toolgate.default.no_rule",
	"reason": "no rule allows this call",
}

# Sets iterate in sorted order, so the reported rule is the same for the same input every time.
decision := verdict("deny", denials) if {
	count(denials) > 0
} else := verdict("escalate", escalations) if {
	count(escalations) > 0
} else := verdict("allow", allowances) if {
	count(allowances) > 0
}

verdict(result, candidates) := {"result": result, "policy_id": first.policy_id, "reason": first.reason} if {
	first := [c | some c in candidates][0]
}

# Tools whose action the engine cannot tell (the demo `echo`) run only when data lists them as harmless.
default_allow contains {
	"policy_id": "toolgate.default",
	"reason": sprintf("%s is listed as harmless", [input.tool.name]),
} if {
	input.tool.action == "unknown"
	input.tool.name in config.harmless_tools
}

default_deny contains {
	"policy_id": "toolgate.default.unknown_tool",
	"reason": sprintf("%s does something toolgate cannot classify and is not listed as harmless", [input.tool.name]),
} if {
	input.tool.action == "unknown"
	not input.tool.name in config.harmless_tools
}

# tools/list: an agent that may not run commands does not see the tools that run them.
default visible := true

visible := false if {
	input.tool.action == "execute"
	not shell.role_allowed
}
