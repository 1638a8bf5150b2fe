# Network fetches (only to allow-listed hosts) and outgoing messages (always reviewed by a human).
package toolgate.network

import rego.v1

cfg := data.toolgate_config.network

target := input.tool.target if is_string(input.tool.target)

# The engine removed userinfo and lower-cased scheme and host, so the authority is host[:port]. String
# builtins rather than a regex: regorus compiles a regex pattern on every call, which would be most of the
# cost of a decision. The host check is strict on purpose: text the engine could not parse as a URL (and
# IPv6 literals) yields no host and is denied.
separator := indexof(target, "://")

scheme := substring(target, 0, separator) if separator > 0

authority := split(split(split(substring(target, separator + 3, -1), "/")[0], "?")[0], "#")[0] if {
	separator > 0
}

host_and_port := split(authority, ":")

host := host_and_port[0] if {
	count(host_and_port) <= 2
	host_and_port[0] != ""
	trim(host_and_port[0], "abcdefghijklmnopqrstuvwxyz0123456789.-") == ""
}

# "*.example.com" matches any subdomain of example.com, not example.com itself.
host_matches(h, pattern) if h == lower(pattern)

host_matches(h, pattern) if {
	startswith(pattern, "*.")
	endswith(h, lower(trim_prefix(pattern, "*")))
}

host_allowed if {
	some pattern in cfg.allowed_hosts
	host_matches(host, pattern)
}

allow contains {
	"policy_id": "toolgate.network.allowed_host",
	"reason": sprintf("%s is on the network allow-list", [host]),
} if {
	input.tool.action == "network"
	scheme in cfg.allowed_schemes
	host_allowed
}

deny contains {
	"policy_id": "toolgate.network.host_not_allowed",
	"reason": sprintf("%s is not on the network allow-list", [host]),
} if {
	input.tool.action == "network"
	host
	not host_allowed
}

deny contains {
	"policy_id": "toolgate.network.scheme",
	"reason": sprintf("%s:// is not an allowed scheme", [scheme]),
} if {
	input.tool.action == "network"
	scheme
	not scheme in cfg.allowed_schemes
}

deny contains {
	"policy_id": "toolgate.network.no_target",
	"reason": sprintf("%s has no URL toolgate can judge", [input.tool.name]),
} if {
	input.tool.action == "network"
	not host
}

recipient := target if target != ""

else := "an unnamed recipient"

escalate contains {
	"policy_id": "toolgate.network.send_review",
	"reason": sprintf("sending to %s needs human review", [recipient]),
} if {
	input.tool.action == "send"
}
