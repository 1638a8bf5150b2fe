//! In-process measurements: per-call latency percentiles of the engine (criterion reports means and medians,
//! the goals are also about p99), and the audit writer's and `verify`'s throughput through
//! `toolgate::audit::AuditLog` on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use toolgate::audit::{AuditLog, AuditMetrics, AuditSettings, Durability};
use toolgate_engine::dlp::Scanner;
use toolgate_engine::policy::PolicySet;

use crate::fixtures::{audit_draft, dlp_arguments, policy_dir, TypicalCall};

/// p50/p99/p99.9 in nanoseconds of many single calls.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
}

fn time_calls(n: u32, mut f: impl FnMut()) -> Percentiles {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("constant bounds");
    for _ in 0..n / 10 {
        f();
    }
    for _ in 0..n {
        let started = Instant::now();
        f();
        hist.saturating_record(started.elapsed().as_nanos() as u64);
    }
    Percentiles {
        p50: hist.value_at_quantile(0.5),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
    }
}

/// The policy decision of the typical call (input built as a `Value` + VM evaluation), one call at a time.
pub fn decision_percentiles(n: u32) -> anyhow::Result<Percentiles> {
    let set = PolicySet::load(&policy_dir())?;
    let mut evaluator = set.evaluator();
    let call = TypicalCall::new();
    evaluator.decide(call.input())?;
    Ok(time_calls(n, || {
        let _ = std::hint::black_box(evaluator.decide(call.input()));
    }))
}

/// DLP over 4 KB of clean arguments, one call at a time.
pub fn dlp_4k_percentiles(n: u32) -> Percentiles {
    let scanner = Scanner::new();
    let args = dlp_arguments(4096, false);
    time_calls(n, || {
        std::hint::black_box(scanner.scan(&args));
    })
}

/// One audit writer run: events committed per second by `concurrency` appenders for `duration`, then a full
/// `verify` of what is in the database.
#[derive(Debug, Clone)]
pub struct WriterRun {
    pub backend: &'static str,
    pub durability: &'static str,
    pub events: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub verified: u64,
    pub verify_elapsed: Duration,
    pub intact: bool,
}

impl WriterRun {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn verify_per_sec(&self) -> f64 {
        self.verified as f64 / self.verify_elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn writer_run(
    backend: &'static str,
    database_url: &str,
    chain_id: &str,
    durability: Durability,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<WriterRun> {
    let settings = AuditSettings {
        database_url: database_url.to_owned(),
        chain_id: Some(chain_id.to_owned()),
        durability,
        ..AuditSettings::default()
    };
    let log = AuditLog::open(&settings, AuditMetrics::unregistered()).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut i = t as u64;
            while Instant::now() < deadline {
                match log.append(audit_draft(i)).await {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                i += concurrency as u64;
            }
            (ok, failed)
        }));
    }
    let (mut events, mut failures) = (0, 0);
    for task in tasks {
        let (ok, failed) = task.await?;
        events += ok;
        failures += failed;
    }
    let elapsed = started.elapsed();
    log.close().await;

    let verify_started = Instant::now();
    let report = log.store().verify(None, None).await?;
    let verify_elapsed = verify_started.elapsed();
    Ok(WriterRun {
        backend,
        durability: match durability {
            Durability::Full => "full",
            Durability::Normal => "normal",
        },
        events,
        failures,
        elapsed,
        verified: report.events_verified,
        verify_elapsed,
        intact: report.chain_intact,
    })
}

/// A PostgreSQL schema of its own for one run (so `verify` sees only this run's rows), dropped by [`PgScratch::drop_now`].
pub struct PgScratch {
    admin: sqlx::PgPool,
    schema: String,
    pub url: String,
}

impl PgScratch {
    pub async fn create(base: &str) -> anyhow::Result<PgScratch> {
        let schema = format!("toolgate_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(base).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        Ok(PgScratch { admin, schema, url })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await?;
        self.admin.close().await;
        Ok(())
    }
}
