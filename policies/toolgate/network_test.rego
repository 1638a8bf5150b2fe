package toolgate.network_test

import rego.v1

import data.toolgate.fixtures

net_call(targets) := fixtures.call("fetch_url", "network", targets)

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

fetch(url) := decide(net_call([fixtures.url(url)]))

test_an_exact_host_on_the_allow_list_is_allowed if {
	d := fetch("https://docs.rs/regorus/latest")
	d.result == "allow"
	d.policy_id == "toolgate.network.allowed_host"
	d.reason == "docs.rs is on the network allow-list"
}

test_a_wildcard_matches_subdomains if {
	fetch("https://api.example.com/v1?q=1").result == "allow"
	fetch("https://a.b.example.com/").result == "allow"
}

test_a_wildcard_entry_does_not_need_to_cover_the_apex if {
	# example.com is listed on its own as well; without it the apex would be denied
	d := data.toolgate.decision with input as net_call([fixtures.url("https://example.com/")])
		with data.toolgate_config.network.allowed_hosts as ["*.example.com"]
	d.policy_id == "toolgate.network.host_not_allowed"
}

test_a_port_does_not_change_the_host if {
	fetch("http://example.com:8080/x").result == "allow"
}

test_lookalike_hosts_are_denied if {
	every url in ["https://evilexample.com/", "https://example.com.evil.net/", "https://docs.rs.evil.net/"] {
		d := fetch(url)
		d.result == "deny"
		d.policy_id == "toolgate.network.host_not_allowed"
	}
}

test_the_reason_names_the_host_not_the_query if {
	fetch("https://evil.net/collect?token=abc").reason == "evil.net is not on the network allow-list"
}

test_other_schemes_are_denied if {
	d := fetch("ftp://example.com/file")
	d.result == "deny"
	d.policy_id == "toolgate.network.scheme"
	d.reason == "ftp:// is not an allowed scheme"
}

test_text_that_is_not_a_url_is_denied if {
	every target in ["example.com/path", "http://exa mple.com/", "", "https://[::1]:8080/", "https://a:1:2/"] {
		d := fetch(target)
		d.policy_id == "toolgate.network.no_target"
		d.reason == "fetch_url has no URL toolgate can judge"
	}
}

test_a_fetch_naming_no_url_is_denied if {
	decide(net_call([])).policy_id == "toolgate.network.no_target"
	decide(fixtures.single_target_call("fetch_url", "network", null)).policy_id == "toolgate.network.no_target"
}

test_a_fetch_is_allowed_only_when_every_url_is if {
	decide(net_call([fixtures.url("https://docs.rs/a"), fixtures.url("https://crates.io/b")])).result == "allow"
	d := decide(net_call([fixtures.url("https://docs.rs/a"), fixtures.url("https://evil.net/b")]))
	d.policy_id == "toolgate.network.host_not_allowed"
	d.reason == "evil.net is not on the network allow-list"
}

test_a_url_named_by_a_tool_of_another_action_is_judged_too if {
	ok := fixtures.call("read_file", "read", [fixtures.path("/workspace/a"), fixtures.url("https://docs.rs/")])
	decide(ok).result == "allow"
	bad := fixtures.call("read_file", "read", [fixtures.path("/workspace/a"), fixtures.url("https://evil.net/")])
	decide(bad).policy_id == "toolgate.network.host_not_allowed"
}

test_an_engine_without_targets_is_judged_on_its_single_target if {
	decide(fixtures.single_target_call("fetch_url", "network", "https://docs.rs/")).result == "allow"
	decide(fixtures.single_target_call("fetch_url", "network", "https://evil.net/")).result == "deny"
}

test_sending_escalates_and_names_the_recipient if {
	d := decide(fixtures.call("send_email", "send", [fixtures.address("ops@example.com")]))
	d.result == "escalate"
	d.policy_id == "toolgate.network.send_review"
	d.reason == "sending to ops@example.com needs human review"
}

test_every_recipient_is_named_to_the_reviewer if {
	doc := fixtures.call("send_email", "send", [fixtures.address("boss@example.com"), fixtures.address("outsider@evil.net")])
	d := decide(doc)
	d.policy_id == "toolgate.network.send_review"
	d.reason == "sending to boss@example.com, outsider@evil.net needs human review"
	count(data.toolgate.network.escalate) == 1 with input as doc
}

test_a_url_parsers_disagree_on_is_denied_whatever_host_the_engine_read if {
	# http://docs.rs\@evil.net/ as the engine reads it: docs.rs, on the allow-list
	d := decide(net_call([fixtures.ambiguous_url("http://docs.rs/@evil.net/")]))
	d.result == "deny"
	d.policy_id == "toolgate.network.ambiguous_url"
	d.reason == "fetch_url names a URL that URL parsers read as different hosts (a backslash, whitespace, a second @ or an encoded host)"
	count(data.toolgate.network.allow) == 0 with input as net_call([fixtures.ambiguous_url("http://docs.rs/@evil.net/")])
}

test_an_ambiguous_url_beside_a_good_one_is_still_denied if {
	d := decide(net_call([fixtures.url("https://docs.rs/a"), fixtures.ambiguous_url("http://docs.rs/@evil.net/")]))
	d.policy_id == "toolgate.network.ambiguous_url"
}

test_a_url_marked_not_ambiguous_is_judged_by_its_host if {
	d := decide(net_call([object.union(fixtures.url("https://docs.rs/a"), {"ambiguous": false})]))
	d.policy_id == "toolgate.network.allowed_host"
}

test_sending_without_a_recipient_still_escalates if {
	d := decide(fixtures.call("send_email", "send", []))
	d.result == "escalate"
	d.reason == "sending to an unnamed recipient needs human review"
	d2 := decide(fixtures.single_target_call("send_email", "send", null))
	d2.reason == "sending to an unnamed recipient needs human review"
}

test_an_address_named_by_another_tool_is_reviewed if {
	d := decide(fixtures.call("echo", "unknown", [fixtures.address("ops@example.com")]))
	d.result == "escalate"
	d.policy_id == "toolgate.network.send_review"
}

test_a_message_to_a_webhook_is_denied_when_its_host_is_not_allowed if {
	d := decide(fixtures.call("post_message", "send", [fixtures.url("https://hooks.evil.net/x")]))
	d.policy_id == "toolgate.network.host_not_allowed"
}

test_rule_sets_are_only_about_urls_and_addresses if {
	count(data.toolgate.network.deny) == 0 with input as fixtures.call("read_file", "read", [fixtures.path("/etc/passwd")])
	count(data.toolgate.network.escalate) == 0 with input as fixtures.call("write_file", "write", [fixtures.path("/workspace/a")])
}

test_a_resource_uri_parsers_disagree_on_is_denied if {
	uri := "http://docs.rs\\@evil.net/"
	doc := fixtures.resource_request("resources/read", uri, "http://docs.rs/@evil.net/")
	d := decide(object.union(doc, {"resource": {"ambiguous": true}}))
	d.result == "deny"
	d.policy_id == "toolgate.network.ambiguous_url"
	d.reason == "the resource names a URL that URL parsers read as different hosts (a backslash, whitespace, a second @ or an encoded host)"
	plain := decide(object.union(fixtures.resource_request("resources/read", "https://docs.rs/x", "https://docs.rs/x"), {"resource": {"ambiguous": false}}))
	plain.policy_id == "toolgate.network.allowed_host"
}
