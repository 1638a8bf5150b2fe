//! `toolgate-bench`: runs every benchmark except criterion's (engine percentiles, audit writer and verify,
//! memory, end to end direct vs an nginx hop vs through the real `toolgate` binary in both MCP flows, toolgate's
//! CPU per call, bytes per stored event, and with `--steady` a long run at one rate) and writes the figures into
//! BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use toolgate::audit::Durability;
use toolgate::auth::{mint_hs256, AuthSettings};
use toolgate_bench::e2e::{self, Paths, Plan};
use toolgate_bench::fixtures::policy_dir;
use toolgate_bench::inproc::{self, PgScratch};
use toolgate_bench::load::{Flow, Target};
use toolgate_bench::procs::{self, ToolgateSetup};
use toolgate_bench::report::{self, Machine, Results, Variant, MAIN_VARIANT};
use toolgate_bench::{nginx, sink, storage};

mod siem_runs;
use siem_runs::{siem, siem_outage};

#[derive(Parser)]
#[command(about = "toolgate's end-to-end, audit and memory benchmarks; writes BENCHMARKS.md")]
struct Args {
    /// The toolgate release binary to measure.
    #[arg(long, default_value = "target/release/toolgate")]
    toolgate: PathBuf,
    /// Where criterion left its estimates.
    #[arg(long, default_value = "target/criterion")]
    criterion_dir: PathBuf,
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Short phases, to check the harness (figures indicative only).
    #[arg(long)]
    quick: bool,
    /// Also run the steady variant: `sqlite` (stateless) at 2 000 calls/s for --steady-minutes minutes (in
    /// --quick mode, windows of 10 s instead of minutes).
    #[arg(long)]
    steady: bool,
    #[arg(long, default_value_t = 10)]
    steady_minutes: u32,
    /// Run only the soak instead (`make bench-soak`): toolgate at --soak-rate calls/s for --soak-minutes
    /// minutes (in --quick mode, windows of 10 s) while agents open and close sessions; writes its own section.
    #[arg(long)]
    soak: bool,
    #[arg(long, default_value_t = 30)]
    soak_minutes: u32,
    #[arg(long, default_value_t = 1000)]
    soak_rate: u32,
    /// Run only the SIEM comparison instead (`make bench-siem`): --siem-rate calls/s for --siem-seconds without
    /// sinks, then with all six sinks on local receivers; writes its own section.
    #[arg(long)]
    siem: bool,
    #[arg(long, default_value_t = 30)]
    siem_seconds: u32,
    #[arg(long, default_value_t = 1000)]
    siem_rate: u32,
    /// Run only the SIEM outage instead (`make bench-siem-outage`): every receiver down for this many minutes
    /// (in --quick mode, seconds) under --siem-outage-rate calls/s, then back; writes its own section.
    #[arg(long, default_value_t = 0)]
    siem_outage_minutes: u32,
    #[arg(long, default_value_t = 500)]
    siem_outage_rate: u32,
    /// Run only the scale-out comparison instead (`make bench-scale`): each --scale-rate (comma-separated) calls/s for --scale-seconds
    /// round robin through nginx over 1, 2 … --scale-instances toolgate instances on one PostgreSQL
    /// (TOOLGATE_TEST_POSTGRES_URL); writes its own section.
    #[arg(long)]
    scale: bool,
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    scale_rate: Vec<u32>,
    #[arg(long, default_value_t = 30)]
    scale_seconds: u32,
    #[arg(long, default_value_t = 3)]
    scale_instances: usize,
}

/// The fixed rates of the performance issue (its goals are stated at 1 000 and 2 000), calls per second.
const RATES: [u32; 3] = [1000, 2000, 5000];
/// The steady run's rate.
const STEADY_RATE: u32 = 2000;
/// Concurrent callers of the saturation (closed-loop) runs: enough to keep two cores busy.
const SATURATION_CONCURRENCY: usize = 32;
/// Open sessions for the memory measurement.
const SESSIONS: u64 = 1000;
/// Simulated agents (distinct tokens) in the end-to-end runs.
const AGENTS: usize = 4;

