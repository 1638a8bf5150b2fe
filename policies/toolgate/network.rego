# URLs (fetched only from allow-listed hosts) and addresses (every message sent is reviewed by a human):
# every URL and address a tool call names, or the URL of an http(s) resource.
package toolgate.network

import rego.v1

import data.toolgate.resources
import data.toolgate.tools

cfg := data.toolgate_config.network

# A URL the engine marks ambiguous (parsers read it as different hosts) is denied on its own and not judged
# by the host the engine read: the upstream may fetch another.
ambiguous_urls := {t.value | some t in tools.targets; t.kind == "url"; t.ambiguous == true} if {
	is_object(input.tool)
} else := {resources.url} if {
	resources.url
	input.resource.ambiguous == true
} else := set()

urls := {t.value | some t in tools.targets; t.kind == "url"; not t.ambiguous == true} if {
	is_object(input.tool)
} else := {resources.url} if {
	resources.url
	not input.resource.ambiguous == true
} else := set()

addresses := {t.value | some t in tools.targets; t.kind == "address"; t.value != ""}

subject := input.tool.name if is_string(input.tool.name)

else := "the resource"

# The engine removed userinfo and lower-cased scheme and host, so the authority is host[:port]. String
# builtins rather than a regex: regorus compiles a regex pattern on every call, which would be most of the
# cost of a decision. The host check is strict on purpose: text the engine could not parse as a URL (and
# IPv6 literals) yields no host and is denied.
scheme_of(url) := substring(url, 0, i) if {
	i := indexof(url, "://")
	i > 0
}

host_of(url) := host if {
	i := indexof(url, "://")
	i > 0
	authority := split(split(split(substring(url, i + 3, -1), "/")[0], "?")[0], "#")[0]
	host_and_port := split(authority, ":")
	count(host_and_port) <= 2
	host := host_and_port[0]
	host != ""
	trim(host, "abcdefghijklmnopqrstuvwxyz0123456789.-") == ""
}

schemes := {url: scheme | some url in urls; scheme := scheme_of(url)}

hosts := {url: host | some url in urls; host := host_of(url)}

# "*.example.com" matches any subdomain of example.com, not example.com itself.
host_matches(host, pattern) if host == lower(pattern)

host_matches(host, pattern) if {
	startswith(pattern, "*.")
	endswith(host, lower(trim_prefix(pattern, "*")))
}

allowed_hosts := {host |
	some host in hosts
	some pattern in cfg.allowed_hosts
	host_matches(host, pattern)
}

allow contains {
	"policy_id": "toolgate.network.allowed_host",
	"reason": sprintf("%s is on the network allow-list", [host]),
} if {
	some url, host in hosts
	host in allowed_hosts
	schemes[url] in cfg.allowed_schemes
}

deny contains {
	"policy_id": "toolgate.network.host_not_allowed",
	"reason": sprintf("%s is not on the network allow-list", [host]),
} if {
	some host in hosts
	not host in allowed_hosts
}

deny contains {
	"policy_id": "toolgate.network.scheme",
	"reason": sprintf("%s:// is not an allowed scheme", [scheme]),
} if {
	some scheme in schemes
	not scheme in cfg.allowed_schemes
}

deny contains {
	"policy_id": "toolgate.network.no_target",
	"reason": sprintf("%s has no URL toolgate can judge", [subject]),
} if {
	some url in urls
	not hosts[url]
}

deny contains {
	"policy_id": "toolgate.network.no_target",
	"reason": sprintf("%s has no URL toolgate can judge", [subject]),
} if {
	input.tool.action == "network"
	count(urls) == 0
	count(ambiguous_urls) == 0
}

# The reason does not quote the URL: its userinfo may hold a credential.
deny contains {
	"policy_id": "toolgate.network.ambiguous_url",
	"reason": sprintf("%s names a URL that URL parsers read as different hosts (a backslash, whitespace, a second @ or an encoded host)", [subject]),
} if {
	count(ambiguous_urls) > 0
}

# One escalation naming every recipient: the reviewer approves the message, not the first address of it.
escalate contains {
	"policy_id": "toolgate.network.send_review",
	"reason": sprintf("sending to %s needs human review", [concat(", ", sort(addresses))]),
} if {
	count(addresses) > 0
}

escalate contains {
	"policy_id": "toolgate.network.send_review",
	"reason": "sending to an unnamed recipient needs human review",
} if {
	input.tool.action == "send"
	count(addresses) == 0
}
