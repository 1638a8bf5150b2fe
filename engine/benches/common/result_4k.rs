//! The ~4 KB MCP result the DLP benchmarks scan: shared by `engine/benches/dlp.rs` and the workspace's
//! `bench/benches/engine.rs` (included by path), so both measure the same text.

use serde_json::{json, Value};

/// A realistic ~4 KB `tools/call` result: a text block of prose and a `structuredContent` object, as a
/// search or issue-tracker tool returns; with `secrets`, an AWS key id in the prose and an e-mail address
/// in the structured part.
pub fn mcp_result_4k(secrets: bool) -> Value {
    let prose = "The deployment pipeline ran for 14 minutes and finished at 09:42 UTC. Three services were \
rolled out: billing-api (v2.31.0), ledger-worker (v1.8.4) and the notification gateway. Error rates stayed \
below 0.2% during the rollout, and p99 latency for /v1/invoices moved from 182 ms to 176 ms. The canary in \
eu-west-1 was promoted after 10 minutes without alerts. One migration (2026_11_20_add_invoice_index) took \
41 seconds on the primary; replicas caught up within 3 seconds. Follow-ups: see issue #4512 for the flaky \
integration test in ledger-worker, and PR #4530, which raises the connection pool from 20 to 32. ";
    let mut text = String::new();
    if secrets {
        text.push_str("Credentials used: AKIAIOSFODNN7EXAMPLE (rotated after the run). ");
    }
    while text.len() < 3000 {
        text.push_str(prose);
    }
    text.truncate(3000);
    let owner = if secrets {
        "alice.smith@example.com"
    } else {
        "alice.smith"
    };
    let issues: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "id": 4512 + i,
                "title": format!("Flaky integration test in ledger-worker, shard {i}"),
                "state": if i % 2 == 0 { "open" } else { "closed" },
                "labels": ["ci", "ledger"],
                "updated_at": "2026-11-22T20:15:00Z"
            })
        })
        .collect();
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": {
            "pipeline": {"id": 88231, "status": "succeeded", "duration_seconds": 842, "owner": owner},
            "services": [
                {"name": "billing-api", "version": "2.31.0", "replicas": 6},
                {"name": "ledger-worker", "version": "1.8.4", "replicas": 4},
                {"name": "notification-gateway", "version": "0.19.2", "replicas": 2}
            ],
            "issues": issues
        },
        "isError": false
    })
}
