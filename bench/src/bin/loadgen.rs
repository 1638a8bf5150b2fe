//! `loadgen`: MCP `tools/call` load against one endpoint, open loop at a rate or closed loop at a concurrency.
//!
//! `toolgate-bench` drives the same code in process; this binary is for ad-hoc runs, e.g.
//! `loadgen --url http://127.0.0.1:8080/mcp/demo --token "$TOKEN" --rate 2000 --seconds 10`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use toolgate_bench::load::{closed_loop, open_loop, Target};

#[derive(Parser)]
#[command(
    about = "MCP tools/call load generator (open loop without coordinated omission, or closed loop)"
)]
struct Args {
    /// The MCP endpoint (loopback only).
    #[arg(long)]
    url: String,
    /// Agent JWT (repeat for several agents).
    #[arg(long, required = true)]
    token: Vec<String>,
    /// Open loop at this many calls per second; without it, closed loop at --concurrency.
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let uri: hyper::Uri = args.url.parse()?;
    anyhow::ensure!(
        matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "loadgen only targets loopback addresses"
    );
    let target = Arc::new(Target::new(uri, &args.token)?);
    let duration = Duration::from_secs(args.seconds.clamp(1, 600));
    let outcome = match args.rate {
        Some(rate) => open_loop(target, rate.max(1), duration).await,
        None => closed_loop(target, args.concurrency.max(1), duration).await,
    };
    println!(
        "ok {} errors {} throughput {:.0}/s p50 {:.3} ms p99 {:.3} ms p99.9 {:.3} ms max {:.3} ms",
        outcome.ok,
        outcome.errors,
        outcome.throughput(),
        outcome.ms(0.5),
        outcome.ms(0.99),
        outcome.ms(0.999),
        outcome.latency.max() as f64 / 1000.0,
    );
    if let Some(e) = outcome.first_error {
        println!("first error: {e}");
    }
    Ok(())
}
