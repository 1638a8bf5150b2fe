//! The end-to-end measurements of one toolgate instance: the fixed rates and saturation through toolgate, each
//! beside the same load sent directly to the mock upstream and (where asked) through an nginx hop, alternated
//! so drift in the machine's load hits every path; toolgate's CPU time per call in each phase; and the steady
//! run (one rate for many minutes, latency per minute).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load::{closed_loop, open_loop, open_loop_windows, Flow, Outcome, Target};
use crate::procs::{self, Proc};
use crate::report::{RateStep, SteadyRun, SteadyWindow, Variant};
use crate::storage;

/// Sessions a session-flow target opens: as many as saturation callers, so each closed-loop caller keeps to
/// one session, as an agent does; open-loop calls spread over them.
pub const SESSIONS_PER_TARGET: usize = 32;
/// Pause after a phase before reading toolgate's CPU time, for work still finishing after the last answer.
const CPU_SETTLE: Duration = Duration::from_millis(100);

/// How long after a variant's load the resident size is read again: toolgate gives back what a burst freed once
/// its requests have stopped for half a second and it next looks (`server::release` in the proxy).
pub const SETTLE: Duration = Duration::from_secs(3);

/// What one variant runs.
pub struct Plan {
    pub rates: Vec<u32>,
    /// Length of each open-loop phase (per path).
    pub rate_duration: Duration,
    pub saturation: Duration,
    pub concurrency: usize,
    pub warmup: Duration,
    /// `getconf CLK_TCK`.
    pub clock_ticks: u64,
}

/// The reference paths a variant is compared with, speaking the variant's flow.
pub struct Paths {
    pub direct: Arc<Target>,
    pub nginx: Option<Arc<Target>>,
}

/// toolgate's MCP endpoint for the mock upstream.
pub fn mcp_uri(tg: &Proc) -> anyhow::Result<hyper::Uri> {
    Ok(format!("http://{}/mcp/bench", tg.addr).parse()?)
}

/// A target in `flow`: sessions opened now when the flow has them.
pub async fn target(uri: hyper::Uri, tokens: &[String], flow: Flow) -> anyhow::Result<Target> {
    let t = Target::new(uri, tokens)?;
    match flow {
        Flow::Stateless => Ok(t),
        Flow::Session => t.open_sessions(SESSIONS_PER_TARGET).await,
    }
}

/// Runs `phase` and returns its outcome with toolgate's CPU milliseconds per call during it (None if `/proc`
/// could not be read).
async fn with_cpu(
    tg_pid: u32,
    clock_ticks: u64,
    phase: impl std::future::Future<Output = Outcome>,
) -> (Outcome, Option<f64>) {
    let before = procs::cpu_ticks(tg_pid).ok();
    let outcome = phase.await;
    tokio::time::sleep(CPU_SETTLE).await;
    let after = procs::cpu_ticks(tg_pid).ok();
    let cpu = before
        .zip(after)
        .map(|(b, a)| cpu_ms_per_call(a.saturating_sub(b), clock_ticks, outcome.calls()));
    (outcome, cpu)
}

fn cpu_ms_per_call(ticks: u64, clock_ticks: u64, calls: u64) -> f64 {
    procs::ticks_to_ms(ticks, clock_ticks) / calls.max(1) as f64
}

