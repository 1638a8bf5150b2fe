package toolgate.dlp

import rego.v1

read_with(findings) := {
	"agent": {"id": "a1", "tenant_id": "t1", "roles": ["dev"], "claims": {}},
	"tool": {"name": "write_note", "arguments": {}, "action": "read", "target": "/workspace/a.txt"},
	"dlp": {"findings": findings},
}

finding(kind, severity) := {"type": kind, "severity": severity, "path": "/content", "count": 1}

test_a_critical_finding_denies_an_otherwise_allowed_call if {
	d := data.toolgate.decision with input as read_with([finding("aws_access_key", "critical")])
	d.result == "deny"
	d.policy_id == "toolgate.dlp.critical"
	d.reason == "the arguments contain aws_access_key at /content"
}

test_a_high_finding_escalates_an_otherwise_allowed_call if {
	d := data.toolgate.decision with input as read_with([finding("credit_card", "high")])
	d.result == "escalate"
	d.policy_id == "toolgate.dlp.high"
}

test_critical_beats_high if {
	d := data.toolgate.decision with input as read_with([finding("jwt", "high"), finding("private_key", "critical")])
	d.policy_id == "toolgate.dlp.critical"
}

test_lower_severities_do_not_change_the_decision if {
	d := data.toolgate.decision with input as read_with([finding("email", "medium"), finding("x", "low")])
	d.result == "allow"
}

test_a_deny_elsewhere_beats_a_dlp_escalation if {
	i := object.union(read_with([finding("us_ssn", "high")]), {"tool": {"target": "/etc/passwd"}})
	d := data.toolgate.decision with input as i
	d.policy_id == "toolgate.filesystem.system_path"
}

test_the_severities_come_from_data if {
	d := data.toolgate.decision with input as read_with([finding("email", "medium")])
		with data.toolgate_config.dlp.deny_severities as ["critical", "medium"]
	d.policy_id == "toolgate.dlp.critical"
}
