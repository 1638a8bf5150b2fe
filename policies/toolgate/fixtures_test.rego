# Input documents shaped as the proxy builds them (every member present, null when it does not apply),
# for the tests of every package. Targets are what the engine hands over: already normalised.
package toolgate.fixtures

import rego.v1

base := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {}, "prompt_hash": null, "run_id": null},
	"session": {"id": "s1", "calls": 3, "started_at": "2026-11-22T20:00:00Z"},
	"request": {"method": "tools/call", "direction": "client_to_server", "upstream": "demo", "protocol_version": "2025-11-25"},
	"tool": null,
	"resource": null,
	"prompt": null,
	"params": {},
	"dlp": {"findings": []},
	"behavior": {"score": 0.1, "zscore": 0.2, "new_tool": false},
	"now": "2026-11-22T20:15:00Z",
}

path(value) := {"kind": "path", "key": "/path", "value": value}

url(value) := {"kind": "url", "key": "/url", "value": value}

# A URL the engine marks as read differently by URL parsers (its value is the WHATWG reading).
ambiguous_url(value) := {"kind": "url", "key": "/url", "value": value, "ambiguous": true}

ambiguous_path(value) := {"kind": "path", "key": "/path", "value": value, "ambiguous": true}

command(value) := {"kind": "command", "key": "/command", "value": value}

address(value) := {"kind": "address", "key": "/to", "value": value}

pinned := {"hash": "0f1e", "status": "pinned", "poisoning": []}

first_value(targets) := targets[0].value if count(targets) > 0

else := null

# A tools/call of a pinned tool naming these targets.
call(name, action, targets) := object.union(base, {"tool": {
	"name": name,
	"arguments": {},
	"action": action,
	"target": first_value(targets),
	"targets": targets,
	"targets_truncated": false,
	"ambiguous_keys": [],
	"definition": pinned,
}})

# Keys the engine found folding to the same name as another key of their object, with another value.
with_ambiguous_keys(doc, pointers) := object.union(doc, {"tool": {"ambiguous_keys": pointers}})

# A tools/call as an engine without the targets list describes it: one `target`, no `targets`.
single_target_call(name, action, target) := object.union(base, {"tool": {
	"name": name,
	"arguments": {},
	"action": action,
	"target": target,
}})

with_roles(doc, roles) := object.union(doc, {"agent": {"roles": roles}})

with_findings(doc, findings) := object.union(doc, {"dlp": {"findings": findings}})

with_definition(doc, definition) := object.union(doc, {"tool": {"definition": definition}})

finding(kind, severity) := {"type": kind, "severity": severity, "path": "/content", "count": 1}

# Any other client request, with its params.
request(method, params) := object.union(base, {"request": {"method": method}, "params": params})

resource_request(method, uri, target) := object.union(base, {
	"request": {"method": method},
	"resource": {"uri": uri, "target": target},
	"params": {"uri": uri},
})

prompt_request(name) := object.union(base, {
	"request": {"method": "prompts/get"},
	"prompt": {"name": name, "arguments": {}},
	"params": {"name": name},
})

# A request an upstream sends to the agent.
server_request(method) := object.union(base, {"request": {"method": method, "direction": "server_to_client"}})

# One item of a list method, as `visible` sees it.
listed_tool(name, action, definition) := object.union(base, {
	"request": {"method": "tools/list"},
	"tool": {"name": name, "arguments": null, "action": action, "target": null, "targets": [], "targets_truncated": false, "definition": definition},
})

listed_resource(method, uri, target) := object.union(base, {
	"request": {"method": method},
	"resource": {"uri": uri, "target": target},
})

listed_prompt(name) := object.union(base, {
	"request": {"method": "prompts/list"},
	"prompt": {"name": name, "arguments": null},
})

# An upstream's answer, as result_decision sees it.
answer(findings, injection) := object.union(base, {
	"tool": {"name": "read_file", "arguments": {}, "action": "read", "target": "/workspace/a", "targets": [path("/workspace/a")], "targets_truncated": false, "definition": pinned},
	"response": {"is_error": false, "dlp": {"findings": findings}, "injection": injection},
})
