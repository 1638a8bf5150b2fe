//! A doorbell: how the request path tells a background task that it has work (counts to store, a deadline to
//! keep) without the task polling for it. Ringing costs one atomic swap; only the first ring after the task
//! answered wakes it, so a burst of calls is one wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Doorbell {
    rung: AtomicBool,
    notify: Notify,
}

impl Doorbell {
    /// Rings after the work was put where the task takes it (a count added, a run held): the task that answers
    /// this ring sees that work.
    pub fn ring(&self) {
        // Release: the work written before the ring is visible to whoever swaps the flag back (`answer`).
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits for a ring not yet answered (at once if there is one), and answers it: work put before any ring
    /// this answers is visible to the caller; a ring after it wakes the next wait.
    pub async fn answer(&self) {
        while !self.take() {
            self.notify.notified().await;
        }
    }

    /// Answers a ring without waiting: whether one came since the last answer.
    pub fn take(&self) -> bool {
        // Acquire: pairs with the ring's release.
        self.rung.swap(false, Ordering::AcqRel)
    }
}

/// The doorbell of a background task that holds its host weakly (`Weak`), owned by that host: dropping the host
/// rings it, so the task wakes, finds the host gone and ends, instead of waiting for a ring that never comes.
#[derive(Default)]
pub struct HostBell(Arc<Doorbell>);

impl HostBell {
    /// The same doorbell, for the task to answer.
    pub fn share(&self) -> Arc<Doorbell> {
        self.0.clone()
    }
}

impl std::ops::Deref for HostBell {
    type Target = Doorbell;

    fn deref(&self) -> &Doorbell {
        &self.0
    }
}

impl Drop for HostBell {
    fn drop(&mut self) {
        self.0.ring();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn dropping_a_host_bell_wakes_its_task() {
        let bell = HostBell::default();
        let shared = bell.share();
        let task = tokio::spawn(async move { shared.answer().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!task.is_finished(), "the task woke with no ring");
        drop(bell);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the dropped host's bell did not wake its task")
            .unwrap();
    }

    #[tokio::test]
    async fn a_ring_wakes_one_wait_and_a_burst_is_one_wake_up() {
        let bell = Doorbell::default();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), bell.answer())
                .await
                .is_err(),
            "a wait returned with no ring"
        );
        for _ in 0..100 {
            bell.ring();
        }
        tokio::time::timeout(Duration::from_secs(1), bell.answer())
            .await
            .expect("a ring was not answered");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), bell.answer())
                .await
                .is_err(),
            "one burst of rings woke the task twice"
        );
    }

    /// Work put before a ring is never left behind: after the ringers stop, the task has taken all of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_work_is_left_unseen_by_the_last_answer() {
        let bell = Arc::new(Doorbell::default());
        let work = Arc::new(AtomicU64::new(0));
        let taken = Arc::new(AtomicU64::new(0));
        let task = {
            let (bell, work, taken) = (bell.clone(), work.clone(), taken.clone());
            tokio::spawn(async move {
                loop {
                    bell.answer().await;
                    taken.fetch_add(work.swap(0, Ordering::AcqRel), Ordering::Relaxed);
                }
            })
        };
        let ringers: Vec<_> = (0..2)
            .map(|_| {
                let (bell, work) = (bell.clone(), work.clone());
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        work.fetch_add(1, Ordering::AcqRel);
                        bell.ring();
                    }
                })
            })
            .collect();
        for r in ringers {
            r.join().unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while taken.load(Ordering::Relaxed) < 200_000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        assert_eq!(taken.load(Ordering::Relaxed), 200_000);
    }
}
