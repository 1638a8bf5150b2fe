//! toolgate-bench: what toolgate costs per tool call, measured against a direct connection, in one run.
//!
//! # Layout
//! - [`fixtures`]: the typical call, DLP payloads and audit events every benchmark shares.
//! - [`upstream`]: the fast mock MCP upstream (the `mock-upstream` binary).
//! - [`load`]: the load generator (open loop at a fixed rate, closed loop for saturation; the `loadgen` binary).
//! - [`sink`]: a tiny OTLP/HTTP sink for the tracing-export run.
//! - [`procs`]: child processes (mock upstream, the real `toolgate` binary), readiness, resident size, CPU time.
//! - [`nginx`]: nginx as a bare reverse-proxy hop, the reference for what one plain HTTP hop costs.
//! - [`e2e`]: one toolgate instance measured against direct and nginx, both MCP flows, CPU per call; the steady run.
//! - [`siem`]: the SIEM run: all six sinks on local receivers vs none, lag, catch-up, CPU per delivered event.
//! - [`soak`]: the soak run: one rate for many minutes with sessions opening and closing, memory and descriptors.
//! - [`scale`]: the scale-out run (`make bench-scale`, it writes its own section): one total rate through nginx
//!   over 1, 2, 3 instances on one PostgreSQL; PostgreSQL's CPU and commits per call, each instance's latency.
//! - [`storage`]: bytes per stored event of an SQLite audit database (`dbstat`).
//! - [`inproc`]: engine per-call percentiles, audit writer and verify throughput.
//! - [`report`]: the machine description and the generated sections of `BENCHMARKS.md`.
//!
//! The engine's criterion benchmarks are in `benches/engine.rs`; `make bench` runs them, then
//! `toolgate-bench`, which runs everything else and writes `BENCHMARKS.md`.

pub mod e2e;
pub mod fixtures;
pub mod inproc;
pub mod load;
pub mod nginx;
pub mod procs;
pub mod report;
pub mod scale;
pub mod siem;
pub mod siem_outage;
pub mod sink;
pub mod soak;
pub mod storage;
pub mod upstream;
