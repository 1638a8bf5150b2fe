//! The write lane (`store::write_lane`) under the audit writer: other tables' writes get SQLite's one writing
//! connection while the writer commits without a pause, on SQLite and PostgreSQL alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

on_both!(other_writes_are_served_while_the_log_is_appended_to);
async fn other_writes_are_served_while_the_log_is_appended_to(db: TestDb) {
    let log = open(&db, "lane").await;
    let busy = Arc::new(AtomicBool::new(true));
    let appenders: Vec<_> = (0..16)
        .map(|t| {
            let (log, busy) = (log.clone(), busy.clone());
            tokio::spawn(async move {
                let mut appended = 0;
                while busy.load(Ordering::Relaxed) {
                    log.append(draft(&format!("agent{t}"), "echo", "allow"))
                        .await
                        .unwrap();
                    appended += 1;
                }
                appended
            })
        })
        .collect();
    // Each lease write queues behind the commits in flight, then gets its turn: none waits for the appends to
    // stop (a writer that kept the connection to itself would hold these until the 10 s deadline).
    let store = log.store().clone();
    let leases = tokio::time::timeout(Duration::from_secs(10), async {
        for round in 0..20 {
            let holder = format!("instance-{round}");
            assert!(store
                .siem_take_lease("lane-sink", &holder, round, 0)
                .await
                .unwrap());
            let lease = store.siem_lease("lane-sink").await.unwrap().unwrap();
            assert_eq!(lease.holder, holder);
        }
    })
    .await;
    busy.store(false, Ordering::Relaxed);
    let mut appended = 0;
    for task in appenders {
        appended += task.await.unwrap();
    }
    assert!(
        leases.is_ok(),
        "lease writes starved while {appended} events were appended"
    );
    assert!(appended > 0);
    // The log is whole: every acknowledged event is stored, in one gap-free chain.
    let events = all_events(log.store()).await;
    assert_eq!(events.len(), appended as usize);
    assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    assert!(log.store().verify(None, None).await.unwrap().chain_intact);
}
