package toolgate.network

import rego.v1

net_call(action, target) := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {}},
	"tool": {"name": "fetch_url", "arguments": {}, "action": action, "target": target},
	"dlp": {"findings": []},
}

decide(target) := d if {
	d := data.toolgate.decision with input as net_call("network", target)
}

test_an_exact_host_on_the_allow_list_is_allowed if {
	d := decide("https://docs.rs/regorus/latest")
	d.result == "allow"
	d.policy_id == "toolgate.network.allowed_host"
	d.reason == "docs.rs is on the network allow-list"
}

test_a_wildcard_matches_subdomains if {
	decide("https://api.example.com/v1?q=1").result == "allow"
	decide("https://a.b.example.com/").result == "allow"
}

test_a_wildcard_entry_does_not_need_to_cover_the_apex if {
	# example.com is listed on its own as well; without it the apex would be denied
	d := data.toolgate.decision with input as net_call("network", "https://example.com/")
		with data.toolgate_config.network.allowed_hosts as ["*.example.com"]
	d.policy_id == "toolgate.network.host_not_allowed"
}

test_a_port_does_not_change_the_host if {
	decide("http://example.com:8080/x").result == "allow"
}

test_lookalike_hosts_are_denied if {
	every url in ["https://evilexample.com/", "https://example.com.evil.net/", "https://docs.rs.evil.net/"] {
		d := decide(url)
		d.result == "deny"
		d.policy_id == "toolgate.network.host_not_allowed"
	}
}

test_the_reason_names_the_host_not_the_query if {
	d := decide("https://evil.net/collect?token=abc")
	d.reason == "evil.net is not on the network allow-list"
}

test_other_schemes_are_denied if {
	d := decide("ftp://example.com/file")
	d.result == "deny"
	d.policy_id == "toolgate.network.scheme"
}

test_text_that_is_not_a_url_is_denied if {
	every target in ["example.com/path", "http://exa mple.com/", "", "https://[::1]:8080/", "https://a:1:2/"] {
		decide(target).policy_id == "toolgate.network.no_target"
	}
	d := data.toolgate.decision with input as net_call("network", null)
	d.policy_id == "toolgate.network.no_target"
}

test_sending_escalates_and_names_the_recipient if {
	d := data.toolgate.decision with input as net_call("send", "ops@example.com")
	d.result == "escalate"
	d.policy_id == "toolgate.network.send_review"
	d.reason == "sending to ops@example.com needs human review"
}

test_sending_without_a_recipient_still_escalates if {
	d := data.toolgate.decision with input as net_call("send", null)
	d.result == "escalate"
	d.reason == "sending to an unnamed recipient needs human review"
}
