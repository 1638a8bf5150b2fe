# The entry points of the shipped library: data.toolgate.decision (every judged request, any method, both
# directions), data.toolgate.visible (items of the list methods) and data.toolgate.result_decision (the
# answers). plumbing_decision is left undefined: initialize, ping and notifications are always allowed.
#
# Each rule package contributes objects {"policy_id", "reason"} to its partial sets `deny`, `escalate`
# and `allow`. Deny beats escalate beats allow; a request no rule speaks for is denied.
package toolgate

import rego.v1

import data.toolgate.behaviour
import data.toolgate.dlp
import data.toolgate.filesystem
import data.toolgate.network
import data.toolgate.prompts
import data.toolgate.resources
import data.toolgate.results
import data.toolgate.sampling
import data.toolgate.shell
import data.toolgate.tools

config := data.toolgate_config

# An input without a direction predates server-to-client judging: it came from the agent.
from_upstream if input.request.direction == "server_to_client"

method := input.request.method

# Which packages judge the request. Only those are consulted (DLP applies to every request): the others
# could not fire anyway, and every rule the VM need not enter is time saved on each request.
route := "tools" if {
	not from_upstream
	method == "tools/call"
} else := "resources" if {
	not from_upstream
	method in {"resources/read", "resources/subscribe", "resources/unsubscribe"}
} else := "prompts" if {
	not from_upstream
	method in {"prompts/get", "completion/complete"}
} else := "session" if {
	not from_upstream
	method == "logging/setLevel"
} else := "session" if {
	not from_upstream
	method in {"tasks/get", "tasks/list", "tasks/result", "tasks/cancel"}
} else := "sampling" if {
	from_upstream
	method in {"sampling/createMessage", "elicitation/create", "roots/list"}
} else := "unknown"

denials := tool_denials | dlp.deny if route == "tools"
else := resource_denials | dlp.deny if route == "resources"
else := prompts.deny | dlp.deny if route == "prompts"
else := sampling.deny | dlp.deny if route == "sampling"
else := dlp.deny if route == "session"
else := unknown_method | dlp.deny

route_escalations := tool_escalations | dlp.escalate if route == "tools"
else := sampling.escalate | dlp.escalate if route == "sampling"
else := dlp.escalate

# An anomalous agent (package behaviour) is held whatever route its request took.
escalations := route_escalations | behaviour.escalate

allowances := tool_allowances if route == "tools"
else := resource_allowances if route == "resources"
else := prompts.allow if route == "prompts"
else := sampling.allow if route == "sampling"
else := session_allow if route == "session"
else := set()

default decision := {
	"result": "deny",
	"policy_id": "toolgate.default.no_rule",
	"reason": "no rule allows this request",
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

result_decision := results.decision

# tools/call: the definition (package tools), every target by the package of its kind, the action itself
# (a file tool needs a path, a fetch a URL, a shell tool a role, a message is reviewed). Each target gets a
# verdict from its package, so the call is allowed only when every target is.
file_action if input.tool.action in {"read", "write", "delete"}

uses_files if file_action

uses_files if "path" in tools.kinds

uses_network if input.tool.action in {"network", "send"}

uses_network if "url" in tools.kinds

uses_network if "address" in tools.kinds

uses_shell if input.tool.action == "execute"

uses_shell if "command" in tools.kinds

known_action if input.tool.action in {"read", "write", "delete", "execute", "network", "send", "unknown"}

tool_denials := (((tools.deny | file_denials) | network_denials) | shell_denials) | default_deny

tool_escalations := file_escalations | network_escalations

# An action no package knows gets no allowance, whatever its targets: it can only be denied.
tool_allowances := ((file_allowances | network_allowances) | shell_allowances) | default_allow if known_action

else := set()

file_denials := filesystem.deny if uses_files

else := set()

file_escalations := filesystem.escalate if uses_files

else := set()

file_allowances := filesystem.allow if uses_files

else := set()

network_denials := network.deny if uses_network

else := set()

network_escalations := network.escalate if uses_network

else := set()

network_allowances := network.allow if uses_network

else := set()

shell_denials := shell.deny if uses_shell

else := set()

shell_allowances := shell.allow if uses_shell

else := set()

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

# resources/*: a file resource by the filesystem rules, an http(s) one by the network rules, any other by
# its scheme.
resource_denials := resources.deny | filesystem.deny if resources.kind == "path"

else := resources.deny | network.deny if resources.kind == "url"

else := resources.deny

resource_allowances := filesystem.allow if resources.kind == "path"

else := network.allow if resources.kind == "url"

else := resources.allow

# logging/setLevel only changes what the upstream logs; tasks/* only concern tasks the agent started.
session_allow contains {
	"policy_id": "toolgate.default.session",
	"reason": sprintf("%s concerns only the agent's own session", [method]),
}

unknown_method contains {
	"policy_id": "toolgate.default.unknown_method",
	"reason": "the method is not one toolgate judges",
}

# Items of tools/list, resources/list, resources/templates/list and prompts/list: an item is hidden when
# a request for it would be denied whatever its arguments.
default visible := true

visible := false if hidden

# An agent that may not run commands does not see the tools that run them.
hidden if {
	input.tool.action == "execute"
	not shell.role_allowed
}

hidden if tools.hidden

hidden if {
	is_object(input.resource)
	not resources.template
	count(resource_denials) > 0
}

# A template can expand to many URIs: hidden only when its scheme is refused, or its fixed part lies in a
# system path or a credentials directory.
hidden if {
	is_object(input.resource)
	resources.template
	count(resources.deny) > 0
}

hidden if {
	is_object(input.resource)
	resources.template
	count(filesystem.system | filesystem.secret) > 0
}

hidden if {
	is_object(input.prompt)
	count(prompts.deny) > 0
}
