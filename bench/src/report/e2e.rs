//! The end-to-end section (per variant: rates and saturation, direct / nginx hop / toolgate, toolgate's CPU per
//! call), the audit storage section (bytes per stored event) and the steady run's section.

use std::fmt::Write as _;

use super::{opt_ms, Results, Variant};
use crate::load::Outcome;
use crate::storage::DbSize;

impl Results {
    pub(super) fn render_e2e(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### End to end: `tools/call` of `echo`, direct vs nginx hop vs through toolgate\n"
        );
        let _ = writeln!(out, "Latency in ms from each call's intended send time (open loop); `sched p99` is the load generator's own lateness in sending (the floor of the measurement); `CPU ms/call` is toolgate's CPU time (user + system, all threads, `/proc/PID/stat`) over the phase divided by its calls.");
        match &self.nginx {
            Some(n) => {
                let _ = writeln!(out, "The nginx hop ({n}) is measured in the stateless `sqlite` variant only, alternated with the other two paths.\n");
            }
            None => {
                let _ = writeln!(
                    out,
                    "The nginx hop was not measured in this run (see below).\n"
                );
            }
        }
        for v in &self.variants {
            render_variant(out, v);
        }
    }

    pub(super) fn render_storage(&self, out: &mut String) {
        let measured: Vec<(&Variant, &DbSize)> = self
            .variants
            .iter()
            .filter_map(|v| v.db.as_ref().map(|db| (v, db)))
            .collect();
        if measured.is_empty() && self.steady.as_ref().and_then(|s| s.db.as_ref()).is_none() {
            return;
        }
        let _ = writeln!(out, "### Audit storage: bytes per stored event (SQLite)\n");
        let _ = writeln!(out, "Each SQLite audit database after its toolgate stopped, `PRAGMA wal_checkpoint(TRUNCATE)`, then `page_count × page_size` for the total and SQLite's `dbstat` table for each table and index. Events are the rows of `audit_events` (tool calls, plus session starts in the session flow).\n");
        let _ = writeln!(
            out,
            "| database of | events | total bytes | bytes/event |\n|---|---|---|---|"
        );
        for (v, db) in &measured {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} |",
                v.label(),
                db.events,
                db.total_bytes,
                db.bytes_per_event()
            );
        }
        if let Some(db) = self.steady.as_ref().and_then(|s| s.db.as_ref()) {
            let _ = writeln!(
                out,
                "| the steady run | {} | {} | {:.0} |",
                db.events,
                db.total_bytes,
                db.bytes_per_event()
            );
        }
        if let Some((v, db)) = measured.first() {
            let _ = writeln!(
                out,
                "\nBreakdown of {} (`dbstat`, pages of each table and index):\n",
                v.label()
            );
            let _ = writeln!(
                out,
                "| table / index | bytes | bytes/event | share |\n|---|---|---|---|"
            );
            for (name, bytes) in &db.objects {
                let _ = writeln!(
                    out,
                    "| `{name}` | {bytes} | {:.1} | {:.1} % |",
                    *bytes as f64 / db.events.max(1) as f64,
                    100.0 * *bytes as f64 / db.total_bytes.max(1) as f64
                );
            }
        }
        let _ = writeln!(out);
    }

    pub(super) fn render_steady(&self, out: &mut String) {
        let Some(s) = &self.steady else {
            return;
        };
        let _ = writeln!(
            out,
            "### Steady: `sqlite` (stateless) at {} calls/s open loop for {} windows of {:?}\n",
            s.rate,
            s.windows.len(),
            s.window
        );
        let _ = writeln!(out, "Latency per window by each call's intended send time; CPU and the database size (file + WAL, while toolgate writes) sampled at each window's end, so a window's CPU also holds whatever of the previous window's calls was still in flight.\n");
        let _ = writeln!(out, "| window | calls | p50 ms | p99 ms | db + WAL bytes at end | CPU ms/call |\n|---|---|---|---|---|---|");
        for (k, w) in s.windows.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {} | {} |",
                k + 1,
                w.calls,
                w.p50_ms,
                w.p99_ms,
                w.file_bytes,
                opt_ms(w.cpu_ms)
            );
        }
        let t = &s.total;
        let _ = writeln!(
            out,
            "| **all** | {} (ok {}, errors {}) | {:.3} | {:.3} | | {} |\n",
            t.calls(),
            t.ok,
            t.errors,
            t.ms(0.5),
            t.ms(0.99),
            opt_ms(s.cpu_ms)
        );
        if let (Some(first), Some(last)) = (s.windows.first(), s.windows.last()) {
            let _ = writeln!(
                out,
                "Last window's p99 vs the first's: {:+.1} %.",
                100.0 * (last.p99_ms / first.p99_ms.max(1e-9) - 1.0)
            );
        }
        if let Some(last) = s.windows.last() {
            let grown = last.file_bytes.saturating_sub(s.start_file_bytes);
            let _ = writeln!(
                out,
                "Database growth during the run (file + WAL): {grown} bytes, {:.0} bytes per call.",
                grown as f64 / s.total.calls().max(1) as f64
            );
        }
        if let Some(db) = &s.db {
            let _ = writeln!(
                out,
                "After stop and checkpoint: {} events, {} bytes, {:.0} bytes per event.",
                db.events,
                db.total_bytes,
                db.bytes_per_event()
            );
        }
        if let Some(e) = &s.total.first_error {
            let _ = writeln!(out, "\nFirst error seen: `{e}`");
        }
        let _ = writeln!(out);
    }
}

