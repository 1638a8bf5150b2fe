//! The scale-out run (`make bench-scale`): what running several toolgate instances on one PostgreSQL costs.
//!
//! Two cores cannot show throughput scaling (every instance, nginx, PostgreSQL, the mock upstream and the load
//! generator share them), so the run keeps the total rate fixed and changes only the number of instances behind
//! nginx (round robin, the 2026-07-28 stateless flow, which needs no shared session state): 1, 2, 3 … on a
//! fresh database each. What changes with the count is the price of scale-out: each instance's own group
//! commits (fewer calls share a commit), its background work (polls, flushes, checkpoints) and its connections.
//!
//! Per instance count: start the instances and nginx, warm up, then an idle window (background commits and CPU
//! with no load), then one load window per rate, and two more at the first rate in the 2025-era session flow,
//! nginx hashing each agent's token to one instance, then round robin (sessions are shared through the database);
//! figures: end-to-end and per-instance latency (by nginx's `X-Toolgate-Replica`
//! response header), errors, toolgate's CPU per call (all instances), PostgreSQL's CPU per call (its processes'
//! `/proc/PID/stat`: the run database's backends and the server-wide helpers), and commits and rows written
//! per call (`pg_stat_database` of the step's database, less the idle window's background rate).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use toolgate::auth::{mint_hs256, AuthSettings};

use crate::fixtures::policy_dir;
use crate::load::{closed_loop, open_loop, Flow, Outcome, Target};
use crate::procs::{self, Proc, ToolgateSetup};
use crate::report::{self, Machine};

pub mod balancer;
pub mod postgres;
pub mod section;

use balancer::Balance;
use postgres::{Counters, CpuSample, CpuSplit, ScaleDatabase};

/// Extra configuration of every instance: behind nginx every connection and every failed authentication
/// comes from one address (the hardening's per-IP caps are for clients, not for a load balancer).
const BEHIND_BALANCER: &str =
    "\n[server]\nmax_connections_per_ip = 4096\nauth_failures_per_minute = 100000\n";
/// The server publishes an idle backend's statistics within 10 s; the run waits this long before reading them.
const STATS_SETTLE: Duration = Duration::from_secs(11);
/// Pause after the load before reading CPU times, for work still finishing after the last answer.
const CPU_SETTLE: Duration = Duration::from_millis(200);
/// Agents of the stateless flow (as in the other end-to-end runs).
const AGENTS: usize = 4;
/// Agents and sessions of the session flow (3 sessions per agent): more agents than the stateless flow's, so
/// that hashing them spreads them over the instances about evenly.
const SESSION_AGENTS: usize = 12;
const SESSIONS: usize = 36;

/// What the run does.
pub struct ScalePlan {
    /// Total calls per second, each the same for every instance count (one load window per rate).
    pub rates: Vec<u32>,
    pub load: Duration,
    pub idle: Duration,
    pub warmup: Duration,
    /// Instance counts to measure, e.g. `[1, 2, 3]`.
    pub instances: Vec<usize>,
    /// Also the 2025-era session flow at the first rate, nginx hashing each agent to one instance, then round robin.
    pub sessions: bool,
    pub clock_ticks: u64,
}

/// One instance of a step, as the load saw it.
pub struct InstanceFigures {
    pub chain_id: String,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Its CPU time during the load divided by the calls it answered.
    pub cpu_ms: Option<f64>,
    /// Audit events its chain holds at the end of the step.
    pub events: i64,
}

/// One instance count measured at one rate.
pub struct ScaleStep {
    pub instances: usize,
    pub rate: u32,
    pub flow: Flow,
    pub balance: Balance,
    pub outcome: Outcome,
    pub per_instance: Vec<InstanceFigures>,
    /// All instances' CPU time during the load per call, ms.
    pub toolgate_cpu_ms: f64,
    /// PostgreSQL CPU time during the load window (ticks), and during the idle window.
    pub pg_load: CpuSplit,
    pub pg_idle: CpuSplit,
    pub load_secs: f64,
    pub idle_secs: f64,
    /// `pg_stat_database` deltas of the step's database over the idle window and from the load's start to
    /// [`STATS_SETTLE`] after its end (`counted_secs` long).
    pub idle_counters: Counters,
    pub load_counters: Counters,
    pub counted_secs: f64,
    /// Audit events written during the load (all chains).
    pub events: i64,
}

impl ScaleStep {
    fn per_call(&self, v: f64) -> f64 {
        v / self.outcome.calls().max(1) as f64
    }

