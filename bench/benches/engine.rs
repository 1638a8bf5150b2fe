//! Criterion micro-benchmarks of the engine: a policy decision (VM and interpreter), DLP by size with and
//! without findings, DLP scan and redaction of a 4 KB MCP result, injection markers in the same result,
//! canonicalise + hash one event, seal and verify 100k events, and the behaviour scoring of one call (the
//! baseline arithmetic alone, and `Behaviour::observe` + `judged` as the pipeline calls them).
//!
//! Kept short (`make bench` must stay within minutes on two cores): small warm-up and measurement times.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use toolgate_bench::fixtures::{audit_draft, dlp_arguments, policy_dir, sealed_chain, TypicalCall};
use toolgate_engine::canonical::input_hash;
use toolgate_engine::chain::{ChainHead, Verifier};
use toolgate_engine::dlp::Scanner;
use toolgate_engine::injection;
use toolgate_engine::policy::{PolicySet, Verdict};

#[path = "../../engine/benches/common/result_4k.rs"]
mod result_4k;
use result_4k::mcp_result_4k;

fn policy(c: &mut Criterion) {
    let set = PolicySet::load(&policy_dir()).expect("the shipped policies load");
    let call = TypicalCall::new();
    let mut group = c.benchmark_group("policy");
    let mut evaluator = set.evaluator();
    group.bench_function("decide_vm", |b| {
        b.iter(|| evaluator.decide(call.input()).expect("decided"))
    });
    group.bench_function("input_value", |b| b.iter(|| call.input()));

    // The interpreter, as `policy eval` runs it: the same files, the input as a Value.
    match interpreter() {
        Ok(mut engine) => {
            group.bench_function("decide_interpreter", |b| {
                b.iter(|| {
                    engine.set_input(call.input());
                    engine
                        .eval_rule("data.toolgate.decision".to_owned())
                        .expect("decided")
                })
            });
        }
        // The engine may register extension builtins this plain interpreter lacks; the VM figure stands alone.
        Err(e) => eprintln!("skipped policy/decide_interpreter: {e}"),
    }
    group.finish();
}

