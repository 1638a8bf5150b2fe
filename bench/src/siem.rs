//! The SIEM run (`make bench-siem`): toolgate at one rate with all six SIEM sinks delivering to local receivers
//! (webhook, Splunk HEC, Datadog, Elasticsearch `_bulk` on one HTTP receiver; syslog and CEF on two TCP ones),
//! against the same run without sinks: end-to-end p99 with and without, each sink's lag in events and seconds
//! sampled during the load, how long the sinks take to catch up after it, and toolgate's extra CPU per
//! delivered event. The receivers run in this process and share the machine's cores with toolgate.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::procs::{self, Proc};

/// The admin token of the run's toolgate (it reads `GET /api/v1/siem`).
pub const ADMIN_TOKEN: &str = "toolgate-bench-admin-token";
/// The six sinks, as named in the config and in the report.
pub const SINKS: [&str; 6] = [
    "webhook",
    "splunk_hec",
    "datadog",
    "elasticsearch",
    "syslog",
    "cef",
];

/// Events each receiver counted (by the `event_hash` members it saw), and whether the receivers are down (the
/// outage run): then the HTTP receiver answers 503 and the TCP ones refuse connections.
#[derive(Default)]
pub struct Received {
    counts: [AtomicU64; 6],
    down: std::sync::atomic::AtomicBool,
}

impl Received {
    pub fn count(&self, sink: usize) -> u64 {
        self.counts[sink].load(Ordering::Relaxed)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// The local receivers and the `[[siem]]` tables pointing at them.
pub struct Receivers {
    pub received: Arc<Received>,
    pub config: String,
}

/// Starts the receivers on a thread and runtime of their own (on the load generator's runtime, parsing a
/// burst of bulk bodies delayed the answers it was timing); the token file for the HTTP kinds goes into `dir`.
pub async fn receivers(dir: &std::path::Path) -> anyhow::Result<Receivers> {
    let received = Arc::new(Received::default());
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let serving = received.clone();
    std::thread::Builder::new()
        .name("siem-receivers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let bind = || TcpListener::bind("127.0.0.1:0");
                let listeners = async {
                    Ok::<_, std::io::Error>((bind().await?, bind().await?, bind().await?))
                };
                let (http, syslog, cef) = match listeners.await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let addrs = (|| {
                    Ok((
                        http.local_addr()?,
                        [syslog.local_addr()?, cef.local_addr()?],
                    ))
                })();
                let _ = bound_tx.send(addrs);
                tokio::spawn(serve_http(http, serving.clone()));
                tokio::spawn(serve_tcp(syslog, serving.clone(), 4));
                tokio::spawn(serve_tcp(cef, serving, 5));
                // The receivers serve until the benchmark exits.
                std::future::pending::<()>().await;
            });
        })?;
    let (http_addr, syslog_addrs) = bound_rx.await??;
    let token = dir.join("siem.token");
    std::fs::write(&token, "bench-siem-token")?;
    let token = format!("token_file = {:?}\n", token.display().to_string());
    let table = |name: &str, url: String, extra: &str| {
        // Experiments: `BENCH_SIEM_EXTRA="linger_ms = 50;poll_ms = 100"` adds keys to every sink's table.
        let tuning = std::env::var("BENCH_SIEM_EXTRA")
            .unwrap_or_default()
            .replace(';', "\n");
        format!("\n[[siem]]\nname = \"{name}\"\nkind = \"{name}\"\nurl = \"{url}\"\nbatch_max = 500\n{tuning}\n{extra}")
    };
    let config = [
        table("webhook", format!("http://{http_addr}/hook"), &token),
        table("splunk_hec", format!("http://{http_addr}"), &token),
        table("datadog", format!("http://{http_addr}"), &token),
        table("elasticsearch", format!("http://{http_addr}"), ""),
        table("syslog", format!("tcp://{}", syslog_addrs[0]), ""),
        table("cef", format!("tcp://{}", syslog_addrs[1]), ""),
    ]
    .concat();
    Ok(Receivers { received, config })
}

/// Occurrences of `event_hash` in `bytes` (every wire format carries it once per event).
fn events_in(bytes: &[u8]) -> u64 {
    const NEEDLE: &[u8] = b"event_hash";
    bytes.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count() as u64
}

