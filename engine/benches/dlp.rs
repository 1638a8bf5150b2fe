//! DLP over the ~4 KB MCP result `bench/benches/engine.rs` scans too, built with the engine alone so a change
//! to the detectors is measured without rebuilding the proxy: `cargo bench -p toolgate-engine --bench dlp`.
//! `dlp/scan_result_4k` must stay within 10 µs (docs/dlp.md).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use toolgate_engine::dlp::Scanner;

#[path = "common/result_4k.rs"]
mod result_4k;
use result_4k::mcp_result_4k;

fn dlp(c: &mut Criterion) {
    let scanner = Scanner::new();
    let mut group = c.benchmark_group("dlp");
    let clean = mcp_result_4k(false);
    group.throughput(Throughput::Bytes(clean.to_string().len() as u64));
    group.bench_function("scan_result_4k", |b| b.iter(|| scanner.scan(&clean)));
    let secret = mcp_result_4k(true);
    group.bench_function("redact_result_4k", |b| {
        b.iter_batched(
            || secret.clone(),
            |mut v| scanner.redact(&mut v),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = dlp
}
criterion_main!(engine);
