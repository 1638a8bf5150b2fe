//! No waste at low load: an idle `toolgate serve` runs no timer that reads its database. Its background tasks
//! (kill switch, escalations, runs, alerts, counts) wait for a change (a SQLite file's writes, PostgreSQL's
//! notifications), their own deadlines or work of their own, so the process barely wakes up. Before, they
//! polled the database every 200–250 ms: about 117 wake-ups a second with SQLite, 33 with PostgreSQL.
//!
//! Counted from `/proc` (context switches of all the process's threads), not timed: a busy machine delays
//! wake-ups but does not add any.

mod common;

use std::path::Path;
use std::time::Duration;

use common::instances::{config, serve_ready, Instance, PgSchema};

/// Wake-ups per second an idle instance may have: the slow safety nets (30 s), the tokio blocking threads
/// winding down, the kernel's own. The 200–250 ms polls alone were more than 30.
const MOST_WAKE_UPS_PER_SECOND: f64 = 8.0;

/// Context switches (voluntary and not) of every thread of `pid` so far.
fn switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += n.trim().parse::<u64>().unwrap();
            }
        }
    }
    total
}

/// Lets the instance settle after start (its first looks, the start-up writes), then counts its wake-ups.
async fn wake_ups_per_second(instance: &Instance) -> f64 {
    // Something happened a moment ago: a request, and the writes of start-up.
    let answer = common::send(hyper::Method::GET, &instance.url("/health"), &[], "").await;
    assert_eq!(answer.status, hyper::StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = instance.child.id();
    let before = switches(pid);
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    (switches(pid) - before) as f64 / window.as_secs_f64()
}

async fn idle_instance_barely_wakes(dir: &Path, url: &str) {
    // An upstream nobody calls (nothing listens there): idle means no agent either.
    let upstream = "[[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let instance = serve_ready(&config(dir, "idle", url, "idle", upstream));
    let rate = wake_ups_per_second(&instance).await;
    eprintln!("idle: {rate:.1} wake-ups per second");
    assert!(
        rate <= MOST_WAKE_UPS_PER_SECOND,
        "an idle instance woke up {rate:.1} times a second (at most {MOST_WAKE_UPS_PER_SECOND})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_on_sqlite_does_not_poll() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    idle_instance_barely_wakes(dir.path(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_on_postgres_does_not_poll() {
    let Some(schema) = PgSchema::create("idle").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    idle_instance_barely_wakes(dir.path(), &schema.url).await;
    schema.drop_now().await;
}