    /// The load's commits less the background rate of the idle window over the same time, per call.
    pub fn commits_per_call(&self) -> f64 {
        self.per_call(self.net(self.load_counters.commits, self.idle_counters.commits))
    }

    /// Rows inserted and updated by the load (net of background), per call.
    pub fn rows_per_call(&self) -> (f64, f64) {
        (
            self.per_call(self.net(self.load_counters.inserted, self.idle_counters.inserted)),
            self.per_call(self.net(self.load_counters.updated, self.idle_counters.updated)),
        )
    }

    fn net(&self, load: i64, idle: i64) -> f64 {
        load as f64 - idle as f64 / self.idle_secs.max(1e-9) * self.counted_secs
    }

    /// Background commits per second with no load (all instances).
    pub fn idle_commits_per_sec(&self) -> f64 {
        self.idle_counters.commits as f64 / self.idle_secs.max(1e-9)
    }

    /// Audit events per commit of the load.
    pub fn events_per_commit(&self) -> f64 {
        self.events as f64
            / self
                .net(self.load_counters.commits, self.idle_counters.commits)
                .max(1.0)
    }
}

/// The whole run.
pub struct ScaleRun {
    pub rates: Vec<u32>,
    pub load: Duration,
    pub idle: Duration,
    pub steps: Vec<ScaleStep>,
    pub nginx: String,
    pub postgres_version: String,
    pub max_connections: i64,
    pub clock_ticks: u64,
    /// False when no `postgres` process was visible in `/proc` (the server runs elsewhere): CPU not measured.
    pub pg_cpu_seen: bool,
}

/// What `toolgate-bench --scale` asks for.
pub struct ScaleArgs<'a> {
    pub toolgate: &'a Path,
    pub out: &'a Path,
    pub quick: bool,
    pub rates: Vec<u32>,
    pub seconds: u32,
    /// Measure 1, 2 … this many instances.
    pub instances: usize,
}