fn render_variant(out: &mut String, v: &Variant) {
    let _ = writeln!(
        out,
        "#### {}{}\n",
        v.label(),
        if v.note.is_empty() {
            String::new()
        } else {
            format!(": {}", v.note)
        }
    );
    let _ = writeln!(out, "| calls/s | path | p50 | p99 | p99.9 | max | ok | errors | sched p99 | CPU ms/call |\n|---|---|---|---|---|---|---|---|---|---|");
    for s in &v.steps {
        let mut rows: Vec<(&str, &Outcome, Option<f64>)> = vec![("direct", &s.direct, None)];
        if let Some(n) = &s.nginx {
            rows.push(("nginx", n, None));
        }
        rows.push(("toolgate", &s.proxied, s.cpu_ms));
        for (path, o, cpu) in rows {
            let _ = writeln!(
                out,
                "| {} | {path} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.3} | {} |",
                s.rate,
                o.ms(0.5),
                o.ms(0.99),
                o.ms(0.999),
                o.latency.max() as f64 / 1000.0,
                o.ok,
                o.errors,
                o.lag.value_at_quantile(0.99) as f64 / 1000.0,
                opt_ms(cpu)
            );
        }
    }
    let p = &v.saturation_proxied;
    let _ = writeln!(out, "\n| saturation (closed loop) | calls/s | p50 | p99 | errors | CPU ms/call | toolgate / this |\n|---|---|---|---|---|---|---|");
    let mut rows: Vec<(&str, &Outcome)> = vec![("direct", &v.saturation_direct)];
    if let Some(n) = &v.saturation_nginx {
        rows.push(("nginx", n));
    }
    for (path, o) in rows {
        let _ = writeln!(
            out,
            "| {path} | {:.0} | {:.3} | {:.3} | {} | — | **{:.1} %** |",
            o.throughput(),
            o.ms(0.5),
            o.ms(0.99),
            o.errors,
            100.0 * p.throughput() / o.throughput().max(1e-9)
        );
    }
    let _ = writeln!(
        out,
        "| toolgate | {:.0} | {:.3} | {:.3} | {} | {} | |\n",
        p.throughput(),
        p.ms(0.5),
        p.ms(0.99),
        p.errors,
        opt_ms(v.saturation_cpu_ms)
    );
    let mut all = vec![&v.saturation_direct, p];
    all.extend(v.saturation_nginx.iter());
    for s in &v.steps {
        all.push(&s.direct);
        all.extend(s.nginx.iter());
        all.push(&s.proxied);
    }
    if let Some(e) = all.iter().find_map(|o| o.first_error.as_ref()) {
        let _ = writeln!(out, "First error seen: `{e}`\n");
    }
}
