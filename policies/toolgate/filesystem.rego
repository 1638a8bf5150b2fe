# Reads, writes and deletes of files. The engine has already made the target absolute with `.`/`..`
# resolved, so prefix checks here cannot be escaped by traversal.
package toolgate.filesystem

import rego.v1

cfg := data.toolgate_config.filesystem

applies if input.tool.action in {"read", "write", "delete"}

target := input.tool.target if is_string(input.tool.target)

# A path is under a directory when it is the directory or below it: /workspace2 is not under /workspace.
# Compared with a trailing slash on both sides, which also makes "/" a prefix of every path.
target_slash := concat("", [target, "/"])

system_path if {
	some dir in cfg.system_paths
	startswith(target_slash, concat("", [trim_right(dir, "/"), "/"]))
}

secret_path if {
	some segment in split(target, "/")
	segment in cfg.secret_segments
}

in_root if {
	some root in cfg.roots
	startswith(target_slash, concat("", [trim_right(root, "/"), "/"]))
}

deny contains {
	"policy_id": "toolgate.filesystem.no_target",
	"reason": sprintf("%s with no path to judge", [input.tool.action]),
} if {
	applies
	not target
}

deny contains {
	"policy_id": "toolgate.filesystem.system_path",
	"reason": sprintf("%s is a protected system path", [target]),
} if {
	applies
	system_path
}

deny contains {
	"policy_id": "toolgate.filesystem.secret_path",
	"reason": sprintf("%s is inside a credentials directory", [target]),
} if {
	applies
	secret_path
}

deny contains {
	"policy_id": "toolgate.filesystem.outside_roots",
	"reason": sprintf("%s is outside the allowed roots", [target]),
} if {
	applies
	target
	not in_root
	not system_path
	not secret_path
}

allow contains {
	"policy_id": "toolgate.filesystem.read",
	"reason": sprintf("reading %s under an allowed root", [target]),
} if {
	input.tool.action == "read"
	in_root
}

escalate contains {
	"policy_id": "toolgate.filesystem.write_review",
	"reason": sprintf("writing %s needs human review", [target]),
} if {
	input.tool.action == "write"
	in_root
}

escalate contains {
	"policy_id": "toolgate.filesystem.delete_review",
	"reason": sprintf("deleting %s needs human review", [target]),
} if {
	input.tool.action == "delete"
	in_root
}
