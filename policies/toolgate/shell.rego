# Command execution: only agents holding one of the configured roles may run commands, whether the tool
# runs them (action `execute`) or merely names one among its arguments (a `command` target).
package toolgate.shell

import rego.v1

import data.toolgate.tools

cfg := data.toolgate_config.shell

role_allowed if {
	some role in input.agent.roles
	role in cfg.allowed_roles
}

runs_commands if input.tool.action == "execute"

runs_commands if "command" in tools.kinds

# The reasons name the tool, not the command line: a command can carry credentials.
allow contains {
	"policy_id": "toolgate.shell.role",
	"reason": sprintf("%s may run: the agent holds a shell role", [input.tool.name]),
} if {
	runs_commands
	role_allowed
}

deny contains {
	"policy_id": "toolgate.shell.no_role",
	"reason": sprintf("%s runs commands and the agent holds none of the roles %v", [input.tool.name, cfg.allowed_roles]),
} if {
	runs_commands
	not role_allowed
}