/// Phase lengths. The main variant (`sqlite`, stateless, with the nginx hop) gets the longest phases, the
/// session flow of the same configuration shorter ones, the other variants the shortest: together about the
/// eight minutes of the run before the nginx hop and the session flow were added.
struct Durations {
    rate: Duration,
    session_rate: Duration,
    variant_rate: Duration,
    saturation: Duration,
    warmup: Duration,
    writer: Duration,
    steady_window: Duration,
    /// How long toolgate is left alone, after start, to measure what it does with no request.
    idle: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let d = if args.quick {
        Durations {
            rate: Duration::from_secs(2),
            session_rate: Duration::from_secs(1),
            variant_rate: Duration::from_secs(1),
            saturation: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            writer: Duration::from_secs(1),
            steady_window: Duration::from_secs(10),
            idle: Duration::from_secs(3),
        }
    } else {
        Durations {
            rate: Duration::from_secs(8),
            session_rate: Duration::from_secs(5),
            variant_rate: Duration::from_secs(3),
            saturation: Duration::from_secs(4),
            warmup: Duration::from_secs(2),
            writer: Duration::from_secs(3),
            steady_window: Duration::from_secs(60),
            idle: Duration::from_secs(10),
        }
    };
    let started = Instant::now();
    if args.soak {
        return soak(&args, started);
    }
    if args.siem_outage_minutes > 0 {
        return siem_outage(&args, started);
    }
    if args.siem {
        return siem(&args, started);
    }
    if args.scale {
        return toolgate_bench::scale::main(&toolgate_bench::scale::ScaleArgs {
            toolgate: &args.toolgate,
            out: &args.out,
            quick: args.quick,
            rates: args.scale_rate.clone(),
            seconds: args.scale_seconds,
            instances: args.scale_instances,
        });
    }
    let machine = Machine::probe();
    let mut skipped = Vec::new();

