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

/// Context switches (voluntary and not) of each thread of `pid` so far, by thread id (with its name).
fn switches(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(status), Ok(name)) = (
            std::fs::read_to_string(task.join("status")),
            std::fs::read_to_string(task.join("comm")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let total = status
            .lines()
            .filter_map(|line| {
                line.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .map(|n| n.trim().parse::<u64>().unwrap())
            .sum();
        let id = task.file_name().unwrap().to_string_lossy().into_owned();
        threads.insert(format!("{id} {}", name.trim()), total);
    }
    threads
}

/// Lets the instance settle after start (its first looks, the start-up writes), then counts its wake-ups.
/// Answers the rate and each thread's wake-ups in the window.
async fn wake_ups_per_second(instance: &Instance) -> (f64, Vec<(String, u64)>) {
    // Something happened a moment ago: a request, and the writes of start-up.
    let answer = common::send(hyper::Method::GET, &instance.url("/health"), &[], "").await;
    assert_eq!(answer.status, hyper::StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = instance.child.id();
    let before = switches(pid);
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let after = switches(pid);
    let by_thread: Vec<(String, u64)> = after
        .iter()
        .map(|(thread, n)| (thread.clone(), n - before.get(thread).copied().unwrap_or(0)))
        .collect();
    let total: u64 = by_thread.iter().map(|(_, n)| n).sum();
    (total as f64 / window.as_secs_f64(), by_thread)
}

async fn idle_instance_barely_wakes(dir: &Path, url: &str) {
    // An upstream nobody calls (nothing listens there): idle means no agent either.
    let upstream = "[[upstream]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\n";
    // A policy folder of its own: the folder watcher wakes on every open of a file in it, and other tests read
    // the shipped one while this one runs.
    let policies = dir.join("policies");
    common::copy_dir(&common::repo_root().join("policies"), &policies);
    let config = config(dir, "idle", url, "idle", upstream);
    let toml = std::fs::read_to_string(&config).unwrap().replace(
        &common::repo_root().join("policies").display().to_string(),
        &policies.display().to_string(),
    );
    std::fs::write(&config, toml).unwrap();
    let instance = serve_ready(&config);
    let (rate, by_thread) = wake_ups_per_second(&instance).await;
    eprintln!("idle: {rate:.1} wake-ups per second; by thread: {by_thread:?}");
    assert!(
        rate <= MOST_WAKE_UPS_PER_SECOND,
        "an idle instance woke up {rate:.1} times a second (at most {MOST_WAKE_UPS_PER_SECOND}); by thread: \
         {by_thread:?}"
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
