# Targets here are what the engine hands the policy: absolute, with `.`/`..` already resolved.
package toolgate.filesystem_test

import rego.v1

import data.toolgate.fixtures

fs_call(action, target) := fixtures.call("some_tool", action, [fixtures.path(target)])

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_read_under_root_is_allowed if {
	d := decide(fs_call("read", "/workspace/notes/report.txt"))
	d.result == "allow"
	d.policy_id == "toolgate.filesystem.read"
	d.reason == "reading /workspace/notes/report.txt under an allowed root"
}

test_read_of_a_root_itself_is_allowed if {
	decide(fs_call("read", "/home")).result == "allow"
}

test_a_sibling_with_a_root_as_prefix_is_not_under_it if {
	d := decide(fs_call("read", "/workspace2/notes.txt"))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.outside_roots"
	d.reason == "/workspace2/notes.txt is outside the allowed roots"
}

test_read_of_a_system_path_is_denied if {
	d := decide(fs_call("read", "/etc/passwd"))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.system_path"
	d.reason == "/etc/passwd is a protected system path"
}

test_a_resolved_traversal_is_judged_by_where_it_lands if {
	# /home/projects/../../etc/shadow as the engine normalises it
	decide(fs_call("read", "/etc/shadow")).policy_id == "toolgate.filesystem.system_path"
}

test_every_system_path_is_denied if {
	every dir in ["/etc", "/root/.bashrc", "/proc/self/environ", "/sys/kernel", "/boot/vmlinuz", "/dev/sda", "/var/run/docker.sock", "/run/secrets"] {
		decide(fs_call("read", dir)).policy_id == "toolgate.filesystem.system_path"
	}
}

test_a_credentials_directory_is_denied_even_under_a_root if {
	d := decide(fs_call("read", "/home/dev/.ssh/id_ed25519"))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.secret_path"
	d.reason == "/home/dev/.ssh/id_ed25519 is inside a credentials directory"
}

test_credentials_directories_are_matched_whatever_their_case if {
	# a case-insensitive filesystem opens ~/.ssh for ~/.SSH
	every p in ["/home/dev/.SSH/id_ed25519", "/home/dev/.Ssh/config", "/workspace/.AWS/credentials", "/tmp/.GnuPG/secring.gpg"] {
		d := decide(fs_call("read", p))
		d.policy_id == "toolgate.filesystem.secret_path"
	}
}

test_system_paths_are_matched_whatever_their_case if {
	every p in ["/ETC/passwd", "/Etc/shadow", "/PROC/self/environ", "/Var/Run/docker.sock"] {
		decide(fs_call("read", p)).policy_id == "toolgate.filesystem.system_path"
	}
}

test_lists_written_in_another_case_still_match if {
	d := data.toolgate.decision with input as fs_call("read", "/home/dev/.ssh/id_rsa")
		with data.toolgate_config.filesystem.secret_segments as [".SSH"]
	d.policy_id == "toolgate.filesystem.secret_path"
	d2 := data.toolgate.decision with input as fs_call("read", "/etc/passwd")
		with data.toolgate_config.filesystem.system_paths as ["/ETC"]
	d2.policy_id == "toolgate.filesystem.system_path"
}

test_a_root_differing_only_in_case_is_not_the_root if {
	decide(fs_call("read", "/Workspace/a")).policy_id == "toolgate.filesystem.outside_roots"
}

test_a_review_names_every_path if {
	doc := fixtures.call("move_file", "write", [fixtures.path("/workspace/a"), fixtures.path("/workspace/.bashrc")])
	d := decide(doc)
	d.policy_id == "toolgate.filesystem.write_review"
	d.reason == "writing /workspace/.bashrc, /workspace/a needs human review"
	d2 := decide(fixtures.call("rm", "delete", [fixtures.path("/tmp/x"), fixtures.path("/tmp/y")]))
	d2.reason == "deleting /tmp/x, /tmp/y needs human review"
}

test_a_name_that_merely_starts_like_a_credentials_directory_is_not_one if {
	decide(fs_call("read", "/home/dev/.sshrc")).result == "allow"
}

test_write_under_a_root_escalates if {
	d := decide(fs_call("write", "/tmp/out.txt"))
	d.result == "escalate"
	d.policy_id == "toolgate.filesystem.write_review"
	d.reason == "writing /tmp/out.txt needs human review"
}

test_delete_under_a_root_escalates if {
	d := decide(fs_call("delete", "/workspace/old.log"))
	d.result == "escalate"
	d.policy_id == "toolgate.filesystem.delete_review"
	d.reason == "deleting /workspace/old.log needs human review"
}

test_write_to_a_system_path_is_denied if {
	d := decide(fs_call("write", "/etc/cron.d/job"))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.system_path"
}

