//! The runs' background task, one per instance: it adds the calls counted in memory to the table, forgets the
//! runs another instance ended, and ends the runs past their deadline (`failed`, error `timed out`, a
//! `run_finish` event), so a run times out within a second of its deadline with no request.
//!
//! It looks when there is something to look at, at most once a [`TICK`]: calls were counted or a run started
//! here (a doorbell the request path rings), a run started or ended on another instance (the state-change
//! bus: PostgreSQL's notifications, a SQLite file's writes), or the soonest deadline passed. Idle, nothing
//! runs. Hearing of no changes (a SQLite file that cannot be watched) it looks every [`TICK`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::Runs;
use crate::shared_state::{Bus, Change};

/// A deadline passes at most this long before the run is marked; counts reach the table this often at most.
pub const TICK: Duration = Duration::from_millis(250);

/// Hearing of changes, the longest the keeper sleeps with no deadline due.
const SAFETY_NET: Duration = Duration::from_secs(30);

/// Starts the task; it ends once the runs are gone (with the app).
pub fn start(runs: &Arc<Runs>, bus: &Bus) {
    let hearing = bus.hears_changes();
    let mut changes = bus.subscribe();
    let work = runs.work();
    let runs: Weak<Runs> = Arc::downgrade(runs);
    tokio::spawn(async move {
        let mut failing = false;
        // The first look at once: runs past their deadline while no instance ran.
        let mut wake = Instant::now();
        let mut earliest = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = work.answer() => {}
                change = changes.next() => match change {
                    None => return,
                    Some(Change::Runs | Change::Written | Change::Resync) => {}
                    Some(_) => continue,
                },
            }
            // At most one look a TICK: under load as often as a poll would look, idle never.
            tokio::time::sleep_until(earliest).await;
            let Some(runs) = runs.upgrade() else { return };
            earliest = Instant::now() + TICK;
            let result = async {
                runs.flush().await?;
                runs.forget_ended_elsewhere().await?;
                runs.expire_due(OffsetDateTime::now_utc()).await?;
                runs.soonest_deadline().await
            }
            .await;
            wake = Instant::now()
                + match &result {
                    Ok(soonest) if hearing => {
                        crate::shared_state::sleep_before(soonest.as_deref(), SAFETY_NET, TICK)
                    }
                    _ => TICK,
                };
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
