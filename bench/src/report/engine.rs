//! The engine and audit writer sections: criterion medians, per-call percentiles, writer and verify throughput.

use std::fmt::Write as _;

use super::{us, Results};

impl Results {
    pub(super) fn render_engine(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Engine (criterion medians; `target/criterion` has the full reports)\n"
        );
        let _ = writeln!(out, "| benchmark | median | |\n|---|---|---|");
        let rows = [
            (
                "policy/decide_vm",
                "decision of the shipped policy, typical call: input built as a regorus Value + VM",
            ),
            ("policy/input_value", "of which: building the input Value"),
            (
                "policy/decide_interpreter",
                "the same decision on the interpreter (what `policy eval` uses)",
            ),
            ("dlp/clean_1KB", "DLP, 1 KB, no findings"),
            ("dlp/findings_1KB", "DLP, 1 KB, with findings"),
            ("dlp/clean_4KB", "DLP, 4 KB, no findings"),
            ("dlp/findings_4KB", "DLP, 4 KB, with findings"),
            ("dlp/clean_64KB", "DLP, 64 KB, no findings"),
            ("dlp/findings_64KB", "DLP, 64 KB, with findings"),
            (
                "chain/hash_event",
                "canonicalise (JCS) + SHA-256 one audit event",
            ),
            (
                "chain/input_hash",
                "`input_hash` of the typical call's arguments",
            ),
            ("chain/seal_100k", "seal 100 000 events"),
            (
                "chain/verify_100k",
                "verify 100 000 events (engine `Verifier`, in memory)",
            ),
            (
                "behaviour/baseline_observe_judged",
                "behaviour: one call scored and its verdict added, baseline arithmetic alone",
            ),
            (
                "behaviour/observe_judged",
                "behaviour: one call scored and its verdict added as the pipeline does (`Behaviour::observe` + `judged`, 1 000 agents)",
            ),
        ];
        for (id, what) in rows {
            match self.crit(id) {
                Some(ns) if id.ends_with("_100k") => {
                    let _ = writeln!(
                        out,
                        "| {what} | {} | {:.0} events/s |",
                        us(ns),
                        100_000.0 / (ns / 1e9)
                    );
                }
                Some(ns) => {
                    let _ = writeln!(out, "| {what} | {} | |", us(ns));
                }
                None => {
                    let _ = writeln!(out, "| {what} | not run | |");
                }
            }
        }
        if let Some(d) = &self.decision {
            percentile_row(out, "decision, timed one call at a time", d, "");
        }
        percentile_row(
            out,
            "DLP 4 KB clean, timed one call at a time",
            &self.dlp_4k,
            "\n",
        );
    }

    pub(super) fn render_audit(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Audit writer and verify (`toolgate::audit::AuditLog`, 256 concurrent appenders)\n"
        );
        let _ = writeln!(out, "| store | durability | events/s appended | failures | `verify` events | `verify` events/s | intact |\n|---|---|---|---|---|---|---|");
        for w in &self.writers {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {:.0} | {} |",
                w.backend,
                w.durability,
                w.events_per_sec(),
                w.failures,
                w.verified,
                w.verify_per_sec(),
                w.intact
            );
        }
        for n in &self.writer_notes {
            let _ = writeln!(out, "\n{n}");
        }
        let _ = writeln!(out);
    }
}

/// One `| what (p50 / p99 / p99.9) | … | |` row of per-call percentiles, then `end`.
fn percentile_row(out: &mut String, what: &str, p: &crate::inproc::Percentiles, end: &str) {
    let _ = writeln!(
        out,
        "| {what} (p50 / p99 / p99.9) | {} / {} / {} | |{end}",
        us(p.p50 as f64),
        us(p.p99 as f64),
        us(p.p999 as f64)
    );
}
