# resources/read, resources/subscribe and resources/unsubscribe, and the items of resources/list and
# resources/templates/list: a file:// resource is judged as a path (package filesystem), an http(s)
# resource as a URL (package network), any other scheme by the allow-list of schemes below.
package toolgate.resources

import rego.v1

cfg := data.toolgate_config.resources

# resources/read, subscribe, unsubscribe, and the items of resources/list and resources/templates/list.
applies if startswith(input.request.method, "resources/")

template if input.request.method == "resources/templates/list"

uri := input.resource.uri if is_string(input.resource.uri)

# The engine's normalised form: the absolute path, `.`/`..` resolved, for file:// URIs; the normalised URI
# otherwise.
target := input.resource.target if is_string(input.resource.target)

scheme := lower(substring(uri, 0, i)) if {
	i := indexof(uri, ":")
	i > 0
}

# How the resource is judged. Network schemes go to the network rules before the scheme allow-list is
# consulted, so listing "https" there cannot skip the host allow-list.
kind := "path" if {
	scheme == "file"
} else := "url" if {
	scheme in data.toolgate_config.network.allowed_schemes
} else := "listed" if {
	scheme in cfg.allowed_schemes
}

# A template is judged by the directory its fixed part (before the first `{`) lies in: every URI it expands
# to is below that directory. The normalised target when the engine gives one, the URI's path otherwise.
template_path := target if {
	template
} else := substring(uri, 7, -1) if {
	template
	startswith(lower(uri), "file://")
}

path := target if {
	kind == "path"
	not template
} else := dir if {
	kind == "path"
	segments := split(split(template_path, "{")[0], "/")
	dir := concat("", ["/", trim_left(concat("/", array.slice(segments, 0, count(segments) - 1)), "/")])
}

url := target if {
	kind == "url"
	not template
}

deny contains {
	"policy_id": "toolgate.resources.no_target",
	"reason": "the resource has no URI toolgate can judge",
} if {
	applies
	not scheme
}

deny contains {
	"policy_id": "toolgate.resources.no_target",
	"reason": "the resource has no URI toolgate can judge",
} if {
	applies
	not template
	not target
}

deny contains {
	"policy_id": "toolgate.resources.scheme",
	"reason": sprintf("%s: is not an allowed resource scheme", [scheme]),
} if {
	scheme
	not kind
}

allow contains {
	"policy_id": "toolgate.resources.allowed_scheme",
	"reason": sprintf("%s: resources are allowed", [scheme]),
} if {
	kind == "listed"
}
