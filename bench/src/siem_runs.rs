//! The SIEM runs of `toolgate-bench` (`make bench-siem`, `make bench-siem-outage`): each starts its own toolgate
//! with six sinks on local receivers and writes its own section of the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use toolgate_bench::e2e;
use toolgate_bench::fixtures::policy_dir;
use toolgate_bench::load::Flow;
use toolgate_bench::procs::{self, ToolgateSetup};
use toolgate_bench::report::{self, Machine};

use super::{sqlite_url, tokens, toolgate_binary, write_section, Args};

/// The SIEM comparison alone: two toolgates side by side, one without sinks and one with all six on local
/// receivers, loaded in turn, slice after slice, so both see the same machine (on two shared cores a p99 moves
/// by more between two runs a minute apart than sinks move it); its own section.
pub(super) fn siem(args: &Args, started: Instant) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicBool;
    use toolgate_bench::siem;

    let duration = Duration::from_secs(if args.quick {
        4
    } else {
        u64::from(args.siem_seconds.max(1))
    });
    let rounds: u32 = if args.quick { 2 } else { 6 };
    let slice = duration / rounds;
    let warmup = Duration::from_secs(2);
    let mut machine = Machine::probe();
    let toolgate = toolgate_binary(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(async {
        let upstream = procs::start_upstream(&procs::sibling_binary("mock-upstream")?)?;
        let policies = std::fs::canonicalize(policy_dir())?;
        let tokens = tokens()?;
        let admin = format!("\n[admin]\ntoken = {:?}\n", siem::ADMIN_TOKEN);
        // [without sinks, with sinks]: each its own database and receivers.
        let mut variants = Vec::new();
        for with_sinks in [false, true] {
            let dir = tempfile::tempdir()?;
            let url = sqlite_url(dir.path());
            let receivers = siem::receivers(dir.path()).await?;
            let extra = if with_sinks {
                format!("{admin}{}", receivers.config)
            } else {
                admin.clone()
            };
            let tg = procs::start_toolgate_with(
                &ToolgateSetup {
                    binary: &toolgate,
                    dir: dir.path(),
                    policy_dir: &policies,
                    upstream: upstream.addr,
                    database_url: &url,
                    chain_id: "bench-siem",
                    otlp_endpoint: None,
                    durability: None,
                },
                &extra,
            )?;
            let target = Arc::new(e2e::target(e2e::mcp_uri(&tg)?, &tokens, Flow::Stateless).await?);
            eprintln!(
                "siem: {} sinks: warm-up",
                if with_sinks { "six" } else { "no" }
            );
            let _ = toolgate_bench::load::open_loop(target.clone(), args.siem_rate, warmup).await;
            if with_sinks {
                siem::wait_caught_up(&tg, Duration::from_secs(60)).await;
            }
            variants.push((dir, receivers, tg, target));
        }
        let sinks_tg = &variants[1].2;
        let delivered_before = siem::delivered(sinks_tg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn(siem::sample_lags(sinks_tg.addr, stop.clone()));
        let mut merged = [None::<toolgate_bench::load::Outcome>, None];
        let mut cpu = [0.0f64; 2];
        let mut p99s = Vec::new();
        eprintln!(
            "siem: {} calls/s, {rounds} rounds of {slice:?} each without and with sinks",
            args.siem_rate
        );
        let mut catch_up = None;
        for round in 0..rounds {
            let mut p99 = [0.0; 2];
            for (i, (_, _, tg, target)) in variants.iter().enumerate() {
                let cpu_before = siem::cpu_seconds(tg)?;
                let outcome =
                    toolgate_bench::load::open_loop(target.clone(), args.siem_rate, slice).await;
                // The sinks' work on what the slice wrote counts against them: the sinks toolgate's CPU is
                // taken once it caught up (it rests while the other one is loaded anyway).
                if i == 1 {
                    let waited = siem::wait_caught_up(tg, Duration::from_secs(60)).await;
                    if round + 1 == rounds {
                        catch_up = waited;
                    }
                }
                cpu[i] += siem::cpu_seconds(tg)? - cpu_before;
                p99[i] = outcome.ms(0.99);
                match &mut merged[i] {
                    Some(m) => m.merge(outcome),
                    slot => *slot = Some(outcome),
                }
            }
            p99s.push((p99[0], p99[1]));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let lags = sampler.await?;
        let (_, receivers, sinks_tg, _) = &variants[1];
        let delivered = siem::delivered(sinks_tg)?;
        let mut sinks = std::collections::BTreeMap::new();
        for (i, name) in siem::SINKS.iter().enumerate() {
            let mut f = lags.get(*name).cloned().unwrap_or_default();
            f.delivered = delivered.get(*name).copied().unwrap_or(0)
                - delivered_before.get(*name).copied().unwrap_or(0);
            f.received = receivers.received.count(i);
            sinks.insert((*name).to_owned(), f);
        }
        for (_, _, tg, _) in variants {
            tg.stop();
        }
        upstream.stop();
        let [Some(without), Some(with)] = merged else {
            anyhow::bail!("no round ran");
        };
        anyhow::Ok(siem::SiemRun {
            rate: args.siem_rate,
            duration,
            without,
            with,
            cpu_without: cpu[0],
            cpu_with: cpu[1],
            sinks,
            catch_up,
            rounds: p99s,
        })
    })?;
    machine.load_after = report::loadavg();
    let section = report::siem::render(&machine, &run, args.quick);
    write_section(
        args,
        (report::siem::SIEM_BEGIN, report::siem::SIEM_END),
        "SIEM",
        &section,
        started,
    )
}

/// The SIEM outage run alone: one toolgate with six sinks whose receivers go down, then come back.
pub(super) fn siem_outage(args: &Args, started: Instant) -> anyhow::Result<()> {
    use toolgate_bench::{siem, siem_outage};

    let unit = if args.quick { 1 } else { 60 };
    let outage = Duration::from_secs(u64::from(args.siem_outage_minutes) * unit);
    // A sample every 30 s (every 2 s in quick mode): enough points to see a trend, few enough to read.
    let every = Duration::from_secs(if args.quick { 2 } else { 30 });
    let mut machine = Machine::probe();
    let toolgate = toolgate_binary(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(async {
        let upstream = procs::start_upstream(&procs::sibling_binary("mock-upstream")?)?;
        let policies = std::fs::canonicalize(policy_dir())?;
        let tokens = tokens()?;
        let rate = args.siem_outage_rate;
        // A toolgate of its own (database, receivers) with the six sinks, warmed up with every sink caught up.
        let launch = |chain_id: &'static str| {
            let (toolgate, policies, tokens) = (&toolgate, &policies, &tokens);
            async move {
                let dir = tempfile::tempdir()?;
                let url = sqlite_url(dir.path());
                let receivers = siem::receivers(dir.path()).await?;
                let extra = format!(
                    "\n[admin]\ntoken = {:?}\n{}",
                    siem::ADMIN_TOKEN,
                    receivers.config
                );
                let tg = Arc::new(procs::start_toolgate_with(
                    &ToolgateSetup {
                        binary: toolgate,
                        dir: dir.path(),
                        policy_dir: policies,
                        upstream: upstream.addr,
                        database_url: &url,
                        chain_id,
                        otlp_endpoint: None,
                        durability: None,
                    },
                    &extra,
                )?);
                let target =
                    Arc::new(e2e::target(e2e::mcp_uri(&tg)?, tokens, Flow::Stateless).await?);
                eprintln!("siem outage ({chain_id}): warm-up at {rate} calls/s");
                let _ =
                    toolgate_bench::load::open_loop(target.clone(), rate, Duration::from_secs(10))
                        .await;
                siem::wait_caught_up(&tg, Duration::from_secs(120)).await;
                anyhow::Ok((dir, receivers, tg, target))
            }
        };
        // The control: the same load for the same time with every receiver up, so what the outage holds is
        // told apart from what the load alone grows (page caches, allocator) on this host.
        let control = {
            let (_dir, _receivers, tg, target) = launch("bench-siem-control").await?;
            eprintln!("siem outage: control, receivers up for {outage:?} at {rate} calls/s");
            let load = tokio::spawn(toolgate_bench::load::open_loop(target, rate, outage));
            let samples = sample_for(&tg, "control", outage, every).await?;
            let _ = load.await?;
            Arc::try_unwrap(tg)
                .map_err(|_| anyhow::anyhow!("toolgate still shared"))?
                .stop();
            samples
        };
        let (_dir, receivers, tg, target) = launch("bench-siem-outage").await?;
        let (rss_before_kib, _) = tg.memory_kib()?;

        eprintln!("siem outage: receivers down for {outage:?} at {rate} calls/s");
        receivers.received.set_down(true);
        let down_at = Instant::now();
        let load = tokio::spawn(toolgate_bench::load::open_loop(target, rate, outage));
        let mut samples = sample_for(&tg, "outage", outage, every).await?;
        let sample = |phase: &'static str, at: Duration| {
            let tg = tg.clone();
            tokio::task::spawn_blocking(move || siem_outage::sample(&tg, at, phase))
        };
        let load = load.await?;
        // Asked again while it does not answer with the sinks (an overloaded moment): an empty answer left the
        // table of lags and counts at the return empty.
        let mut lags = std::collections::BTreeMap::new();
        for _ in 0..20 {
            let addr = tg.addr;
            lags = tokio::task::spawn_blocking(move || siem::lags_at(addr))
                .await?
                .unwrap_or_default();
            if lags.len() == siem::SINKS.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let lag_at_return = lags
            .into_iter()
            .map(|(sink, (events, _))| (sink, events))
            .collect();
        let counted: Vec<u64> = (0..siem::SINKS.len())
            .map(|i| receivers.received.count(i))
            .collect();

        eprintln!("siem outage: receivers back; waiting for the catch-up");
        receivers.received.set_down(false);
        let back_at = Instant::now();
        let deadline = Duration::from_secs(if args.quick { 60 } else { 1800 });
        let mut catch_up = None;
        while back_at.elapsed() < deadline {
            let s = sample("catch-up", down_at.elapsed()).await??;
            let done = s.max_lag_events == Some(0);
            samples.push(s);
            if done {
                catch_up = Some(back_at.elapsed());
                break;
            }
            tokio::time::sleep(every.min(Duration::from_secs(5))).await;
        }
        let received_after = siem::SINKS
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).to_owned(), receivers.received.count(i) - counted[i]))
            .collect();
        Arc::try_unwrap(tg)
            .map_err(|_| anyhow::anyhow!("toolgate still shared"))?
            .stop();
        upstream.stop();
        anyhow::Ok(siem_outage::OutageRun {
            rate,
            outage,
            load,
            rss_before_kib,
            samples,
            catch_up,
            lag_at_return,
            received_after,
            control,
        })
    })?;
    machine.load_after = report::loadavg();
    let section = siem_outage::render(&machine, &run, args.quick);
    write_section(
        args,
        (siem_outage::OUTAGE_BEGIN, siem_outage::OUTAGE_END),
        "SIEM outage",
        &section,
        started,
    )
}

/// Samples `tg` as `phase` every `every` for `span` from now (the times since now).
async fn sample_for(
    tg: &Arc<procs::Proc>,
    phase: &'static str,
    span: Duration,
    every: Duration,
) -> anyhow::Result<Vec<toolgate_bench::siem_outage::Sample>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < span {
        tokio::time::sleep(every.min(span.saturating_sub(started.elapsed()))).await;
        let (tg, at) = (tg.clone(), started.elapsed());
        samples.push(
            tokio::task::spawn_blocking(move || {
                toolgate_bench::siem_outage::sample(&tg, at, phase)
            })
            .await??,
        );
    }
    Ok(samples)
}
