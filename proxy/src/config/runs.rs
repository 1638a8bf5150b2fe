//! `[runs]`: agent runs (`POST /api/v1/runs`): how long a run may stay unfinished.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The longest `runs.timeout_seconds`: thirty days. A run is one task of an agent, not a standing session.
pub const MAX_RUN_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsSettings {
    /// A run not finished this long after its start is marked `failed` with error `timed out`.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Runs of one agent (tenant and `sub`) running at once at most; a start beyond it is refused (429), so one
    /// agent cannot fill the table or the instances' memory with runs it never finishes.
    #[serde(default = "default_max_running_per_agent")]
    pub max_running_per_agent: u32,
}

impl Default for RunsSettings {
    fn default() -> Self {
        RunsSettings {
            timeout_seconds: default_timeout_seconds(),
            max_running_per_agent: default_max_running_per_agent(),
        }
    }
}

fn default_timeout_seconds() -> u64 {
    3600
}

fn default_max_running_per_agent() -> u32 {
    64
}

impl RunsSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_RUN_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            return Err(ConfigError::Invalid {
                key: "runs.timeout_seconds".into(),
                message: format!(
                    "{} is not between 1 and {MAX_RUN_TIMEOUT_SECONDS}",
                    self.timeout_seconds
                ),
            });
        }
        if self.max_running_per_agent == 0 {
            return Err(ConfigError::Invalid {
                key: "runs.max_running_per_agent".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
