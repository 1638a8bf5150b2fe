# Targets here are what the engine hands the policy: absolute, with `.`/`..` already resolved.
package toolgate.filesystem

import rego.v1

fs_call(action, target) := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {}},
	"tool": {"name": "some_tool", "arguments": {}, "action": action, "target": target},
	"dlp": {"findings": []},
}

test_read_under_root_is_allowed if {
	d := data.toolgate.decision with input as fs_call("read", "/workspace/notes/report.txt")
	d.result == "allow"
	d.policy_id == "toolgate.filesystem.read"
	d.reason == "reading /workspace/notes/report.txt under an allowed root"
}

test_read_of_a_root_itself_is_allowed if {
	d := data.toolgate.decision with input as fs_call("read", "/home")
	d.result == "allow"
}

test_a_sibling_with_a_root_as_prefix_is_not_under_it if {
	d := data.toolgate.decision with input as fs_call("read", "/workspace2/notes.txt")
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.outside_roots"
	d.reason == "/workspace2/notes.txt is outside the allowed roots"
}

test_read_of_a_system_path_is_denied if {
	d := data.toolgate.decision with input as fs_call("read", "/etc/passwd")
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.system_path"
	d.reason == "/etc/passwd is a protected system path"
}

test_a_resolved_traversal_is_judged_by_where_it_lands if {
	# /home/projects/../../etc/shadow as the engine normalises it
	d := data.toolgate.decision with input as fs_call("read", "/etc/shadow")
	d.policy_id == "toolgate.filesystem.system_path"
}

test_every_system_path_is_denied if {
	every dir in ["/etc", "/root/.bashrc", "/proc/self/environ", "/sys/kernel", "/boot/vmlinuz", "/dev/sda", "/var/run/docker.sock"] {
		d := data.toolgate.decision with input as fs_call("read", dir)
		d.policy_id == "toolgate.filesystem.system_path"
	}
}

test_a_credentials_directory_is_denied_even_under_a_root if {
	d := data.toolgate.decision with input as fs_call("read", "/home/dev/.ssh/id_ed25519")
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.secret_path"
}

test_a_name_that_merely_starts_like_a_credentials_directory_is_not_one if {
	d := data.toolgate.decision with input as fs_call("read", "/home/dev/.sshrc")
	d.result == "allow"
}

test_write_under_a_root_escalates if {
	d := data.toolgate.decision with input as fs_call("write", "/tmp/out.txt")
	d.result == "escalate"
	d.policy_id == "toolgate.filesystem.write_review"
	d.reason == "writing /tmp/out.txt needs human review"
}

test_delete_under_a_root_escalates if {
	d := data.toolgate.decision with input as fs_call("delete", "/workspace/old.log")
	d.result == "escalate"
	d.policy_id == "toolgate.filesystem.delete_review"
}

test_write_to_a_system_path_is_denied if {
	d := data.toolgate.decision with input as fs_call("write", "/etc/cron.d/job")
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.system_path"
}

test_write_outside_the_roots_is_denied if {
	d := data.toolgate.decision with input as fs_call("delete", "/opt/app/config")
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.outside_roots"
}

test_a_file_action_without_a_path_is_denied if {
	d := data.toolgate.decision with input as fs_call("read", null)
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.no_target"
}

test_the_roots_come_from_data if {
	d1 := data.toolgate.decision with input as fs_call("read", "/srv/data/a.csv")
		with data.toolgate_config.filesystem.roots as ["/srv/data/"]
	d1.result == "allow"
	d2 := data.toolgate.decision with input as fs_call("read", "/workspace/a.csv")
		with data.toolgate_config.filesystem.roots as ["/srv/data/"]
	d2.policy_id == "toolgate.filesystem.outside_roots"
}

test_a_root_of_slash_covers_every_path_but_system_paths if {
	d1 := data.toolgate.decision with input as fs_call("read", "/opt/app/readme")
		with data.toolgate_config.filesystem.roots as ["/"]
	d1.result == "allow"
	d2 := data.toolgate.decision with input as fs_call("read", "/etc/passwd")
		with data.toolgate_config.filesystem.roots as ["/"]
	d2.policy_id == "toolgate.filesystem.system_path"
}

test_rule_sets_are_only_about_files if {
	count(deny) == 0 with input as fs_call("execute", "ls")
	count(allow) == 0 with input as fs_call("network", "https://example.com/")
}