test_write_outside_the_roots_is_denied if {
	d := decide(fs_call("delete", "/opt/app/config"))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.outside_roots"
}

test_a_file_action_without_a_path_is_denied if {
	d := decide(fixtures.call("read_file", "read", []))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.no_target"
	d.reason == "read with no path to judge"
}

test_a_file_action_naming_only_a_url_has_no_path if {
	d := decide(fixtures.call("write_file", "write", [fixtures.url("https://example.com/")]))
	d.policy_id == "toolgate.filesystem.no_target"
}

# The brief's example: a move is judged on its destination as well as its source.
test_a_move_into_a_system_path_is_denied_for_the_destination if {
	d := decide(fixtures.call("move_file", "write", [fixtures.path("/workspace/a"), fixtures.path("/etc/cron.d/x")]))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.system_path"
	d.reason == "/etc/cron.d/x is a protected system path"
}

test_a_read_is_allowed_only_when_every_path_is if {
	decide(fixtures.call("read_files", "read", [fixtures.path("/workspace/a"), fixtures.path("/home/b")])).result == "allow"
	d := decide(fixtures.call("read_files", "read", [fixtures.path("/workspace/a"), fixtures.path("/opt/b")]))
	d.policy_id == "toolgate.filesystem.outside_roots"
	d.reason == "/opt/b is outside the allowed roots"
	d2 := decide(fixtures.call("read_files", "read", [fixtures.path("/workspace/a"), fixtures.path("/home/u/.aws/credentials")]))
	d2.policy_id == "toolgate.filesystem.secret_path"
}

test_a_copy_between_roots_escalates_once_naming_both_paths if {
	d := decide(fixtures.call("copy_file", "write", [fixtures.path("/workspace/a"), fixtures.path("/tmp/b")]))
	d.result == "escalate"
	d.reason == "writing /tmp/b, /workspace/a needs human review"
	count(data.toolgate.filesystem.escalate) == 1 with input as fixtures.call("copy_file", "write", [fixtures.path("/workspace/a"), fixtures.path("/tmp/b")])
}

test_a_path_named_by_a_tool_of_another_action_is_judged_by_where_it_is if {
	shell := fixtures.with_roles(fixtures.call("run_shell", "execute", [fixtures.command("make"), fixtures.path("/workspace/app")]), ["shell"])
	decide(shell).result == "allow"
	data.toolgate.filesystem.allow == {{"policy_id": "toolgate.filesystem.in_root", "reason": "/workspace/app is under an allowed root"}} with input as shell
	outside := fixtures.with_roles(fixtures.call("run_shell", "execute", [fixtures.command("make"), fixtures.path("/etc")]), ["shell"])
	decide(outside).policy_id == "toolgate.filesystem.system_path"
}

test_an_engine_without_targets_is_judged_on_its_single_target if {
	d := decide(fixtures.single_target_call("read_file", "read", "/workspace/a"))
	d.policy_id == "toolgate.filesystem.read"
	d2 := decide(fixtures.single_target_call("write_file", "write", "/etc/hosts"))
	d2.policy_id == "toolgate.filesystem.system_path"
	d3 := decide(fixtures.single_target_call("read_file", "read", null))
	d3.policy_id == "toolgate.filesystem.no_target"
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

test_rule_sets_are_only_about_paths if {
	count(data.toolgate.filesystem.deny) == 0 with input as fixtures.call("run_shell", "execute", [fixtures.command("ls /etc")])
	count(data.toolgate.filesystem.allow) == 0 with input as fixtures.call("fetch_url", "network", [fixtures.url("https://example.com/")])
}

test_an_ambiguous_path_is_denied_even_under_a_root if {
	d := decide(fixtures.call("read_file", "read", [fixtures.ambiguous_path("/workspace/x")]))
	d.result == "deny"
	d.policy_id == "toolgate.filesystem.ambiguous_path"
	d.reason == "read_file names a path that upstreams read differently (a control character or a backslash)"
	count(data.toolgate.filesystem.ambiguous_paths) == 1 with input as fixtures.call("read_file", "read", [fixtures.ambiguous_path("/workspace/x")])
}

test_an_ambiguous_path_beside_a_good_one_is_still_denied if {
	d := decide(fixtures.call("read_file", "read", [fixtures.path("/workspace/a"), fixtures.ambiguous_path("/workspace/b")]))
	d.policy_id == "toolgate.filesystem.ambiguous_path"
}

test_a_path_marked_not_ambiguous_is_judged_by_where_it_is if {
	d := decide(fixtures.call("read_file", "read", [object.union(fixtures.path("/workspace/a"), {"ambiguous": false})]))
	d.result == "allow"
	d.policy_id == "toolgate.filesystem.read"
}
