//! The soak run: toolgate at one rate for many minutes while agents keep opening and closing 2025-era sessions,
//! to show what a long-lived instance keeps: resident memory and open file descriptors per window, beside each
//! window's latency, CPU per call and session churn.
//!
//! Each of [`WORKERS`] callers plays one agent's conversations back to back: `initialize` (+
//! `notifications/initialized`), [`CALLS_PER_SESSION`] `tools/call`s, then `DELETE` of the session. Its calls are
//! due on a fixed schedule (the rate shared evenly among the callers) and timed from their due time, so a slow
//! answer shows as latency rather than as a lower rate. Session set-up and tear-down are not calls: they are
//! counted, and their failures are errors of the run.
//!
//! "Flat after warm-up" is judged on the windows after the first [`WARMUP_WINDOWS`]: the least-squares slope of
//! resident memory (KiB per window) and the spread of open descriptors. The verdict's thresholds are in
//! [`SoakRun::flat`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::header::HeaderValue;

use crate::e2e::mcp_uri;
use crate::load::Target;
use crate::procs::{self, Proc};

/// Concurrent callers (each one agent's conversations in turn).
pub const WORKERS: usize = 16;
/// `tools/call`s in each session before the agent ends it.
pub const CALLS_PER_SESSION: u64 = 50;
/// Windows before memory and descriptors are expected to have settled.
pub const WARMUP_WINDOWS: usize = 2;
/// Largest latency the histograms hold, in microseconds.
const MAX_MICROS: u64 = 60_000_000;

/// What toolgate held and did in one window.
pub struct SoakWindow {
    /// Resident set size at the end of the window, KiB.
    pub rss_kib: u64,
    /// Open file descriptors at the end of the window (`/proc/PID/fd`).
    pub open_fds: u64,
    pub calls: u64,
    pub errors: u64,
    pub sessions_opened: u64,
    pub sessions_closed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// toolgate's CPU milliseconds per call in the window.
    pub cpu_ms: Option<f64>,
}

/// The whole soak run.
pub struct SoakRun {
    pub rate: u32,
    pub window: Duration,
    pub windows: Vec<SoakWindow>,
    /// Resident size before the load, KiB.
    pub rss_start_kib: u64,
    pub fds_start: u64,
    pub first_error: Option<String>,
}

impl SoakRun {
    /// The windows after warm-up.
    pub fn settled(&self) -> &[SoakWindow] {
        self.windows.get(WARMUP_WINDOWS..).unwrap_or(&[])
    }

    /// Least-squares slope of resident memory over the settled windows, KiB per window.
    pub fn rss_slope_kib(&self) -> Option<f64> {
        let points: Vec<(f64, f64)> = self
            .settled()
            .iter()
            .enumerate()
            .map(|(i, w)| (i as f64, w.rss_kib as f64))
            .collect();
        slope(&points)
    }

    /// Highest minus lowest descriptor count over the settled windows.
    pub fn fd_spread(&self) -> Option<u64> {
        let fds = self.settled().iter().map(|w| w.open_fds);
        Some(fds.clone().max()? - fds.min()?)
    }

    /// Growth of resident memory from the first settled window to the last, KiB (negative: it shrank).
    pub fn rss_growth_kib(&self) -> Option<i64> {
        let settled = self.settled();
        Some(settled.last()?.rss_kib as i64 - settled.first()?.rss_kib as i64)
    }

    /// Flat: over the settled windows, memory grows by less than 1 % of its size (or 512 KiB) per window on
    /// the least-squares line, and descriptors vary by at most [`WORKERS`] (each caller may hold a connection
    /// being replaced while the count is taken). `None` when fewer than two settled windows were measured.
    pub fn flat(&self) -> Option<bool> {
        let settled = self.settled();
        if settled.len() < 2 {
            return None;
        }
        let first = settled[0].rss_kib as f64;
        let allowed = (first * 0.01).max(512.0);
        Some(self.rss_slope_kib()? < allowed && self.fd_spread()? <= WORKERS as u64)
    }
}

fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// One window's counters, filled by the callers.
struct Tally {
    latency: Histogram<u64>,
    errors: u64,
    sessions_opened: u64,
    sessions_closed: u64,
}

struct Shared {
    target: Target,
    start: Instant,
    window: Duration,
    windows: Vec<Mutex<Tally>>,
    first_error: Mutex<Option<String>>,
    /// Calls ever started, for unique JSON-RPC ids.
    next_id: AtomicU64,
}

impl Shared {
    /// The tally of the window `at` falls in (the last one for anything after the run's end).
    fn tally(&self, at: Instant) -> std::sync::MutexGuard<'_, Tally> {
        let k = (at.saturating_duration_since(self.start).as_nanos()
            / self.window.as_nanos().max(1)) as usize;
        let slot = &self.windows[k.min(self.windows.len() - 1)];
        slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, at: Instant, what: String) {
        self.tally(at).errors += 1;
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(what);
    }
}

/// Soaks `tg` at `rate` calls/s for `windows` × `window`, sampling memory, descriptors and CPU at each window's
/// end.
pub async fn soak(
    tg: &Proc,
    tokens: &[String],
    rate: u32,
    windows: usize,
    window: Duration,
) -> anyhow::Result<SoakRun> {
    let windows = windows.max(1);
    // A caller's calls go out as agent `id % agents` (see `Target::request`): its ids are `n * WORKERS + caller`,
    // so every call stays with the agent that opened the caller's session only if the agents divide WORKERS.
    anyhow::ensure!(
        !tokens.is_empty() && WORKERS % tokens.len() == 0,
        "soak: {} agent tokens do not divide {WORKERS} callers",
        tokens.len()
    );
    let pid = tg.pid();
    let clock_ticks = procs::clock_ticks_per_sec();
    let rss_start_kib = tg.memory_kib()?.0;
    let fds_start = open_fds(pid)?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target: Target::new(mcp_uri(tg)?, tokens)?,
        start,
        window,
        windows: (0..windows)
            .map(|_| {
                Mutex::new(Tally {
                    latency: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                        .expect("constant bounds are valid"),
                    errors: 0,
                    sessions_opened: 0,
                    sessions_closed: 0,
                })
            })
            .collect(),
        first_error: Mutex::new(None),
        next_id: AtomicU64::new(0),
    });
    let end = start + window * windows as u32;
    // Each caller's calls are due every `WORKERS / rate` seconds, the callers staggered across one interval.
    let interval = Duration::from_secs_f64(WORKERS as f64 / f64::from(rate.max(1)));
    let callers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let shared = shared.clone();
            let first_due = start + interval.mul_f64(w as f64 / WORKERS as f64);
            tokio::spawn(caller(shared, w as u64, first_due, interval, end))
        })
        .collect();

    let mut samples = Vec::with_capacity(windows);
    let mut ticks_before = procs::cpu_ticks(pid).ok();
    for k in 1..=windows as u32 {
        tokio::time::sleep_until((start + window * k).into()).await;
        let ticks = procs::cpu_ticks(pid).ok();
        samples.push((tg.memory_kib()?.0, open_fds(pid)?, ticks_before, ticks));
        ticks_before = ticks;
    }
    for c in callers {
        let _ = c.await;
    }
    let shared =
        Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("soak: a caller outlived the run"))?;
    let per_window = shared
        .windows
        .into_iter()
        .zip(samples)
        .map(|(tally, (rss_kib, open_fds, before, after))| {
            let t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
            let calls = t.latency.len();
            let cpu_ms = match (before, after) {
                (Some(b), Some(a)) if calls > 0 => {
                    Some(procs::ticks_to_ms(a.saturating_sub(b), clock_ticks) / calls as f64)
                }
                _ => None,
            };
            SoakWindow {
                rss_kib,
                open_fds,
                calls,
                errors: t.errors,
                sessions_opened: t.sessions_opened,
                sessions_closed: t.sessions_closed,
                p50_ms: t.latency.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: t.latency.value_at_quantile(0.99) as f64 / 1000.0,
                cpu_ms,
            }
        })
        .collect();
    Ok(SoakRun {
        rate,
        window,
        windows: per_window,
        rss_start_kib,
        fds_start,
        first_error: shared
            .first_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    })
}

