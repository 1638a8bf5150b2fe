//! `writer-bench`: only the audit writer and `verify` part of `toolgate-bench`, for quick before/after
//! measurements of the store (`writer-bench [seconds] [sqlite|postgresql|all]`).

use std::time::Duration;

use toolgate::audit::Durability;
use toolgate_bench::inproc::{writer_run, PgScratch, WriterRun};

fn print(run: &WriterRun) {
    println!(
        "{} {}: {:.0} events/s appended ({} events, {} failures); verify {} events at {:.0} events/s, intact {}",
        run.backend,
        run.durability,
        run.events_per_sec(),
        run.events,
        run.failures,
        run.verified,
        run.verify_per_sec(),
        run.intact
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(3), |s| s.parse())?;
    let which = args.next().unwrap_or_else(|| "all".to_owned());
    let duration = Duration::from_secs(seconds);
    if which == "all" || which == "sqlite" {
        let scratch = tempfile::tempdir()?;
        for durability in [Durability::Full, Durability::Normal] {
            let db = scratch.path().join(format!("writer-{durability:?}.db"));
            let url = format!("sqlite://{}", db.display());
            print(&writer_run("sqlite", &url, "bench-writer", durability, 256, duration).await?);
        }
    }
    if which == "all" || which == "postgresql" {
        match std::env::var("TOOLGATE_TEST_POSTGRES_URL") {
            Ok(base) => {
                for durability in [Durability::Full, Durability::Normal] {
                    let pg = PgScratch::create(&base).await?;
                    let chain = format!("bench-writer-{}", uuid::Uuid::new_v4().simple());
                    let run =
                        writer_run("postgresql", &pg.url, &chain, durability, 256, duration).await;
                    pg.drop_now().await?;
                    print(&run?);
                }
            }
            Err(_) => eprintln!("PostgreSQL skipped: TOOLGATE_TEST_POSTGRES_URL is not set"),
        }
    }
    Ok(())
}
