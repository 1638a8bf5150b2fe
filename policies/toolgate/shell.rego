# Command execution: only agents holding one of the configured roles may run commands.
package toolgate.shell

import rego.v1

cfg := data.toolgate_config.shell

role_allowed if {
	some role in input.agent.roles
	role in cfg.allowed_roles
}

# The reasons name the tool, not the command line: a command can carry credentials.
allow contains {
	"policy_id": "toolgate.shell.role",
	"reason": sprintf("%s may run: the agent holds a shell role", [input.tool.name]),
} if {
	input.tool.action == "execute"
	role_allowed
}

deny contains {
	"policy_id": "toolgate.shell.no_role",
	"reason": sprintf("%s runs commands and the agent holds none of the roles %v", [input.tool.name, cfg.allowed_roles]),
} if {
	input.tool.action == "execute"
	not role_allowed
}
