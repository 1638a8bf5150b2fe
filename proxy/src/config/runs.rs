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
}

impl Default for RunsSettings {
    fn default() -> Self {
        RunsSettings {
            timeout_seconds: default_timeout_seconds(),
        }
    }
}

fn default_timeout_seconds() -> u64 {
    3600
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
        Ok(())
    }
}
