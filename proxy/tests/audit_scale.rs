//! The audit log at scale, end to end: a database outage under load (PostgreSQL behind a loopback forwarder
//! the test cuts and restores), fail-closed answers to agents, the admin audit API (pages, single events,
//! stats, export manifests, bad ranges) and the public, rate-limited verify endpoint.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{eventually, send, start, token, Agent, Options, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::json;
use sha2::Digest as _;
use toolgate::audit::{AuditLog, AuditMetrics, AuditSettings, Durable, ExportFormat};
use toolgate_engine::chain::{AuditEvent, EventDraft};

/// A loopback TCP forwarder to PostgreSQL that the test can cut (every connection dropped, new ones refused)
/// and restore, without touching the shared server.
struct Forwarder {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: String) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (c, conns) = (cut.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                conns.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Forwarder {
            addr,
            cut,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A fresh schema on the test PostgreSQL; `None` (with a notice) when none is configured.
async fn pg_schema() -> Option<(String, String, sqlx::PgPool)> {
    let Ok(base) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("toolgate_it_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    Some((base, schema, admin))
}

/// `base` with its host:port replaced by `via` and the search path set to `schema`.
fn url_via(base: &str, via: SocketAddr, schema: &str) -> (String, String) {
    let (scheme, rest) = base.split_once("://").unwrap();
    let (userinfo, hostpath) = match rest.split_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let (hostport, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let target = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    let url =
        format!("{scheme}://{userinfo}{via}/{path}{separator}options=-c%20search_path%3D{schema}");
    (url, target)
}

fn draft(n: usize) -> EventDraft {
    EventDraft {
        event_type: "tool_call".into(),
        agent_id: Some(format!("agent{}", n % 3)),
        tool_name: Some("echo".into()),
        policy_result: Some("allow".into()),
        dlp_findings: json!([]),
        extra: json!({ "n": n }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_under_load_loses_no_acknowledged_event() {
    let Some((base, schema, admin)) = pg_schema().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema_name = schema.clone();
    let outcome = tokio::spawn(async move {
        let (_, target) = url_via(&base, SocketAddr::from(([127, 0, 0, 1], 1)), &schema);
        let forwarder = Forwarder::start(target).await;
        let (url, _) = url_via(&base, forwarder.addr, &schema);
        let settings = AuditSettings {
            database_url: url,
            chain_id: Some("outage".into()),
            signing_key_file: Some(dir.path().join("key")),
            connect_timeout_seconds: 1,
            batch_max: 32,
            ..AuditSettings::default()
        };
        let metrics = AuditMetrics::unregistered();
        let log = AuditLog::open(&settings, metrics.clone()).await.unwrap();

        let acked: Arc<Mutex<Vec<Durable>>> = Arc::default();
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (log, acked, failed, stop) =
                (log.clone(), acked.clone(), failed.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                // Bounded: at most 2000 appends per writer.
                for i in 0..2000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match log.append(draft(w * 10_000 + i)).await {
                        Ok(d) => acked.lock().unwrap().push(d),
                        Err(e) => {
                            assert!(e.to_string().starts_with("audit write failed"), "{e}");
                            failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        let count = |a: &Arc<Mutex<Vec<Durable>>>| a.lock().unwrap().len();
        eventually(Duration::from_secs(30), || async {
            (count(&acked) >= 100).then_some(())
        })
        .await;
        forwarder.cut();
        eventually(Duration::from_secs(30), || async {
            (failed.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await;
        let during = count(&acked);
        forwarder.restore();
        // The pool reconnects by itself: acknowledgements resume.
        eventually(Duration::from_secs(30), || async {
            (count(&acked) >= during + 100).then_some(())
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
        log.close().await;
        assert!(metrics.write_failures.get() >= failed.load(Ordering::SeqCst));

        // Every acknowledged event is stored, with its seq and hash, and the chain is intact.
        let mut out = Vec::new();
        log.store()
            .export(ExportFormat::Ndjson, None, None, &mut out)
            .await
            .unwrap();
        let stored: std::collections::HashMap<String, AuditEvent> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap())
            .map(|e| (e.id.clone(), e))
            .collect();
        let acked = acked.lock().unwrap().clone();
        for d in &acked {
            let e = stored
                .get(d.id())
                .unwrap_or_else(|| panic!("acknowledged event {} lost", d.seq()));
            assert_eq!((e.seq, e.event_hash.as_str()), (d.seq(), d.event_hash()));
        }
        let result = log.store().verify(None, None).await.unwrap();
        assert!(result.chain_intact, "{result:?}");
        eprintln!(
            "outage: {} acknowledged, {} refused, {} stored",
            acked.len(),
            failed.load(Ordering::SeqCst),
            stored.len()
        );

        // A restart continues the chain from its stored head.
        let head = stored.values().map(|e| e.seq).max().unwrap();
        let log = AuditLog::open(&settings, AuditMetrics::unregistered())
            .await
            .unwrap();
        assert_eq!(log.append(draft(0)).await.unwrap().seq(), head + 1);
        log.close().await;
        assert!(log.store().verify(None, None).await.unwrap().chain_intact);
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema_name} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Log lines of this test binary, captured once (the subscriber is process-global).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Capture(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_audit_write_refuses_the_call() {
    let logs = captured_logs();
    let proxy = start(Options::default()).await;
    let db = proxy.dir.path().join("audit.db");
    let mut agent = Agent::new(&proxy, "demo", token("agent-1", &["dev"]));
    agent.initialize().await;
    assert_eq!(
        agent
            .call("echo", json!({ "text": "ok" }))
            .await
            .error_code(),
        None
    );

    // The database refuses every insert (a second connection, as an operator or a full disk would).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TRIGGER audit_block BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        .execute(&pool)
        .await
        .unwrap();
    let refused = agent.call("echo", json!({ "text": "not forwarded" })).await;
    assert_eq!(
        refused.error_code(),
        Some(-31005),
        "{:?}",
        refused.message()
    );
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("audit write failed"), "{text}");

    sqlx::query("DROP TRIGGER audit_block")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        agent
            .call("echo", json!({ "text": "ok" }))
            .await
            .error_code(),
        None
    );
    let result = proxy.app.audit.store().verify(None, None).await.unwrap();
    assert!(result.chain_intact, "{result:?}");
    proxy.stop().await;
}

async fn admin_get(proxy: &common::Proxy, path: &str) -> common::Answer {
    send(
        Method::GET,
        &proxy.url(path),
        &[("authorization", &format!("Bearer {ADMIN}"))],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_api_pages_stats_and_manifests() {
    let proxy = start(Options::default()).await;
    let mut acks = Vec::new();
    for n in 0..5 {
        acks.push(proxy.app.audit.append(draft(n)).await.unwrap());
    }

    // Cursor pagination, newest first.
    let page = admin_get(&proxy, "/api/v1/audit/events?limit=3")
        .await
        .json();
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 4, 3]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page = admin_get(
        &proxy,
        &format!("/api/v1/audit/events?limit=3&cursor={cursor}"),
    )
    .await
    .json();
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1]);
    assert!(page["next_cursor"].is_null());

    // One event by id; an unknown id is 404.
    let one = admin_get(&proxy, &format!("/api/v1/audit/events/{}", acks[1].id())).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["event_hash"], acks[1].event_hash());
    assert_eq!(
        admin_get(&proxy, "/api/v1/audit/events/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // Verify: a bad range is the caller's mistake.
    assert_eq!(
        admin_get(&proxy, "/api/v1/audit/verify?start=yesterday")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let verify = admin_get(&proxy, "/api/v1/audit/verify").await.json();
    assert_eq!(verify["chain_intact"], true);

    // Stats over the default window (last 24 h).
    let stats = admin_get(&proxy, "/api/v1/audit/stats?bucket=day")
        .await
        .json();
    let total: i64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5);
    assert_eq!(stats["buckets"][0]["by_tool"]["echo"], 5);
    assert_eq!(
        admin_get(&proxy, "/api/v1/audit/stats?bucket=week")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // The manifest of an NDJSON export: the SHA-256 of the very bytes the export endpoint streams, and the
    // newest signed checkpoint.
    proxy.app.audit.checkpoint().await.unwrap();
    let export = admin_get(&proxy, "/api/v1/audit/export?format=ndjson").await;
    assert_eq!(export.status, StatusCode::OK);
    let manifest = admin_get(&proxy, "/api/v1/audit/export?format=ndjson&manifest=true")
        .await
        .json();
    assert_eq!(manifest["events"], 5);
    assert_eq!(
        manifest["sha256"],
        hex::encode(sha2::Sha256::digest(&export.body))
    );
    assert_eq!(manifest["checkpoints"][0]["checkpoint"]["seq"], 5);
    assert_eq!(
        manifest["checkpoints"][0]["checkpoint"]["head_hash"],
        acks[4].event_hash()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_verify_needs_no_token_and_is_rate_limited() {
    let proxy = start(Options {
        audit_toml: "public_verify_per_minute = 2".into(),
        ..Options::default()
    })
    .await;
    let ack = proxy.app.audit.append(draft(1)).await.unwrap();
    let url = proxy.url(&format!("/api/v1/public/verify?hash={}", ack.event_hash()));
    let first = send(Method::GET, &url, &[], "").await;
    assert_eq!(first.status, StatusCode::OK);
    let body = first.json();
    assert_eq!(body["found"], true);
    assert_eq!(body["chain_intact"], true);
    assert!(body["timestamp"].is_string());
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "no event content: {body}"
    );

    let unknown = send(
        Method::GET,
        &proxy.url(&format!("/api/v1/public/verify?hash={}", "0".repeat(64))),
        &[],
        "",
    )
    .await;
    assert_eq!(
        unknown.json(),
        json!({ "found": false, "timestamp": null, "chain_intact": false })
    );

    let limited = send(Method::GET, &url, &[], "").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // The admin API still needs its token.
    assert_eq!(
        send(Method::GET, &proxy.url("/api/v1/audit/verify"), &[], "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    proxy.stop().await;
}
