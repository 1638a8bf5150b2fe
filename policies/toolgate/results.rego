# Answers of an upstream, judged before the agent sees them (data.toolgate.result_decision): a result
# carrying a blocking injection marker is blocked, one with DLP findings is redacted, any other passes.
package toolgate.results

import rego.v1

import data.toolgate.dlp

cfg := data.toolgate_config.results

markers := {m | some m in input.response.injection; m in cfg.block_injection}

findings := input.response.dlp.findings if {
	is_array(input.response.dlp.findings)
	count(input.response.dlp.findings) > 0
}

# The reasons name marker names, finding types and JSON pointers into the result: never the result's text.
decision := {
	"result": "block",
	"policy_id": "toolgate.results.injection",
	"reason": sprintf("the result carries %s", [concat(", ", sort(markers))]),
} if {
	count(markers) > 0
} else := {
	"result": "redact",
	"policy_id": "toolgate.results.dlp",
	"reason": sprintf("the result contains %s", [dlp.describe(findings)]),
} if {
	findings
} else := {
	"result": "pass",
	"policy_id": "toolgate.results.clean",
	"reason": "nothing to block or redact in the result",
}
