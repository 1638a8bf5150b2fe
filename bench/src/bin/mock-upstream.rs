//! `mock-upstream [--port N]`: the fast mock MCP upstream on 127.0.0.1; prints `listening <addr>` once bound.

use std::sync::Arc;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A fast mock MCP server (streamable HTTP) that answers tools/call at once")]
struct Args {
    /// Loopback port to listen on (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("listening {}", listener.local_addr()?);
    toolgate_bench::upstream::serve(listener, Arc::default()).await;
    Ok(())
}