    eprintln!("engine: per-call percentiles");
    let decision = match inproc::decision_percentiles(50_000) {
        Ok(p) => Some(p),
        Err(e) => {
            skipped.push(format!("per-call policy decision: {e}"));
            None
        }
    };
    let dlp_4k = inproc::dlp_4k_percentiles(20_000);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Results {
        machine,
        quick: args.quick,
        criterion_dir: args.criterion_dir.clone(),
        decision,
        dlp_4k,
        writers: Vec::new(),
        writer_notes: Vec::new(),
        rss_idle_kib: 0,
        idle: None,
        rss_sessions_kib: 0,
        sessions_opened: 0,
        variants: Vec::new(),
        nginx: None,
        steady: None,
        skipped,
        settings: format!(
            "rates {RATES:?} calls/s for {:?} per path (`sqlite` session flow {:?}, other variants {:?}), saturation {SATURATION_CONCURRENCY} callers for {:?}, {AGENTS} agents, {} sessions per target in the session flow, toolgate logs to a file{}",
            d.rate, d.session_rate, d.variant_rate, d.saturation, e2e::SESSIONS_PER_TARGET,
            if args.steady { format!(", steady run {STEADY_RATE} calls/s for {} × {:?}", args.steady_minutes, d.steady_window) } else { String::new() }
        ),
    };
    runtime.block_on(run(&args, &d, &mut results))?;
    results.machine.load_after = report::loadavg();
    report::write_into(&args.out, &results.render())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(args: &Args, d: &Durations, results: &mut Results) -> anyhow::Result<()> {
    let postgres = std::env::var("TOOLGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let scratch = tempfile::tempdir()?;

    eprintln!("audit writer: SQLite");
    for durability in [Durability::Full, Durability::Normal] {
        let db = scratch.path().join(format!("writer-{durability:?}.db"));
        let url = format!("sqlite://{}", db.display());
        let run =
            inproc::writer_run("sqlite", &url, "bench-writer", durability, 256, d.writer).await?;
        results.writers.push(run);
    }
    match &postgres {
        Some(base) => {
            eprintln!("audit writer: PostgreSQL");
            for durability in [Durability::Full, Durability::Normal] {
                let pg = PgScratch::create(base).await?;
                let chain = format!("bench-{}", uuid::Uuid::new_v4().simple());
                let run =
                    inproc::writer_run("postgresql", &pg.url, &chain, durability, 256, d.writer)
                        .await;
                pg.drop_now().await?;
                results.writers.push(run?);
            }
            results.writer_notes.push("PostgreSQL runs use a schema of their own and a unique chain id, dropped after the run.".into());
        }
        None => results.skipped.push(
            "PostgreSQL (audit writer and end to end): TOOLGATE_TEST_POSTGRES_URL is not set"
                .into(),
        ),
    }

    let toolgate = toolgate_binary(args)?;
    let upstream = procs::start_upstream(&procs::sibling_binary("mock-upstream")?)?;
    let tokens = tokens()?;
    let policies = std::fs::canonicalize(policy_dir())?;

    // Each instance below overrides its folder, database and chain.
    let base = ToolgateSetup {
        binary: &toolgate,
        dir: Path::new("."),
        policy_dir: &policies,
        upstream: upstream.addr,
        database_url: "",
        chain_id: "",
        otlp_endpoint: None,
        durability: None,
    };

    eprintln!("memory: idle and {SESSIONS} sessions");
    {
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let tg = procs::start_toolgate(&ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            chain_id: "bench-memory",
            ..base
        })?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        results.rss_idle_kib = tg.memory_kib()?.0;
        results.idle = Some(idle_run(&tg, d.idle).await?);
        let target = Arc::new(Target::new(e2e::mcp_uri(&tg)?, &tokens)?);
        results.sessions_opened = open_sessions(&target, SESSIONS).await?;
        results.rss_sessions_kib = tg.memory_kib()?.0;
        tg.stop();
    }

    let plan = |rate_duration| Plan {
        rates: RATES.to_vec(),
        rate_duration,
        saturation: d.saturation,
        concurrency: SATURATION_CONCURRENCY,
        warmup: d.warmup,
        clock_ticks: procs::clock_ticks_per_sec(),
    };
    let direct_uri: hyper::Uri = format!("http://{}/mcp", upstream.addr).parse()?;
    let direct = Arc::new(Target::new(direct_uri.clone(), &tokens)?);

    // The bare reverse-proxy hop, in front of the same mock, for the main variant.
    let nginx_dir = tempfile::tempdir()?;
    let nginx_proc = match nginx::find() {
        Some(binary) => match nginx::start(&binary, nginx_dir.path(), upstream.addr) {
            Ok(p) => {
                results.nginx = Some(format!(
                    "{}, `worker_processes {}` = one per CPU like toolgate's runtime, keep-alive to the upstream, `access_log off`",
                    nginx::version(&binary),
                    nginx::WORKER_PROCESSES
                ));
                Some(p)
            }
            Err(e) => {
                results
                    .skipped
                    .push(format!("nginx hop: nginx did not start: {e:#}"));
                None
            }
        },
        None => {
            results.skipped.push("nginx hop: nginx is not installed (`scripts/install-bench-deps.sh` installs it; `make bench` runs it)".into());
            None
        }
    };
    let nginx_target = match &nginx_proc {
        Some(p) => Some(Arc::new(Target::new(
            format!("http://{}/mcp", p.addr).parse()?,
            &tokens,
        )?)),
        None => None,
    };

    {
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let s = ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            chain_id: "bench-e2e",
            ..base
        };
        let paths = Paths {
            direct: direct.clone(),
            nginx: nginx_target.clone(),
        };
        let v = run_variant(
            MAIN_VARIANT,
            Flow::Stateless,
            s,
            &tokens,
            &paths,
            &plan(d.rate),
        )
        .await?;
        results.variants.push(v);
    }
    {
        // The same configuration in the 2025-era session flow, direct calls in sessions of the mock too.
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let s = ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            chain_id: "bench-e2e-session",
            ..base
        };
        let paths = Paths {
            direct: Arc::new(e2e::target(direct_uri.clone(), &tokens, Flow::Session).await?),
            nginx: None,
        };
        let v = run_variant(
            MAIN_VARIANT,
            Flow::Session,
            s,
            &tokens,
            &paths,
            &plan(d.session_rate),
        )
        .await?;
        results.variants.push(v);
    }
    let paths = Paths {
        direct: direct.clone(),
        nginx: None,
    };
    let short = plan(d.variant_rate);
    {
        // The same without an fsync per commit: how much of the overhead is the disk's.
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let s = ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            durability: Some("normal"),
            chain_id: "bench-e2e-normal",
            ..base
        };
        let v = run_variant(
            "sqlite, durability normal",
            Flow::Stateless,
            s,
            &tokens,
            &paths,
            &short,
        )
        .await?;
        results.variants.push(v);
    }

    if let Some(pg_base) = &postgres {
        let pg = PgScratch::create(pg_base).await?;
        let chain = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir()?;
        let s = ToolgateSetup {
            dir: dir.path(),
            database_url: &pg.url,
            chain_id: &chain,
            ..base
        };
        let outcome = run_variant("postgresql", Flow::Stateless, s, &tokens, &paths, &short).await;
        pg.drop_now().await?;
        results.variants.push(outcome?);
    }

    if tracing_export_landed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(sink::Received::default());
        let sink_task = tokio::spawn(sink::serve(listener, received.clone()));
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let s = ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            otlp_endpoint: Some(&endpoint),
            chain_id: "bench-otlp",
            ..base
        };
        let mut v = run_variant(
            "sqlite + OTLP export",
            Flow::Stateless,
            s,
            &tokens,
            &paths,
            &short,
        )
        .await?;
        v.note = format!(
            "traces to a local OTLP/HTTP sink, which received {} export requests ({} bytes)",
            received.requests(),
            received.bytes()
        );
        if received.requests() == 0 {
            v.note
                .push_str(": toolgate exported nothing, so these figures are without export");
        }
        results.variants.push(v);
        sink_task.abort();
    } else {
        results.skipped.push("tracing export (`telemetry.otlp_endpoint`): pending, the traces feature has not landed (no OpenTelemetry exporter in Cargo.lock)".into());
    }
    if let Some(p) = nginx_proc {
        p.stop();
    }

    if args.steady {
        let minutes = args.steady_minutes.max(1) as usize;
        eprintln!(
            "steady: {STEADY_RATE} calls/s for {minutes} × {:?}",
            d.steady_window
        );
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let tg = procs::start_toolgate(&ToolgateSetup {
            dir: dir.path(),
            database_url: &url,
            chain_id: "bench-steady",
            ..base
        })?;
        let db = storage::sqlite_path(&url).map(Path::to_path_buf);
        let mut run = e2e::steady(
            &tg,
            &tokens,
            STEADY_RATE,
            minutes,
            d.steady_window,
            db.as_deref(),
            &plan(d.rate),
        )
        .await;
        tg.stop();
        if let (Ok(run), Some(db)) = (&mut run, &db) {
            run.db = storage::measure(db).await.ok();
        }
        results.steady = Some(run?);
    }
    upstream.stop();
    Ok(())
}

