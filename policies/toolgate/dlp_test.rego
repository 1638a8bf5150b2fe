package toolgate.dlp_test

import rego.v1

import data.toolgate.fixtures

read_with(findings) := fixtures.with_findings(fixtures.call("read_file", "read", [fixtures.path("/workspace/a.txt")]), findings)

decide(doc) := d if {
	d := data.toolgate.decision with input as doc
}

test_a_critical_finding_denies_an_otherwise_allowed_call if {
	d := decide(read_with([fixtures.finding("aws_access_key", "critical")]))
	d.result == "deny"
	d.policy_id == "toolgate.dlp.critical"
	d.reason == "the arguments contain aws_access_key at /content"
}

test_a_high_finding_escalates_an_otherwise_allowed_call if {
	d := decide(read_with([fixtures.finding("credit_card", "high")]))
	d.result == "escalate"
	d.policy_id == "toolgate.dlp.high"
	d.reason == "the arguments may contain credit_card at /content; a human must review"
}

test_critical_beats_high if {
	decide(read_with([fixtures.finding("jwt", "high"), fixtures.finding("private_key", "critical")])).policy_id == "toolgate.dlp.critical"
}

test_lower_severities_do_not_change_the_decision if {
	decide(read_with([fixtures.finding("email", "medium"), fixtures.finding("x", "low")])).result == "allow"
}

test_a_deny_elsewhere_beats_a_dlp_escalation if {
	doc := fixtures.with_findings(fixtures.call("read_file", "read", [fixtures.path("/etc/passwd")]), [fixtures.finding("us_ssn", "high")])
	decide(doc).policy_id == "toolgate.filesystem.system_path"
}

test_the_severities_come_from_data if {
	d := data.toolgate.decision with input as read_with([fixtures.finding("email", "medium")])
		with data.toolgate_config.dlp.deny_severities as ["critical", "medium"]
	d.policy_id == "toolgate.dlp.critical"
}

# Every judged method's params are scanned; the findings weigh the same whatever the method.
test_findings_apply_to_every_method if {
	critical := [fixtures.finding("aws_access_key", "critical")]
	high := [fixtures.finding("credit_card", "high")]
	every doc in [
		fixtures.prompt_request("summarise"),
		fixtures.resource_request("resources/read", "file:///workspace/a", "/workspace/a"),
		fixtures.request("completion/complete", {}),
		fixtures.request("logging/setLevel", {}),
		fixtures.request("tasks/get", {}),
		fixtures.server_request("elicitation/create"),
	] {
		d := decide(fixtures.with_findings(doc, critical))
		d.policy_id == "toolgate.dlp.critical"
		d.reason == "the params contain aws_access_key at /content"
		decide(fixtures.with_findings(doc, high)).policy_id == "toolgate.dlp.high"
	}
}

test_a_sampling_request_with_a_secret_is_denied if {
	doc := fixtures.with_findings(fixtures.server_request("sampling/createMessage"), [fixtures.finding("private_key", "critical")])
	decide(doc).policy_id == "toolgate.dlp.critical"
}

test_the_reason_never_quotes_the_value if {
	doc := read_with([{"type": "aws_access_key", "severity": "critical", "path": "/content", "count": 2}])
	d := decide(doc)
	not contains(d.reason, "AKIA")
	d.reason == "the arguments contain aws_access_key at /content"
}