fn interpreter() -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    for entry in walk(&policy_dir()) {
        let name = entry.to_string_lossy();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            engine
                .add_policy_from_file(&entry)
                .map_err(|e| e.to_string())?;
        } else if name.ends_with(".json") {
            let data = regorus::Value::from_json_file(&entry).map_err(|e| e.to_string())?;
            engine.add_data(data).map_err(|e| e.to_string())?;
        }
    }
    engine.set_input(TypicalCall::new().input());
    engine
        .eval_rule("data.toolgate.decision".to_owned())
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("policy dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn dlp(c: &mut Criterion) {
    let scanner = Scanner::new();
    let mut group = c.benchmark_group("dlp");
    for (label, size) in [("1KB", 1024), ("4KB", 4096), ("64KB", 65536)] {
        for (kind, findings) in [("clean", false), ("findings", true)] {
            let args = dlp_arguments(size, findings);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(format!("{kind}_{label}"), |b| {
                b.iter(|| scanner.scan(&args))
            });
        }
    }
    let clean = mcp_result_4k(false);
    group.throughput(Throughput::Bytes(clean.to_string().len() as u64));
    group.bench_function("scan_result_4k", |b| b.iter(|| scanner.scan(&clean)));
    let secret = mcp_result_4k(true);
    assert_eq!(
        scanner.scan(&secret).len(),
        2,
        "two secrets in the redaction fixture"
    );
    group.bench_function("redact_result_4k", |b| {
        b.iter_batched(
            || secret.clone(),
            |mut v| scanner.redact(&mut v),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("injection");
    group.throughput(Throughput::Bytes(clean.to_string().len() as u64));
    group.bench_function("markers_result_4k", |b| {
        b.iter(|| injection::markers(&clean))
    });
    group.finish();
}

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    let event = sealed_chain(1).remove(0);
    group.bench_function("hash_event", |b| b.iter(|| event.compute_hash()));
    let arguments = TypicalCall::new().arguments;
    group.bench_function("input_hash", |b| b.iter(|| input_hash(&arguments)));

    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("seal_100k", |b| {
        b.iter_batched(
            || (0..100_000).map(audit_draft).collect::<Vec<_>>(),
            |drafts| {
                let mut head = ChainHead::genesis("bench");
                drafts.into_iter().map(|d| head.seal(d)).count()
            },
            BatchSize::PerIteration,
        )
    });
    let events = sealed_chain(100_000);
    group.bench_function("verify_100k", |b| {
        b.iter(|| {
            let mut verifier = Verifier::new();
            for e in &events {
                verifier.push(e);
            }
            let report = verifier.finish();
            assert!(report.chain_intact);
            report
        })
    });
    group.finish();
}

/// The scoring of one call: what the ≤ 2 µs budget of docs/behaviour.md covers. One of 1,000 tracked agents
/// calls one of 8 tools at one of 32 targets with a declared (pinned) prompt hash, a millisecond after the
/// previous call; the verdict is an allow.
fn behaviour(c: &mut Criterion) {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use toolgate::behaviour::baseline::{Baseline, Params};
    use toolgate::behaviour::{Behaviour, Call, Clock};
    use toolgate::config::BehaviorSettings;

    /// A clock the benchmark moves: one millisecond per call.
    struct Stepping(AtomicI64);
    impl Clock for Stepping {
        fn now_ms(&self) -> i64 {
            self.0.fetch_add(1, Ordering::Relaxed)
        }
    }

    const START_MS: i64 = 1_800_000_000_000;
    let tools: Vec<String> = (0..8).map(|i| format!("tool_{i}")).collect();
    let targets: Vec<String> = (0..32)
        .map(|i| format!("/workspace/project/file_{i}.txt"))
        .collect();
    let settings = BehaviorSettings::default();
    let mut group = c.benchmark_group("behaviour");

    let params = Params::of(&settings);
    let mut baseline = Baseline::new(START_MS, &params);
    let mut now = START_MS;
    let mut k = 0usize;
    group.bench_function("baseline_observe_judged", |b| {
        b.iter(|| {
            now += 1;
            k = k.wrapping_add(1);
            let o = baseline.observe(
                now,
                &params,
                Some(tools[k % tools.len()].as_str()),
                str::to_owned,
                Some(targets[k % targets.len()].as_str()),
            );
            baseline.judged(now, &params, false);
            o
        })
    });

    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(Stepping(AtomicI64::new(START_MS)));
    let behaviour = rt.block_on(async {
        let audit_settings = toolgate::audit::AuditSettings {
            database_url: format!("sqlite://{}", dir.path().join("audit.db").display()),
            chain_id: Some("bench".to_owned()),
            ..toolgate::audit::AuditSettings::default()
        };
        let metrics = toolgate::telemetry::AuditMetrics::unregistered();
        let failures = metrics.write_failures.clone();
        let audit = toolgate::audit::AuditLog::open(&audit_settings, metrics)
            .await
            .expect("the audit log opens");
        let alerts = toolgate::alerts::Alerts::load(
            audit.store().clone(),
            audit.clone(),
            toolgate::telemetry::AlertMetrics::unregistered(),
            failures,
        )
        .await
        .map(Arc::new)
        .expect("the alerts load");
        Behaviour::load(&settings, audit.store().clone(), alerts, clock.clone())
            .await
            .expect("the baselines load")
    });
    let agents: Vec<toolgate::auth::AgentIdentity> = (0..1000)
        .map(|i| toolgate::auth::AgentIdentity {
            id: format!("agent-{i}"),
            tenant_id: Some("acme".to_owned()),
            roles: vec!["dev".to_owned()],
            claims: serde_json::Value::Null,
            expires_at: u64::MAX,
        })
        .collect();
    let call = |k: usize| Call {
        tool: Some(tools[k % tools.len()].as_str()),
        target: Some(targets[k % targets.len()].as_str()),
        prompt_hash: Some("9f86d081884c7d659a2feaa0c55ad015"),
    };
    // Every agent tracked, its prompt pinned and its tools known, before the measurement.
    for k in 0..agents.len() * tools.len() {
        behaviour.observe(&agents[k % agents.len()], call(k));
    }
    let mut k = 0usize;
    group.bench_function("observe_judged", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            let agent = &agents[k % agents.len()];
            let info = behaviour.observe(agent, call(k));
            behaviour.judged(agent, Verdict::Allow);
            info
        })
    });
    group.finish();
    drop(behaviour);
    drop(rt);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .without_plots()
}

criterion_group! {
    name = engine;
    config = config();
    targets = policy, dlp, chain, behaviour
}
criterion_main!(engine);