/// The soak run alone: its own toolgate, its own section of the report.
fn soak(args: &Args, started: Instant) -> anyhow::Result<()> {
    let window = if args.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(60)
    };
    let mut machine = Machine::probe();
    let toolgate = toolgate_binary(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(async {
        let upstream = procs::start_upstream(&procs::sibling_binary("mock-upstream")?)?;
        let policies = std::fs::canonicalize(policy_dir())?;
        let dir = tempfile::tempdir()?;
        let url = sqlite_url(dir.path());
        let tg = procs::start_toolgate(&ToolgateSetup {
            binary: &toolgate,
            dir: dir.path(),
            policy_dir: &policies,
            upstream: upstream.addr,
            database_url: &url,
            chain_id: "bench-soak",
            otlp_endpoint: None,
            durability: None,
        })?;
        eprintln!(
            "soak: {} calls/s for {} × {window:?}",
            args.soak_rate, args.soak_minutes
        );
        let run = toolgate_bench::soak::soak(
            &tg,
            &tokens()?,
            args.soak_rate,
            args.soak_minutes.max(1) as usize,
            window,
        )
        .await;
        tg.stop();
        upstream.stop();
        run
    })?;
    machine.load_after = report::loadavg();
    let section = report::soak::render(&machine, &run, args.quick);
    write_section(
        args,
        (report::soak::SOAK_BEGIN, report::soak::SOAK_END),
        "soak",
        &section,
        started,
    )
}

