//! `[behavior]`: the per-agent baselines and the thresholds of the alert rules (docs/behaviour.md states each).

use serde::Deserialize;

use super::ConfigError;

/// `[behavior]`: how long a baseline remembers, and when an agent's behaviour opens an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorSettings {
    /// The window each baseline covers (call rate, tool mix, deny rate, distinct targets).
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u64,
    /// A call rate this many standard deviations above the agent's own mean opens `rate_anomaly`.
    #[serde(default = "default_alert_zscore")]
    pub alert_zscore: f64,
    /// `rate_anomaly` also needs at least this many calls in the current rate bucket, so an idle agent's
    /// handful of calls is never an anomaly.
    #[serde(default = "default_rate_min_calls")]
    pub rate_min_calls: u32,
    /// `deny_spike`: more than this share of an agent's calls denied ...
    #[serde(default = "default_deny_spike_ratio")]
    pub deny_spike_ratio: f64,
    /// ... over this many seconds ...
    #[serde(default = "default_deny_spike_window_seconds")]
    pub deny_spike_window_seconds: u64,
    /// ... with at least this many calls.
    #[serde(default = "default_deny_spike_min_calls")]
    pub deny_spike_min_calls: u32,
    /// `new_tool` opens only for an agent with at least this many calls behind it: a new agent learning its
    /// tools is not an anomaly (its `behavior.new_tool` is still true for the policy).
    #[serde(default = "default_new_tool_after_calls")]
    pub new_tool_after_calls: u64,
    /// How often the baselines are snapshotted to the database (and the prompt pins read back).
    #[serde(default = "default_snapshot_seconds")]
    pub snapshot_seconds: u64,
}

impl Default for BehaviorSettings {
    fn default() -> Self {
        BehaviorSettings {
            window_seconds: default_window_seconds(),
            alert_zscore: default_alert_zscore(),
            rate_min_calls: default_rate_min_calls(),
            deny_spike_ratio: default_deny_spike_ratio(),
            deny_spike_window_seconds: default_deny_spike_window_seconds(),
            deny_spike_min_calls: default_deny_spike_min_calls(),
            new_tool_after_calls: default_new_tool_after_calls(),
            snapshot_seconds: default_snapshot_seconds(),
        }
    }
}

impl BehaviorSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("behavior.{key}"),
            message,
        };
        if !(60..=7 * 24 * 3600).contains(&self.window_seconds) {
            return Err(invalid(
                "window_seconds",
                format!("{} is not between 60 and 604800", self.window_seconds),
            ));
        }
        if !(self.alert_zscore.is_finite() && self.alert_zscore > 0.0) {
            return Err(invalid(
                "alert_zscore",
                format!("{} is not a positive number", self.alert_zscore),
            ));
        }
        if !(self.deny_spike_ratio.is_finite() && (0.0..1.0).contains(&self.deny_spike_ratio)) {
            return Err(invalid(
                "deny_spike_ratio",
                format!("{} is not in [0, 1)", self.deny_spike_ratio),
            ));
        }
        if !(10..=3600).contains(&self.deny_spike_window_seconds) {
            return Err(invalid(
                "deny_spike_window_seconds",
                format!(
                    "{} is not between 10 and 3600",
                    self.deny_spike_window_seconds
                ),
            ));
        }
        for (key, value) in [
            ("rate_min_calls", u64::from(self.rate_min_calls)),
            ("deny_spike_min_calls", u64::from(self.deny_spike_min_calls)),
            ("snapshot_seconds", self.snapshot_seconds),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

fn default_window_seconds() -> u64 {
    3600
}
fn default_alert_zscore() -> f64 {
    3.0
}
fn default_rate_min_calls() -> u32 {
    10
}
fn default_deny_spike_ratio() -> f64 {
    0.2
}
fn default_deny_spike_window_seconds() -> u64 {
    300
}
fn default_deny_spike_min_calls() -> u32 {
    10
}
fn default_new_tool_after_calls() -> u64 {
    20
}
fn default_snapshot_seconds() -> u64 {
    10
}
