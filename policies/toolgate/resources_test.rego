package toolgate.resources_test

import rego.v1

import data.toolgate.fixtures

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

read(uri, target) := decide(fixtures.resource_request("resources/read", uri, target))

test_a_file_under_a_root_is_readable if {
	d := read("file:///workspace/notes.md", "/workspace/notes.md")
	d.result == "allow"
	d.policy_id == "toolgate.filesystem.read"
	d.reason == "reading /workspace/notes.md under an allowed root"
}

test_system_and_secret_files_are_denied if {
	read("file:///etc/passwd", "/etc/passwd").policy_id == "toolgate.filesystem.system_path"
	read("FILE:///home/u/.ssh/id_rsa", "/home/u/.ssh/id_rsa").policy_id == "toolgate.filesystem.secret_path"
	read("file:///opt/app/x", "/opt/app/x").policy_id == "toolgate.filesystem.outside_roots"
}

test_a_traversal_is_judged_where_it_lands if {
	# file:///workspace/../etc/shadow as the engine normalises it
	read("file:///workspace/../etc/shadow", "/etc/shadow").policy_id == "toolgate.filesystem.system_path"
}

test_subscribe_and_unsubscribe_are_judged_like_reads if {
	every method in ["resources/subscribe", "resources/unsubscribe"] {
		decide(fixtures.resource_request(method, "file:///workspace/a", "/workspace/a")).result == "allow"
		decide(fixtures.resource_request(method, "file:///etc/passwd", "/etc/passwd")).result == "deny"
	}
}

test_http_resources_follow_the_network_rules if {
	d := read("https://docs.rs/x", "https://docs.rs/x")
	d.result == "allow"
	d.policy_id == "toolgate.network.allowed_host"
	e := read("https://evil.net/x", "https://evil.net/x")
	e.policy_id == "toolgate.network.host_not_allowed"
	f := read("https://[::1]/x", "https://[::1]/x")
	f.policy_id == "toolgate.network.no_target"
	f.reason == "the resource has no URL toolgate can judge"
}

test_listing_https_as_a_resource_scheme_does_not_skip_the_host_check if {
	d := data.toolgate.decision with input as fixtures.resource_request("resources/read", "https://evil.net/x", "https://evil.net/x")
		with data.toolgate_config.resources.allowed_schemes as ["demo", "https"]
	d.policy_id == "toolgate.network.host_not_allowed"
}

test_a_listed_scheme_is_allowed if {
	d := read("demo://greeting", "demo://greeting")
	d.result == "allow"
	d.policy_id == "toolgate.resources.allowed_scheme"
	d.reason == "demo: resources are allowed"
}

test_other_schemes_are_denied if {
	d := read("ftp://example.com/x", "ftp://example.com/x")
	d.policy_id == "toolgate.resources.scheme"
	d.reason == "ftp: is not an allowed resource scheme"
	read("myapp://state", "myapp://state").policy_id == "toolgate.resources.scheme"
}

test_the_listed_schemes_come_from_data if {
	d := data.toolgate.decision with input as fixtures.resource_request("resources/read", "myapp://state", "myapp://state")
		with data.toolgate_config.resources.allowed_schemes as ["myapp"]
	d.result == "allow"
}

test_a_resource_without_a_uri_is_denied if {
	d := read("no-scheme", "no-scheme")
	d.policy_id == "toolgate.resources.no_target"
	d.reason == "the resource has no URI toolgate can judge"
	decide(object.union(fixtures.request("resources/read", {}), {"resource": null})).policy_id == "toolgate.resources.no_target"
	read("file:///workspace/a", null).policy_id == "toolgate.resources.no_target"
}

test_listed_resources_are_hidden_when_a_read_would_be_denied if {
	data.toolgate.visible with input as fixtures.listed_resource("resources/list", "file:///workspace/a", "/workspace/a")
	data.toolgate.visible with input as fixtures.listed_resource("resources/list", "demo://greeting", "demo://greeting")
	not data.toolgate.visible with input as fixtures.listed_resource("resources/list", "file:///etc/passwd", "/etc/passwd")
	not data.toolgate.visible with input as fixtures.listed_resource("resources/list", "https://evil.net/", "https://evil.net/")
	not data.toolgate.visible with input as fixtures.listed_resource("resources/list", "myapp://x", "myapp://x")
}

template(uri, target) := fixtures.listed_resource("resources/templates/list", uri, target)

test_templates_are_hidden_when_their_fixed_part_is_a_system_or_secret_path if {
	not data.toolgate.visible with input as template("file:///etc/{name}", "/etc/{name}")
	not data.toolgate.visible with input as template("file:///proc/{pid}/environ", "/proc/{pid}/environ")
	not data.toolgate.visible with input as template("file:///home/u/.ssh/{key}", "/home/u/.ssh/{key}")
	data.toolgate.resources.path == "/home/u/.ssh" with input as template("file:///home/u/.ssh/{key}", "/home/u/.ssh/{key}")
}

test_templates_that_can_expand_to_allowed_uris_stay_visible if {
	data.toolgate.visible with input as template("file:///workspace/{path}", "/workspace/{path}")
	# "/etcetera" is not "/etc": the fixed part is cut back to its last whole directory, "/"
	data.toolgate.visible with input as template("file:///etc{suffix}", "/etc{suffix}")
	data.toolgate.resources.path == "/" with input as template("file:///etc{suffix}", "/etc{suffix}")
	data.toolgate.visible with input as template("file:///{+path}", "/{+path}")
	data.toolgate.visible with input as template("https://api.example.com/{id}", "https://api.example.com/{id}")
	data.toolgate.visible with input as template("demo://items/{id}", "demo://items/{id}")
}

test_templates_of_a_refused_scheme_are_hidden if {
	not data.toolgate.visible with input as template("myapp://{id}", "myapp://{id}")
}

test_rule_sets_are_only_about_resources if {
	count(data.toolgate.resources.deny) == 0 with input as fixtures.call("read_file", "read", [fixtures.path("/workspace/a")])
	count(data.toolgate.resources.deny) == 0 with input as fixtures.prompt_request("summarise")
}

test_a_template_without_a_normalised_target_is_judged_on_its_uri if {
	not data.toolgate.visible with input as template("file:///etc/{name}", null)
	data.toolgate.visible with input as template("file:///workspace/{name}", null)
	data.toolgate.visible with input as template("demo://{id}", null)
}