/// Measures toolgate instance `tg` in `flow` against `paths`; the resident size is read at the end, the
/// database (if SQLite) by the caller once toolgate has stopped.
pub async fn measure(
    name: &str,
    flow: Flow,
    tg: &Proc,
    tokens: &[String],
    paths: &Paths,
    plan: &Plan,
) -> anyhow::Result<Variant> {
    let proxied = Arc::new(target(mcp_uri(tg)?, tokens, flow).await?);
    let mut all: Vec<(&str, &Arc<Target>)> = vec![("direct", &paths.direct)];
    if let Some(n) = &paths.nginx {
        all.push(("nginx", n));
    }
    all.push(("toolgate", &proxied));
    // Warm connections, caches (token cache, evaluators per worker) and the SQLite page cache.
    for (path, t) in &all {
        let warm = closed_loop((*t).clone(), 8, plan.warmup).await;
        anyhow::ensure!(
            warm.ok > 0,
            "{name}: warm-up of {path} got no successful call: {}",
            warm.first_error.unwrap_or_default()
        );
    }
    let pid = tg.pid();
    let mut steps = Vec::new();
    for &rate in &plan.rates {
        eprintln!("  {name}: {rate} calls/s");
        let direct = open_loop(paths.direct.clone(), rate, plan.rate_duration).await;
        let nginx = match &paths.nginx {
            Some(n) => Some(open_loop(n.clone(), rate, plan.rate_duration).await),
            None => None,
        };
        let (proxied, cpu_ms) = with_cpu(
            pid,
            plan.clock_ticks,
            open_loop(proxied.clone(), rate, plan.rate_duration),
        )
        .await;
        steps.push(RateStep {
            rate,
            direct,
            nginx,
            proxied,
            cpu_ms,
        });
    }
    eprintln!("  {name}: saturation");
    let saturation_direct =
        closed_loop(paths.direct.clone(), plan.concurrency, plan.saturation).await;
    let saturation_nginx = match &paths.nginx {
        Some(n) => Some(closed_loop(n.clone(), plan.concurrency, plan.saturation).await),
        None => None,
    };
    let (saturation_proxied, saturation_cpu_ms) = with_cpu(
        pid,
        plan.clock_ticks,
        closed_loop(proxied.clone(), plan.concurrency, plan.saturation),
    )
    .await;
    let rss_kib = tg.memory_kib()?;
    tokio::time::sleep(SETTLE).await;
    Ok(Variant {
        name: name.to_owned(),
        flow,
        steps,
        saturation_direct,
        saturation_nginx,
        saturation_proxied,
        saturation_cpu_ms,
        rss_kib,
        rss_settled_kib: tg.memory_kib()?.0,
        note: String::new(),
        db: None,
    })
}

/// The steady run: `rate` calls/s open loop through `tg` for `windows` windows of `window` (minutes in the
/// default run), latency per window by each call's intended send time, and toolgate's CPU time and the audit
/// database's size (file + WAL) sampled at each window's end.
pub async fn steady(
    tg: &Proc,
    tokens: &[String],
    rate: u32,
    windows: usize,
    window: Duration,
    db: Option<&Path>,
    plan: &Plan,
) -> anyhow::Result<SteadyRun> {
    let proxied = Arc::new(target(mcp_uri(tg)?, tokens, Flow::Stateless).await?);
    let warm = closed_loop(proxied.clone(), 8, plan.warmup).await;
    anyhow::ensure!(
        warm.ok > 0,
        "steady: warm-up got no successful call: {}",
        warm.first_error.unwrap_or_default()
    );
    let pid = tg.pid();
    let db = db.map(Path::to_path_buf);
    let sample = {
        let db = db.clone();
        move || {
            (
                procs::cpu_ticks(pid).ok(),
                db.as_deref().map_or(0, storage::file_bytes),
            )
        }
    };
    let samples = Arc::new(Mutex::new(vec![sample()]));
    let started = Instant::now();
    let sampler = {
        let samples = samples.clone();
        let sample = sample.clone();
        tokio::spawn(async move {
            for k in 1..windows as u32 {
                tokio::time::sleep_until((started + window * k).into()).await;
                let s = sample();
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(s);
            }
        })
    };
    let total = open_loop_windows(proxied, rate, window * windows as u32, Some(window)).await;
    sampler.abort();
    tokio::time::sleep(CPU_SETTLE).await;
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    samples.truncate(windows);
    samples.push(sample());
    let per_window = total
        .windows
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let (before, after) = (samples.get(k), samples.get(k + 1));
            let cpu_ms = match (before, after) {
                (Some((Some(b), _)), Some((Some(a), _))) => Some(cpu_ms_per_call(
                    a.saturating_sub(*b),
                    plan.clock_ticks,
                    h.len(),
                )),
                _ => None,
            };
            SteadyWindow {
                calls: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                file_bytes: after.map_or(0, |s| s.1),
                cpu_ms,
            }
        })
        .collect();
    let cpu_ms = match (samples.first(), samples.last()) {
        (Some((Some(b), _)), Some((Some(a), _))) => Some(cpu_ms_per_call(
            a.saturating_sub(*b),
            plan.clock_ticks,
            total.calls(),
        )),
        _ => None,
    };
    Ok(SteadyRun {
        rate,
        window,
        windows: per_window,
        total,
        cpu_ms,
        start_file_bytes: samples.first().map_or(0, |s| s.1),
        db: None,
        rss_kib: tg.memory_kib()?,
    })
}