/// `make bench-scale`: the whole run on the server of `TOOLGATE_TEST_POSTGRES_URL`, its section written into
/// the report.
pub fn main(args: &ScaleArgs<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = std::env::var("TOOLGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .context("the scale-out run needs PostgreSQL: set TOOLGATE_TEST_POSTGRES_URL (it creates and drops a database per step)")?;
    let nginx = crate::nginx::find()
        .context("the scale-out run needs nginx (scripts/install-bench-deps.sh)")?;
    let toolgate = std::fs::canonicalize(args.toolgate).with_context(|| {
        format!(
            "{} (build it: cargo build --release -p toolgate)",
            args.toolgate.display()
        )
    })?;
    let plan = ScalePlan {
        rates: args.rates.clone(),
        load: Duration::from_secs(if args.quick {
            5
        } else {
            u64::from(args.seconds.max(1))
        }),
        idle: Duration::from_secs(if args.quick { 5 } else { 15 }),
        warmup: Duration::from_secs(2),
        instances: (1..=args.instances.max(1)).collect(),
        sessions: true,
        clock_ticks: procs::clock_ticks_per_sec(),
    };
    let mut machine = Machine::probe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(async {
        let policies = std::fs::canonicalize(policy_dir())?;
        let tokens = agent_tokens("bench-agent", AGENTS)?;
        run(&toolgate, &nginx, &policies, &base, &tokens, &plan).await
    })?;
    machine.load_after = report::loadavg();
    let rendered = section::render(&machine, &run, args.quick);
    report::write_between(
        args.out,
        section::SCALE_BEGIN,
        section::SCALE_END,
        &rendered,
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote the scale-out section of {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs every step of `plan` against the real `toolgate` binary, on databases created on `base_url`'s server.
pub async fn run(
    toolgate: &Path,
    nginx: &Path,
    policies: &Path,
    base_url: &str,
    tokens: &[String],
    plan: &ScalePlan,
) -> anyhow::Result<ScaleRun> {
    let upstream = procs::start_upstream(&procs::sibling_binary("mock-upstream")?)?;
    let mut steps = Vec::new();
    let mut server = (0, String::new());
    let mut pg_cpu_seen = true;
    for &n in &plan.instances {
        let db = ScaleDatabase::create(base_url).await?;
        server = db.server().await.unwrap_or_default();
        pg_cpu_seen &= !CpuSample::now().is_empty();
        let outcome = step(toolgate, nginx, policies, &upstream, &db, tokens, plan, n).await;
        db.drop_now().await?;
        steps.extend(outcome?);
    }
    upstream.stop();
    Ok(ScaleRun {
        rates: plan.rates.clone(),
        load: plan.load,
        idle: plan.idle,
        steps,
        nginx: crate::nginx::version(nginx),
        postgres_version: server.1,
        max_connections: server.0,
        clock_ticks: plan.clock_ticks,
        pg_cpu_seen,
    })
}

/// Each instance's CPU ticks now (None for one whose `/proc` could not be read).
fn toolgate_ticks(instances: &[(Proc, tempfile::TempDir)]) -> Vec<Option<u64>> {
    instances.iter().map(|(p, _)| p.cpu_ticks().ok()).collect()
}

/// The instances of one step, the database they share, and what every measurement of the step reads.
struct Bed<'a> {
    db: &'a ScaleDatabase,
    instances: Vec<(Proc, tempfile::TempDir)>,
    plan: &'a ScalePlan,
    /// The idle window: start and end (time, counters, PostgreSQL CPU) and who the processes served.
    idle: (Instant, Counters, CpuSample, Instant, Counters, CpuSample),
    idle_serving: std::collections::HashMap<u32, postgres::Serves>,
}

#[allow(clippy::too_many_arguments)]
async fn step(
    toolgate: &Path,
    nginx: &Path,
    policies: &Path,
    upstream: &Proc,
    db: &ScaleDatabase,
    tokens: &[String],
    plan: &ScalePlan,
    n: usize,
) -> anyhow::Result<Vec<ScaleStep>> {
    eprintln!("scale: {n} instance(s) on database {}", db.name);
    let mut instances = Vec::with_capacity(n);
    for i in 1..=n {
        let dir = tempfile::tempdir()?;
        let chain = format!("scale-{i}");
        let tg = procs::start_toolgate_with(
            &ToolgateSetup {
                binary: toolgate,
                dir: dir.path(),
                policy_dir: policies,
                upstream: upstream.addr,
                database_url: &db.url,
                chain_id: &chain,
                otlp_endpoint: None,
                durability: None,
            },
            BEHIND_BALANCER,
        )?;
        instances.push((tg, dir));
    }
    let addrs: Vec<SocketAddr> = instances.iter().map(|(p, _)| p.addr).collect();
    let lb_dir = tempfile::tempdir()?;
    let lb = balancer::start(nginx, lb_dir.path(), &addrs, Balance::RoundRobin)?;
    let uri: hyper::Uri = format!("http://{}/mcp/bench", lb.addr).parse()?;
    let target = Arc::new(Target::new(uri, tokens)?.with_route_header(balancer::ROUTE_HEADER));
    warm_up(&target, plan).await?;

    eprintln!(
        "  idle {:?} (after {STATS_SETTLE:?} for the statistics)",
        plan.idle
    );
    tokio::time::sleep(STATS_SETTLE).await;
    let idle_start = (Instant::now(), db.counters().await?, CpuSample::now());
    tokio::time::sleep(plan.idle).await;
    let idle_end = (Instant::now(), db.counters().await?, CpuSample::now());
    let bed = Bed {
        db,
        plan,
        idle_serving: db.serving().await?,
        idle: (
            idle_start.0,
            idle_start.1,
            idle_start.2,
            idle_end.0,
            idle_end.1,
            idle_end.2,
        ),
        instances,
    };
    let mut steps = Vec::with_capacity(plan.rates.len() + 1);
    for &rate in &plan.rates {
        steps.push(
            bed.measure(&target, rate, Flow::Stateless, Balance::RoundRobin)
                .await?,
        );
    }
    lb.stop();

    if plan.sessions {
        // 2025-era sessions are shared through the database: under round robin each call of a session may land
        // on another instance (a cache miss reads the session once there); agent hashing keeps an agent on one.
        let rate = plan.rates.first().copied().unwrap_or(1000);
        for balance in [Balance::Agent, Balance::RoundRobin] {
            let lb_dir = tempfile::tempdir()?;
            let lb = balancer::start(nginx, lb_dir.path(), &addrs, balance)?;
            let uri = format!("http://{}/mcp/bench", lb.addr).parse()?;
            let target = Target::new(uri, &agent_tokens("scale-agent", SESSION_AGENTS)?)?
                .with_route_header(balancer::ROUTE_HEADER)
                .open_sessions(SESSIONS)
                .await?;
            let target = Arc::new(target);
            warm_up(&target, plan).await?;
            tokio::time::sleep(STATS_SETTLE).await;
            steps.push(bed.measure(&target, rate, Flow::Session, balance).await?);
            lb.stop();
        }
    }
    for (tg, _dir) in bed.instances {
        tg.stop();
    }
    Ok(steps)
}

async fn warm_up(target: &Arc<Target>, plan: &ScalePlan) -> anyhow::Result<()> {
    let warm = closed_loop(target.clone(), 8, plan.warmup).await;
    anyhow::ensure!(
        warm.ok > 0,
        "scale: warm-up through nginx got no successful call: {}",
        warm.first_error.unwrap_or_default()
    );
    Ok(())
}

/// Tokens of `n` agents named `<prefix>-<i>`, signed with the secret the instances trust.
fn agent_tokens(prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let settings = AuthSettings {
        hs256_secret: Some(procs::SECRET.to_owned()),
        ..AuthSettings::default()
    };
    (0..n)
        .map(|i| {
            mint_hs256(
                &settings,
                &format!("{prefix}-{i}"),
                Some("bench"),
                &["developer".to_owned()],
                Duration::from_secs(3600),
            )
            .map_err(anyhow::Error::from)
        })
        .collect()
}

impl Bed<'_> {
    /// One load window at `rate` through `target`, then [`STATS_SETTLE`] for the statistics.
    async fn measure(
        &self,
        target: &Arc<Target>,
        rate: u32,
        flow: Flow,
        balance: Balance,
    ) -> anyhow::Result<ScaleStep> {
        let (db, plan, n) = (self.db, self.plan, self.instances.len());
        let load_start = (
            Instant::now(),
            db.counters().await?,
            CpuSample::now(),
            toolgate_ticks(&self.instances),
        );
        let events_before: i64 = db.events_by_chain().await?.iter().map(|(_, c)| c).sum();

        eprintln!(
            "  {rate} calls/s for {:?} through nginx ({}, {})",
            plan.load,
            flow.label(),
            balance.label()
        );
        let outcome = open_loop(target.clone(), rate, plan.load).await;
        tokio::time::sleep(CPU_SETTLE).await;
        let load_end = (
            Instant::now(),
            CpuSample::now(),
            toolgate_ticks(&self.instances),
        );
        let serving = db.serving().await?;
        // Also the pause before the next window: the load's counts are all published after it.
        tokio::time::sleep(STATS_SETTLE).await;
        let counted_end = (Instant::now(), db.counters().await?);
        let chains = db.events_by_chain().await?;
        let events = chains.iter().map(|(_, c)| c).sum::<i64>() - events_before;

        let ticks_ms = |t: u64| procs::ticks_to_ms(t, plan.clock_ticks);
        let mut toolgate_ticks_total = 0;
        let mut per_instance = Vec::with_capacity(n);
        for (i, (tg, _)) in self.instances.iter().enumerate() {
            let chain_id = format!("scale-{}", i + 1);
            let spent = load_start.3[i]
                .zip(load_end.2[i])
                .map(|(b, a)| a.saturating_sub(b));
            toolgate_ticks_total += spent.unwrap_or(0);
            let route = outcome.routes.get(&tg.addr.to_string());
            let calls = route.map_or(0, |r| r.ok + r.errors);
            per_instance.push(InstanceFigures {
                events: chains
                    .iter()
                    .find(|(c, _)| *c == chain_id)
                    .map_or(0, |(_, e)| *e),
                chain_id,
                calls,
                errors: route.map_or(0, |r| r.errors),
                p50_ms: route.map_or(0.0, |r| r.latency.value_at_quantile(0.5) as f64 / 1000.0),
                p99_ms: route.map_or(0.0, |r| r.latency.value_at_quantile(0.99) as f64 / 1000.0),
                cpu_ms: spent.map(|t| ticks_ms(t) / calls.max(1) as f64),
            });
        }
        let idle = &self.idle;
        Ok(ScaleStep {
            instances: n,
            rate,
            flow,
            balance,
            toolgate_cpu_ms: ticks_ms(toolgate_ticks_total) / outcome.calls().max(1) as f64,
            pg_load: load_end.1.since(&load_start.2, &serving),
            pg_idle: idle.5.since(&idle.2, &self.idle_serving),
            load_secs: (load_end.0 - load_start.0).as_secs_f64(),
            idle_secs: (idle.3 - idle.0).as_secs_f64(),
            idle_counters: idle.4.minus(idle.1),
            load_counters: counted_end.1.minus(load_start.1),
            counted_secs: (counted_end.0 - load_start.0).as_secs_f64(),
            events,
            per_instance,
            outcome,
        })
    }
}
