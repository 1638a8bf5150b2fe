# Findings of the DLP scanner over the request's params, whatever the method: tool arguments, prompt
# arguments, completion values, sampling messages (types, severities and JSON pointers; never values).
package toolgate.dlp

import rego.v1

cfg := data.toolgate_config.dlp

blocking := [f | some f in input.dlp.findings; f.severity in cfg.deny_severities]

suspicious := [f | some f in input.dlp.findings; f.severity in cfg.escalate_severities]

describe(findings) := concat(", ", [sprintf("%s at %s", [f.type, f.path]) | some f in findings])

scanned := "the arguments" if input.request.method == "tools/call"

else := "the params"

deny contains {
	"policy_id": "toolgate.dlp.critical",
	"reason": sprintf("%s contain %s", [scanned, describe(blocking)]),
} if {
	count(blocking) > 0
}

escalate contains {
	"policy_id": "toolgate.dlp.high",
	"reason": sprintf("%s may contain %s; a human must review", [scanned, describe(suspicious)]),
} if {
	count(suspicious) > 0
}