/// Replaces the section between `markers` of the report with `section`, and says so with the time the run took.
fn write_section(
    args: &Args,
    markers: (&str, &str),
    name: &str,
    section: &str,
    started: Instant,
) -> anyhow::Result<()> {
    report::write_between(&args.out, markers.0, markers.1, section)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote the {name} section of {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether the proxy has an OpenTelemetry exporter to switch on.
fn tracing_export_landed() -> bool {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    std::fs::read_to_string(lock).is_ok_and(|l| l.contains("name = \"opentelemetry-otlp\""))
}

/// CPU time and context switches of `tg` over `window` with no request (its timers and background tasks).
async fn idle_run(tg: &procs::Proc, window: Duration) -> anyhow::Result<report::IdleRun> {
    let (ticks, switches, start) = (tg.cpu_ticks()?, tg.context_switches()?, Instant::now());
    tokio::time::sleep(window).await;
    let (ticks_after, switches_after) = (tg.cpu_ticks()?, tg.context_switches()?);
    Ok(report::IdleRun {
        secs: start.elapsed().as_secs_f64(),
        cpu_ms: procs::ticks_to_ms(ticks_after - ticks, procs::clock_ticks_per_sec()),
        context_switches: switches_after - switches,
    })
}

fn tokens() -> anyhow::Result<Vec<String>> {
    let settings = AuthSettings {
        hs256_secret: Some(procs::SECRET.to_owned()),
        ..AuthSettings::default()
    };
    (0..AGENTS)
        .map(|i| {
            mint_hs256(
                &settings,
                &format!("bench-agent-{i}"),
                Some("bench"),
                &["developer".to_owned()],
                Duration::from_secs(3600),
            )
            .map_err(anyhow::Error::from)
        })
        .collect()
}

/// The audit database of one toolgate instance, in its scratch folder.
/// The toolgate binary under test (`--toolgate`), as an absolute path; a clear error when it was not built.
fn toolgate_binary(args: &Args) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(&args.toolgate).with_context(|| {
        format!(
            "{} (build it: cargo build --release -p toolgate)",
            args.toolgate.display()
        )
    })
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("audit.db").display())
}

/// Opens `n` 2025-era sessions (16 at a time) and keeps them: nothing ends them before the measurement.
async fn open_sessions(target: &Arc<Target>, n: u64) -> anyhow::Result<u64> {
    let mut opened = 0;
    let mut first_error = None;
    for chunk in 0..n.div_ceil(16) {
        let mut batch = Vec::new();
        for i in chunk * 16..((chunk + 1) * 16).min(n) {
            let target = target.clone();
            batch.push(tokio::spawn(async move { target.initialize(i).await }));
        }
        for task in batch {
            match task.await? {
                Ok(_) => opened += 1,
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    if opened < n {
        anyhow::bail!(
            "only {opened} of {n} sessions opened: {}",
            first_error.unwrap_or_default()
        );
    }
    Ok(opened)
}

/// Starts toolgate as `setup` says, measures it as [`e2e::measure`] does, stops it and, for SQLite, measures
/// what its database holds.
async fn run_variant(
    name: &str,
    flow: Flow,
    setup: ToolgateSetup<'_>,
    tokens: &[String],
    paths: &Paths,
    plan: &Plan,
) -> anyhow::Result<Variant> {
    eprintln!("end to end: {name} ({})", flow.label());
    let tg = procs::start_toolgate(&setup)?;
    let v = e2e::measure(name, flow, &tg, tokens, paths, plan).await;
    tg.stop();
    let mut v = v?;
    if let Some(db) = storage::sqlite_path(setup.database_url) {
        match storage::measure(db).await {
            Ok(size) => v.db = Some(size),
            Err(e) => v.note = format!("audit storage not measured: {e:#}"),
        }
    }
    Ok(v)
}
