//! The thread the SIEM works on: one tokio worker of its own, at a lower CPU priority than the request path.
//!
//! Delivery is bursty by design (a sink sends a few large batches a second, so that its cursor commits stay
//! few): encoding 500 events for six sinks, reading the answers and a bulk reply's items is ~10 ms of CPU at
//! once. On the proxy's workers that burst queued tool calls behind it (at 1,000 calls/s the p99 went from ~5
//! to ~15–30 ms on two cores). On a thread of its own at nice [`NICE`], the kernel runs a tool call's worker
//! first whenever both want a core, and the SIEM takes what they leave (most of it: a core is rarely busy all
//! the time below saturation); at saturation, delivery lags rather than slowing calls, and the lag gauge shows
//! it.
//!
//! The runtime is process-wide and never shut down: database connections and pooled HTTP connections opened
//! from it are driven by its I/O driver, and others (the audit writer) may be handed them afterwards.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// The SIEM threads' nice value (0 is the default; 19 the lowest priority). 10 weighs a SIEM thread at about a
/// tenth of a worker when both are runnable: enough to keep six sinks current at saturation on this machine
/// (~5 % of a core), never enough to delay a call by more than a scheduler tick.
pub(super) const NICE: i32 = 10;

pub(super) const THREAD_NAME: &str = "toolgate-siem";

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The SIEM runtime's handle (started at the first call).
pub(super) fn handle() -> anyhow::Result<Handle> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .thread_name(THREAD_NAME)
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(|e| anyhow::anyhow!("cannot start the SIEM thread: {e}"))
}

/// Lowers the calling thread's priority to [`NICE`] (Linux: nice is per thread). Failing leaves it at the
/// default: delivery still works, only without the shelter.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::warn!(error = %e, "cannot lower the SIEM thread's priority; it runs at the default");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// Every thread of the SIEM runtime (its worker and any blocking thread it started) runs at [`super::NICE`],
    /// and tasks spawned on it run on those threads.
    #[test]
    fn siem_threads_run_at_a_lower_priority() {
        let handle = super::handle().unwrap();
        let (name, nice) = handle
            .block_on(handle.spawn(async {
                let tid = rustix::thread::gettid().as_raw_nonzero();
                let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
                // Field 19 is nice; the fields after the parenthesised name are 3 onwards.
                let after = stat.rsplit_once(')').unwrap().1;
                let nice: i32 = after.split_whitespace().nth(16).unwrap().parse().unwrap();
                (std::thread::current().name().map(str::to_owned), nice)
            }))
            .unwrap();
        assert_eq!(name.as_deref(), Some(super::THREAD_NAME));
        assert_eq!(nice, super::NICE);
    }
}
