# Findings of the DLP scanner over the arguments (types, severities and JSON pointers; never values).
package toolgate.dlp

import rego.v1

cfg := data.toolgate_config.dlp

blocking := [f | some f in input.dlp.findings; f.severity in cfg.deny_severities]

suspicious := [f | some f in input.dlp.findings; f.severity in cfg.escalate_severities]

describe(findings) := concat(", ", [sprintf("%s at %s", [f.type, f.path]) | some f in findings])

deny contains {
	"policy_id": "toolgate.dlp.critical",
	"reason": sprintf("the arguments contain %s", [describe(blocking)]),
} if {
	count(blocking) > 0
}

escalate contains {
	"policy_id": "toolgate.dlp.high",
	"reason": sprintf("the arguments may contain %s; a human must review", [describe(suspicious)]),
} if {
	count(suspicious) > 0
}
