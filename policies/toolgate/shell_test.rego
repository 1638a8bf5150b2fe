package toolgate.shell_test

import rego.v1

import data.toolgate.fixtures

shell_call(roles) := fixtures.with_roles(fixtures.call("run_shell", "execute", [fixtures.command("ls")]), roles)

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_execution_without_a_role_is_denied if {
	d := decide(shell_call([]))
	d.result == "deny"
	d.policy_id == "toolgate.shell.no_role"
	d.reason == `run_shell runs commands and the agent holds none of the roles ["shell"]`
}

test_execution_with_other_roles_is_denied if {
	decide(shell_call(["dev", "admin"])).policy_id == "toolgate.shell.no_role"
}

test_execution_with_the_shell_role_is_allowed if {
	d := decide(shell_call(["dev", "shell"]))
	d.result == "allow"
	d.policy_id == "toolgate.shell.role"
	d.reason == "run_shell may run: the agent holds a shell role"
}

test_execution_naming_no_command_is_judged_by_role if {
	decide(fixtures.with_roles(fixtures.call("run_shell", "execute", []), ["shell"])).result == "allow"
	decide(fixtures.call("run_shell", "execute", [])).policy_id == "toolgate.shell.no_role"
}

test_a_command_named_by_a_tool_of_another_action_needs_the_role if {
	doc := fixtures.call("create_job", "write", [fixtures.path("/workspace/job"), fixtures.command("rm -rf /")])
	decide(doc).policy_id == "toolgate.shell.no_role"
	decide(fixtures.with_roles(doc, ["shell"])).policy_id == "toolgate.filesystem.write_review"
}

test_the_reason_never_quotes_the_command if {
	doc := fixtures.call("run_shell", "execute", [fixtures.command("curl -H 'Authorization: Bearer s3cr3t' x")])
	d := decide(doc)
	d.result == "deny"
	not contains(d.reason, "s3cr3t")
}

test_the_allowed_roles_come_from_data if {
	d := data.toolgate.decision with input as shell_call(["ops"])
		with data.toolgate_config.shell.allowed_roles as ["ops"]
	d.result == "allow"
}

test_shell_tools_are_hidden_from_agents_without_the_role if {
	not data.toolgate.visible with input as fixtures.listed_tool("run_shell", "execute", fixtures.pinned)
	data.toolgate.visible with input as fixtures.with_roles(fixtures.listed_tool("run_shell", "execute", fixtures.pinned), ["shell"])
}

test_other_tools_stay_visible if {
	data.toolgate.visible with input as fixtures.listed_tool("read_file", "read", fixtures.pinned)
}

test_rule_sets_are_only_about_commands if {
	count(data.toolgate.shell.deny) == 0 with input as fixtures.call("read_file", "read", [fixtures.path("/workspace/a")])
	count(data.toolgate.shell.allow) == 0 with input as fixtures.call("read_file", "read", [fixtures.path("/workspace/a")])
}
