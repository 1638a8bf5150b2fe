package toolgate.results_test

import rego.v1

import data.toolgate.fixtures

judge(doc) := d if {
	d := data.toolgate.result_decision with input as doc
}

test_a_clean_result_passes if {
	d := judge(fixtures.answer([], []))
	d == {"result": "pass", "policy_id": "toolgate.results.clean", "reason": "nothing to block or redact in the result"}
}

test_a_result_with_findings_is_redacted if {
	d := judge(fixtures.answer([{"type": "aws_access_key", "severity": "critical", "path": "/content/0/text", "count": 1}], []))
	d.result == "redact"
	d.policy_id == "toolgate.results.dlp"
	d.reason == "the result contains aws_access_key at /content/0/text"
}

test_a_blocking_injection_marker_blocks if {
	every marker in ["hidden_instruction", "ignore_instructions", "exfiltration"] {
		d := judge(fixtures.answer([], [marker]))
		d.result == "block"
		d.policy_id == "toolgate.results.injection"
		d.reason == sprintf("the result carries %s", [marker])
	}
}

test_blocking_beats_redacting if {
	d := judge(fixtures.answer([fixtures.finding("jwt", "high")], ["unicode_tag", "ignore_instructions", "exfiltration"]))
	d.result == "block"
	d.reason == "the result carries exfiltration, ignore_instructions"
}

test_other_markers_do_not_block if {
	judge(fixtures.answer([], ["unicode_tag", "invisible_text", "credential_request"])).result == "pass"
	judge(fixtures.answer([fixtures.finding("jwt", "high")], ["unicode_tag"])).result == "redact"
}

test_the_blocking_markers_come_from_data if {
	d := data.toolgate.result_decision with input as fixtures.answer([], ["unicode_tag"])
		with data.toolgate_config.results.block_injection as ["unicode_tag"]
	d.result == "block"
}

test_an_answer_without_a_response_passes if {
	judge(fixtures.base).result == "pass"
}
