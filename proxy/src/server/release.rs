//! Giving back to the system the memory a burst of load freed.
//!
//! glibc's allocator keeps freed memory in its arenas for the next allocation instead of returning it, so the
//! resident size of a server stays at its peak long after the load that caused it: measured after 8 s of an
//! overload (5 000 calls/s offered, two cores), 55 MiB resident, 38 MiB once `malloc_trim` had run. This task
//! runs it once the requests have stopped for [`QUIET`], at most once per [`AT_MOST_EVERY`] (a trim walks
//! every arena: measured, 1 ms of CPU with nothing to give back, 7 ms giving back 16 MB after an overload; a
//! trickle of calls must not pay that on each call, at most 0.05 % of a core). It sleeps while
//! there are no requests at all: the first request after a trim wakes it (a doorbell, one atomic swap per
//! request), and under steady load it looks once per [`QUIET`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::shared_state::{Doorbell, HostBell};

/// How long without a request counts as the end of a burst.
pub const QUIET: Duration = Duration::from_millis(500);

/// The shortest time between two trims.
pub const AT_MOST_EVERY: Duration = Duration::from_secs(2);

// The audit writer has the store give back what its connections kept after its own quiet time; the trim must
// come after it to return that memory to the system.
const _: () = assert!(crate::audit::writer::REST_AFTER.as_millis() < QUIET.as_millis());

/// The requests' side: rung on each request. Dropping it ends the task.
pub struct Bursts {
    bell: HostBell,
}

impl Bursts {
    /// Starts the task that trims after each burst.
    pub fn start() -> Arc<Bursts> {
        let bursts = Arc::new(Bursts {
            bell: HostBell::default(),
        });
        tokio::spawn(trim_after_bursts(
            Arc::downgrade(&bursts),
            bursts.bell.share(),
            trim,
        ));
        bursts
    }

    /// A request arrived.
    pub fn request(&self) {
        self.bell.ring();
    }

    /// A connection ended: what it kept (its buffers, its task) was freed, maybe long after the last request.
    pub fn connection_ended(&self) {
        self.bell.ring();
    }
}

async fn trim_after_bursts(bursts: Weak<Bursts>, bell: Arc<Doorbell>, mut trim: impl FnMut()) {
    let mut earliest = tokio::time::Instant::now();
    loop {
        // Requests came since the last trim (or since start).
        bell.answer().await;
        tokio::time::sleep_until(earliest).await;
        // Until a whole QUIET passes with no request.
        loop {
            if bursts.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(QUIET).await;
            if !bell.take() {
                break;
            }
        }
        let Some(_running) = bursts.upgrade() else {
            return;
        };
        trim();
        earliest = tokio::time::Instant::now() + AT_MOST_EVERY;
    }
}

/// Returns the free memory of every arena to the system.
#[allow(unsafe_code)]
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory the allocator holds free; it takes the arenas' locks itself
    // and touches no memory the program still owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The task of a `Bursts`, counting its trims instead of trimming.
    fn counted() -> (Arc<Bursts>, Arc<AtomicUsize>) {
        let bursts = Arc::new(Bursts {
            bell: HostBell::default(),
        });
        let trims = Arc::new(AtomicUsize::new(0));
        let counter = trims.clone();
        tokio::spawn(trim_after_bursts(
            Arc::downgrade(&bursts),
            bursts.bell.share(),
            move || {
                counter.fetch_add(1, Ordering::Relaxed);
            },
        ));
        (bursts, trims)
    }

    async fn requests_for(bursts: &Bursts, how_long: Duration) {
        let end = tokio::time::Instant::now() + how_long;
        while tokio::time::Instant::now() < end {
            bursts.request();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_trim_after_each_burst_never_during_one_and_not_too_often() {
        let (bursts, trims) = counted();
        let trims = move || trims.load(Ordering::Relaxed);
        // No request yet: nothing to give back.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(trims(), 0, "trimmed with no request at all");

        // Steady load for 5 s: no trim while it lasts, one once it has been quiet for QUIET.
        requests_for(&bursts, Duration::from_secs(5)).await;
        assert_eq!(trims(), 0, "trimmed during the load");
        tokio::time::sleep(QUIET * 2).await;
        assert_eq!(trims(), 1, "no trim after the burst");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(trims(), 1, "trimmed again with no request");

        // A trickle (a call every 1.5 s, each followed by a quiet QUIET): at most one trim per AT_MOST_EVERY,
        // and still some.
        let trickle = Duration::from_secs(60);
        for _ in 0..40 {
            bursts.request();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let trimmed = trims() - 1;
        let most = (trickle.as_secs_f64() / AT_MOST_EVERY.as_secs_f64()).ceil() as usize + 1;
        assert!(
            (most / 3..=most).contains(&trimmed),
            "{trimmed} trims in {trickle:?} of a trickle (at most {most})"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_the_server() {
        let (bursts, trims) = counted();
        let bell = Arc::downgrade(&bursts.bell.share());
        bursts.request();
        drop(bursts);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            bell.upgrade().is_none(),
            "the task still holds its doorbell"
        );
        assert_eq!(
            trims.load(Ordering::Relaxed),
            0,
            "trimmed for a server that is gone"
        );
    }
}
