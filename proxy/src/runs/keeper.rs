//! The runs' background task, one per instance: every [`TICK`] it adds the calls counted in memory to the
//! table, forgets the runs another instance ended, and ends the runs past their deadline (`failed`, error
//! `timed out`, a `run_finish` event), so a run times out within a second of its deadline with no request.

use std::sync::{Arc, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use super::Runs;

/// A deadline passes at most this long before the run is marked; counts reach the table this often.
pub const TICK: Duration = Duration::from_millis(250);

/// Starts the task; it ends once the runs are gone (with the app).
pub fn start(runs: &Arc<Runs>) {
    let runs: Weak<Runs> = Arc::downgrade(runs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(runs) = runs.upgrade() else { return };
            let result = async {
                runs.flush().await?;
                runs.forget_ended_elsewhere().await?;
                runs.expire_due(OffsetDateTime::now_utc()).await
            }
            .await;
            match result {
                Ok(_) if failing => {
                    tracing::info!("run upkeep works again");
                    failing = false;
                }
                Ok(_) => {}
                // Logged once per outage, not four times a second; counts wait in memory meanwhile.
                Err(e) if !failing => {
                    tracing::error!(error = %e, "run upkeep failed; retrying");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}
