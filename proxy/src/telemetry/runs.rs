//! The agent-run metrics of the contract: `toolgate_agent_runs_total{agent_id,status}` and
//! `toolgate_agent_run_duration_seconds{agent_id}`. Both are observed once per run, when it ends (finished by its
//! agent or timed out), so `status` is the run's final one; the `agent_id` label is the capped one of
//! [`super::Metrics::agent_label`].

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// From 50 ms (a run that only planned) to 30 minutes (a long task); longer runs land in `+Inf`.
pub const RUN_DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
];

pub struct RunMetrics {
    pub runs: IntCounterVec,
    pub duration: HistogramVec,
}

impl RunMetrics {
    pub(super) fn new(registry: &Registry) -> RunMetrics {
        let runs = IntCounterVec::new(
            Opts::new(
                "toolgate_agent_runs_total",
                "Agent runs ended, by agent and final status (succeeded, failed, canceled).",
            ),
            &["agent_id", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "toolgate_agent_run_duration_seconds",
                "Time from a run's start to its end, by agent.",
            )
            .buckets(RUN_DURATION_BUCKETS.to_vec()),
            &["agent_id"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(runs.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(duration.clone()))
            .expect("metric names are unique");
        RunMetrics { runs, duration }
    }

    /// One run ended: counted under its final status, its duration observed.
    pub fn ended(&self, agent_label: &str, status: &str, duration_ms: i64) {
        self.runs.with_label_values(&[agent_label, status]).inc();
        self.duration
            .with_label_values(&[agent_label])
            .observe(duration_ms.max(0) as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's range: 50 ms to 30 minutes, each bound inclusive; longer runs land only in `+Inf`.
    #[test]
    fn run_durations_are_bucketed_from_50_ms_to_30_minutes() {
        let registry = Registry::new();
        let m = RunMetrics::new(&registry);
        m.ended("a", "succeeded", 50);
        m.ended("a", "succeeded", 1_800_000);
        m.ended("a", "failed", 1_800_001);
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let bucket = |le: &str| {
            let prefix = format!(
                "toolgate_agent_run_duration_seconds_bucket{{agent_id=\"a\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no bucket le={le} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(bucket("0.05"), "1", "50 ms is the first bound");
        assert_eq!(bucket("1200"), "1");
        assert_eq!(bucket("1800"), "2", "30 minutes is the last bound");
        assert_eq!(bucket("+Inf"), "3");
        assert_eq!(RUN_DURATION_BUCKETS.first(), Some(&0.05));
        assert_eq!(RUN_DURATION_BUCKETS.last(), Some(&1800.0));
    }
}