/// One caller: conversations of [`CALLS_PER_SESSION`] calls, as agent `agent`, until `end`.
async fn caller(
    shared: Arc<Shared>,
    agent: u64,
    first_due: Instant,
    interval: Duration,
    end: Instant,
) {
    let mut due = first_due;
    while due < end {
        let session = match shared.target.initialize(agent).await {
            Ok(sid) => match HeaderValue::from_str(&sid) {
                Ok(v) => v,
                Err(_) => {
                    shared.error(
                        Instant::now(),
                        "initialize: an unusable Mcp-Session-Id".into(),
                    );
                    due += interval;
                    continue;
                }
            },
            Err(e) => {
                shared.error(Instant::now(), format!("initialize: {e}"));
                // Keep the schedule: the calls this conversation would have made are not owed later.
                due += interval.mul_f64(CALLS_PER_SESSION as f64);
                tokio::time::sleep_until(due.into()).await;
                continue;
            }
        };
        shared.tally(Instant::now()).sessions_opened += 1;
        for _ in 0..CALLS_PER_SESSION {
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            // Calls go out as agent `agent`: the session is bound to it.
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed) * WORKERS as u64 + agent;
            let result = shared.target.call_in(id, Some(&session)).await;
            let micros = due.elapsed().as_micros() as u64;
            match result {
                Ok(()) => {
                    shared.tally(due).latency.saturating_record(micros.max(1));
                }
                Err(e) => shared.error(due, format!("tools/call: {e}")),
            }
            due += interval;
        }
        match shared.target.close_session(agent, &session).await {
            Ok(()) => shared.tally(Instant::now()).sessions_closed += 1,
            Err(e) => shared.error(Instant::now(), format!("DELETE session: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let rising: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 100.0 + 3.0 * i as f64)).collect();
        assert!((slope(&rising).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 7.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(0.0, 1.0)]), None);
    }

    fn window(rss_kib: u64, open_fds: u64) -> SoakWindow {
        SoakWindow {
            rss_kib,
            open_fds,
            calls: 1,
            errors: 0,
            sessions_opened: 0,
            sessions_closed: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            cpu_ms: None,
        }
    }

    fn run(windows: Vec<SoakWindow>) -> SoakRun {
        SoakRun {
            rate: 1000,
            window: Duration::from_secs(60),
            windows,
            rss_start_kib: 20_000,
            fds_start: 10,
            first_error: None,
        }
    }

    #[test]
    fn warm_up_growth_is_forgiven_steady_growth_is_not() {
        // Memory jumps during the warm-up windows, then holds: flat.
        let settled = run(vec![
            window(20_000, 20),
            window(60_000, 40),
            window(61_000, 40),
            window(61_100, 41),
            window(60_900, 40),
        ]);
        assert_eq!(settled.flat(), Some(true));
        assert_eq!(settled.rss_growth_kib(), Some(-100));
        // 2 MiB more every window after warm-up: a leak.
        let leaking = run((0..8).map(|i| window(60_000 + 2048 * i, 40)).collect());
        assert_eq!(leaking.flat(), Some(false));
        // Descriptors that keep climbing are a leak too.
        let fds = run((0..8).map(|i| window(60_000, 40 + 10 * i)).collect());
        assert_eq!(fds.flat(), Some(false));
        // Too short to tell.
        assert_eq!(
            run(vec![window(1, 1), window(1, 1), window(1, 1)]).flat(),
            None
        );
    }
}
