# What a tools/call names and whether the tool itself can be trusted: the list of targets the other
# packages judge one by one, and the pinned definition (a changed, poisoned or unapproved tool is refused
# whatever its arguments).
package toolgate.tools

import rego.v1

cfg := data.toolgate_config.tools

# The kind of resource each action's single `tool.target` is, for inputs that list no `tool.targets`
# (an engine older than the targets list, or a call naming nothing): the behaviour before every target
# was judged.
action_kind := {
	"read": "path",
	"write": "path",
	"delete": "path",
	"execute": "command",
	"network": "url",
	"send": "address",
}

targets := input.tool.targets if {
	is_array(input.tool.targets)
	count(input.tool.targets) > 0
} else := [{"kind": kind, "key": "", "value": input.tool.target} |
	# a comprehension rather than an `else` whose body can fail on the lookup: the VM and the interpreter
	# disagreed on such a chain (see docs/policies.md, "regorus compared with OPA")
	is_string(input.tool.target)
	kind := action_kind[input.tool.action]
]

kinds := {t.kind | some t in targets}

known_kinds := {"path", "url", "command", "address"}

definition := input.tool.definition if is_object(input.tool.definition)

poisoning := definition.poisoning if {
	is_array(definition.poisoning)
	count(definition.poisoning) > 0
}

# A hash without a pin: listed by the upstream, waiting for an admin (`tools.pinning = "approve"`). No hash:
# toolgate never saw the tool listed (a call without a prior tools/list).
unapproved if {
	definition.status == "new"
	is_string(definition.hash)
}

unseen if {
	definition.status == "new"
	not is_string(definition.hash)
}

deny contains {
	"policy_id": "toolgate.tools.changed",
	"reason": sprintf("the definition of %s changed since it was pinned; an admin must approve it", [input.tool.name]),
} if {
	definition.status == "changed"
}

# The reason names the markers, never the text that raised them.
deny contains {
	"policy_id": "toolgate.tools.poisoned",
	"reason": sprintf("the definition of %s carries %s", [input.tool.name, concat(", ", sort(poisoning))]),
} if {
	poisoning
}

deny contains {
	"policy_id": "toolgate.tools.unapproved",
	"reason": sprintf("%s awaits an admin's approval", [input.tool.name]),
} if {
	unapproved
}

deny contains {
	"policy_id": "toolgate.tools.new",
	"reason": sprintf("%s was never listed by the upstream and tools.deny_new is set", [input.tool.name]),
} if {
	unseen
	cfg.deny_new == true
}

# The engine stops listing targets at a bound; what it did not list cannot be judged.
deny contains {
	"policy_id": "toolgate.tools.targets_truncated",
	"reason": sprintf("%s names more targets than toolgate judges", [input.tool.name]),
} if {
	input.tool.targets_truncated == true
}

# Two keys of one object that the engine folds to one name (`PATH` and `path`) with different values: the
# upstream reads one of them, and which one toolgate cannot tell, so no target can be trusted to be the one
# acted on (nor shown to a reviewer or audited as such). The reason does not quote the keys or values.
deny contains {
	"policy_id": "toolgate.tools.ambiguous_arguments",
	"reason": sprintf("%s names an argument twice, under keys that differ only in case, `_` or `-`, with different values", [input.tool.name]),
} if {
	count(input.tool.ambiguous_keys) > 0
}

deny contains {
	"policy_id": "toolgate.tools.unknown_target",
	"reason": sprintf("%s names a target of kind %s, which no rule judges", [input.tool.name, kind]),
} if {
	some kind in kinds
	not kind in known_kinds
}

# tools/list hides what a call would be refused for whatever its arguments.
hidden if definition.status == "changed"

hidden if poisoning

hidden if unapproved

hidden if {
	unseen
	cfg.deny_new == true
}
