# Paths: every path a tool call names, or the path of a file:// resource. The engine has already made each
# path absolute with `.`/`..` resolved, so prefix checks here cannot be escaped by traversal.
package toolgate.filesystem

import rego.v1

import data.toolgate.resources
import data.toolgate.tools

cfg := data.toolgate_config.filesystem

subject := input.tool.name if is_string(input.tool.name)

else := "the resource"

file_action if input.tool.action in {"read", "write", "delete"}

paths := {t.value | some t in tools.targets; t.kind == "path"} if {
	is_object(input.tool)
} else := {resources.path} if {
	resources.path
} else := set()

# What the message does with its paths: a file tool its own action; resources/* read; a tool of another
# action (a command's working directory, a download's destination) uses them, and then only where they
# are matters.
mode := input.tool.action if {
	file_action
} else := "use" if {
	is_object(input.tool)
} else := "read"

# A path is under a directory when it is the directory or below it: /workspace2 is not under /workspace.
# Compared with a trailing slash on both sides, which also makes "/" a prefix of every path.
#
# The directories with their slash depend on data only, so the VM computes them once per evaluator, not
# once per request (see "Performance" in docs/policies.md); each path is then matched against all of
# them in one builtin call.
#
# System paths and credentials directories are compared case-insensitively: on a case-insensitive
# filesystem (macOS, Windows, many upstreams' own stores) `/ETC/passwd` and `~/.SSH/id_rsa` are the files the
# lists protect. Roots stay case-sensitive: a path that differs from a root only in case is outside it, and
# denied.
system_prefixes := {concat("", [trim_right(lower(dir), "/"), "/"]) | some dir in cfg.system_paths}

secret_segments := {lower(segment) | some segment in cfg.secret_segments}

root_prefixes := {concat("", [trim_right(root, "/"), "/"]) | some root in cfg.roots}

system := {p |
	some p in paths
	strings.any_prefix_match(concat("", [lower(p), "/"]), system_prefixes)
}

secret := {p |
	some p in paths
	some segment in split(lower(p), "/")
	segment in secret_segments
}

rooted := {p |
	some p in paths
	strings.any_prefix_match(concat("", [p, "/"]), root_prefixes)
}

permitted := (rooted - system) - secret

outside := ((paths - rooted) - system) - secret

deny contains {
	"policy_id": "toolgate.filesystem.no_target",
	"reason": sprintf("%s with no path to judge", [input.tool.action]),
} if {
	file_action
	count(paths) == 0
}

# A path the engine marks ambiguous holds a control character (NUL among them) or a backslash, as written or
# percent-decoded: upstreams read it differently (C code stops at NUL, a Windows upstream climbs at `..\`), so
# the path judged may not be the file opened. Denied whatever else it names; the reason does not quote it.
ambiguous_paths := {t.value | some t in tools.targets; t.kind == "path"; t.ambiguous == true} if {
	is_object(input.tool)
} else := {resources.path} if {
	resources.path
	input.resource.ambiguous == true
} else := set()

deny contains {
	"policy_id": "toolgate.filesystem.ambiguous_path",
	"reason": sprintf("%s names a path that upstreams read differently (a control character or a backslash)", [subject]),
} if {
	count(ambiguous_paths) > 0
}

deny contains {
	"policy_id": "toolgate.filesystem.system_path",
	"reason": sprintf("%s is a protected system path", [p]),
} if {
	some p in system
}

deny contains {
	"policy_id": "toolgate.filesystem.secret_path",
	"reason": sprintf("%s is inside a credentials directory", [p]),
} if {
	some p in secret
}

deny contains {
	"policy_id": "toolgate.filesystem.outside_roots",
	"reason": sprintf("%s is outside the allowed roots", [p]),
} if {
	some p in outside
}

allow contains {
	"policy_id": "toolgate.filesystem.read",
	"reason": sprintf("reading %s under an allowed root", [p]),
} if {
	mode == "read"
	some p in permitted
}

allow contains {
	"policy_id": "toolgate.filesystem.in_root",
	"reason": sprintf("%s is under an allowed root", [p]),
} if {
	mode == "use"
	some p in permitted
}

# One escalation naming every path: the reviewer approves the call, not the first path of it.
escalate contains {
	"policy_id": "toolgate.filesystem.write_review",
	"reason": sprintf("writing %s needs human review", [concat(", ", sort(permitted))]),
} if {
	mode == "write"
	count(permitted) > 0
}

escalate contains {
	"policy_id": "toolgate.filesystem.delete_review",
	"reason": sprintf("deleting %s needs human review", [concat(", ", sort(permitted))]),
} if {
	mode == "delete"
	count(permitted) > 0
}
