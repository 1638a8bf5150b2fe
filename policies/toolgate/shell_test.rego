package toolgate.shell

import rego.v1

shell_call(roles) := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": roles, "claims": {}},
	"tool": {"name": "run_shell", "arguments": {"command": "ls"}, "action": "execute", "target": "ls"},
	"dlp": {"findings": []},
}

test_execution_without_a_role_is_denied if {
	d := data.toolgate.decision with input as shell_call([])
	d.result == "deny"
	d.policy_id == "toolgate.shell.no_role"
	d.reason == `run_shell runs commands and the agent holds none of the roles ["shell"]`
}

test_execution_with_other_roles_is_denied if {
	d := data.toolgate.decision with input as shell_call(["dev", "admin"])
	d.policy_id == "toolgate.shell.no_role"
}

test_execution_with_the_shell_role_is_allowed if {
	d := data.toolgate.decision with input as shell_call(["dev", "shell"])
	d.result == "allow"
	d.policy_id == "toolgate.shell.role"
}

test_the_reason_never_quotes_the_command if {
	i := object.union(shell_call([]), {"tool": {"target": "curl -H 'Authorization: Bearer s3cr3t' x"}})
	d := data.toolgate.decision with input as i
	not contains(d.reason, "s3cr3t")
}

test_the_allowed_roles_come_from_data if {
	d := data.toolgate.decision with input as shell_call(["ops"])
		with data.toolgate_config.shell.allowed_roles as ["ops"]
	d.result == "allow"
}

test_shell_tools_are_hidden_from_agents_without_the_role if {
	not data.toolgate.visible with input as shell_call(["dev"])
	data.toolgate.visible with input as shell_call(["shell"])
}

test_other_tools_stay_visible if {
	i := {"agent": {"roles": []}, "tool": {"name": "read_file", "arguments": null, "action": "read", "target": null}}
	data.toolgate.visible with input as i
}