async fn serve_http(listener: TcpListener, received: Arc<Received>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| take(req, received.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn take(
    req: Request<Incoming>,
    received: Arc<Received>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if received.is_down() {
        let mut refused = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"outage\"}")));
        *refused.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(refused);
    }
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let events = events_in(&body);
    let (sink, answer) = match path.as_str() {
        "/hook" => (0, Bytes::from_static(b"{}")),
        "/services/collector/event" => (1, Bytes::from_static(br#"{"text":"Success","code":0}"#)),
        "/api/v2/logs" => (2, Bytes::from_static(b"{}")),
        _ => {
            // `_bulk`: one created item per action line.
            let actions = body
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"{\"create\""))
                .count();
            let items = vec![r#"{"create":{"status":201}}"#; actions].join(",");
            (
                3,
                Bytes::from(format!(r#"{{"errors":false,"items":[{items}]}}"#)),
            )
        }
    };
    received.counts[sink].fetch_add(events, Ordering::Relaxed);
    Ok(Response::new(Full::new(answer)))
}

/// A syslog receiver. Down, it is as a stopped receiver would be: its port refuses connections (the listener is
/// closed, and bound again on the same port when it is back) and open connections are reset unread.
async fn serve_tcp(listener: TcpListener, received: Arc<Received>, sink: usize) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = Some(listener);
    loop {
        if received.is_down() {
            listener = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Some(bound) = &listener else {
            listener = TcpListener::bind(addr).await.ok();
            continue;
        };
        // Accepts wake every 50 ms to notice an outage.
        let Ok(Ok((mut stream, _))) =
            tokio::time::timeout(Duration::from_millis(50), bound.accept()).await
        else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            // The last bytes of the previous read, so a needle split across reads is still counted once.
            let mut carry: Vec<u8> = Vec::new();
            loop {
                if received.is_down() {
                    return;
                }
                let n = match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf))
                    .await
                {
                    Err(_) => continue,
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => n,
                };
                carry.extend_from_slice(&buf[..n]);
                received.counts[sink].fetch_add(events_in(&carry), Ordering::Relaxed);
                let keep = carry.len().min(9);
                carry.drain(..carry.len() - keep);
            }
        });
    }
}

/// One blocking `GET` on loopback with the admin token; the body.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// Events each sink delivered, from `/metrics`.
pub fn delivered(tg: &Proc) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = get(tg.addr, "/metrics")?;
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("toolgate_siem_events_delivered_total{"))
    {
        let sink = line
            .split("sink=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        out.insert(sink.to_owned(), value as u64);
    }
    Ok(out)
}

/// What one sink did during the run.
#[derive(Debug, Clone, Default)]
pub struct SinkFigures {
    pub max_lag_events: i64,
    pub max_lag_seconds: f64,
    pub delivered: u64,
    pub received: u64,
}

/// The whole SIEM run.
pub struct SiemRun {
    pub rate: u32,
    pub duration: Duration,
    pub without: crate::load::Outcome,
    pub with: crate::load::Outcome,
    /// toolgate's CPU seconds during the measured load, without and with sinks (the latter until caught up).
    pub cpu_without: f64,
    pub cpu_with: f64,
    pub sinks: BTreeMap<String, SinkFigures>,
    /// From the end of the load until every sink's lag was 0; `None` if not within the deadline.
    pub catch_up: Option<Duration>,
    /// Each round's p99 in ms: (without sinks, with sinks).
    pub rounds: Vec<(f64, f64)>,
}

impl SiemRun {
    /// toolgate's extra CPU microseconds per delivered event (all sinks together).
    pub fn cpu_us_per_event(&self) -> Option<f64> {
        let delivered: u64 = self.sinks.values().map(|s| s.delivered).sum();
        (delivered > 0)
            .then(|| (self.cpu_with - self.cpu_without).max(0.0) * 1e6 / delivered as f64)
    }
}

/// Samples every sink's lag every 250 ms until `stop`; the maxima per sink.
pub async fn sample_lags(
    tg_addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> BTreeMap<String, SinkFigures> {
    let mut figures: BTreeMap<String, SinkFigures> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(Ok(lags)) = tokio::task::spawn_blocking(move || lags_at(tg_addr)).await {
            for (sink, (events, seconds)) in lags {
                let f = figures.entry(sink).or_default();
                f.max_lag_events = f.max_lag_events.max(events);
                f.max_lag_seconds = f.max_lag_seconds.max(seconds);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    figures
}

/// Each sink's (lag in events, lag in seconds) now, from `GET /api/v1/siem`.
pub fn lags_at(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, (i64, f64)>> {
    let body = get(addr, "/api/v1/siem")?;
    let json = &body[body.find('{').unwrap_or(0)..body.rfind('}').map_or(body.len(), |i| i + 1)];
    let value: serde_json::Value = serde_json::from_str(json)?;
    Ok(value["sinks"]
        .as_array()
        .map(|sinks| {
            sinks
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        (
                            s["lag_events"].as_i64().unwrap_or(0),
                            s["lag_seconds"].as_f64().unwrap_or(0.0),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until every sink's lag is 0, up to `deadline`; how long it took.
pub async fn wait_caught_up(tg: &Proc, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let addr = tg.addr;
        if let Ok(Ok(lags)) = tokio::task::spawn_blocking(move || lags_at(addr)).await {
            if !lags.is_empty() && lags.values().all(|(events, _)| *events == 0) {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// CPU seconds of `tg` so far.
pub fn cpu_seconds(tg: &Proc) -> anyhow::Result<f64> {
    Ok(tg.cpu_ticks()? as f64 / procs::clock_ticks_per_sec() as f64)
}
