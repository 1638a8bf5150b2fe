//! The load generator: MCP `tools/call` over streamable HTTP with a JWT, open loop at a fixed rate or closed loop
//! at a fixed concurrency, latencies in an HdrHistogram.
//!
//! Two flows: stateless-era (`2026-07-28`, protocol version in `_meta`, no session) and 2025-era sessions
//! ([`Target::open_sessions`]: `initialize` + `notifications/initialized` once per session, then every call
//! carries `Mcp-Session-Id` and `MCP-Protocol-Version: 2025-11-25`).
//!
//! Open loop avoids coordinated omission: request `i` is due at `start + i / rate`, a dedicated thread sends it
//! then whether or not earlier ones have answered, and its latency is measured from that intended time. A slow
//! answer therefore costs every request queued behind it, as it would cost real agents; the scheduler's own
//! lateness is recorded separately so the floor of the measurement is known.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// Longest a single call may take before it counts as failed (and is recorded at this latency).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests in flight at once in an open-loop run; later ones wait (their wait counts in their latency).
const MAX_IN_FLIGHT: usize = 512;
/// Largest latency the histograms hold, in microseconds.
const MAX_MICROS: u64 = 60_000_000;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(StatusCode),
    #[error("the answer is not a JSON-RPC result")]
    NotAResult,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("initialize answered without an Mcp-Session-Id")]
    NoSession,
}

/// The 2025-era protocol version the session flow negotiates and then sends on every call.
pub const SESSION_PROTOCOL_VERSION: &str = "2025-11-25";

/// An MCP endpoint and the agents calling it.
pub struct Target {
    http: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    /// `Bearer <jwt>` of each simulated agent; call `i` uses agent `i % len`.
    bearers: Vec<HeaderValue>,
    /// Session flow only: open sessions, call `i` uses session `i % len`. Session `k` was opened by agent
    /// `k % agents` (a session is bound to its agent), and `len` is a multiple of the agents, so call `i` still
    /// goes out as agent `i % agents`.
    sessions: Vec<HeaderValue>,
    /// When set, the response header naming the instance that answered (a load balancer's, e.g. nginx's
    /// `$upstream_addr`): open-loop outcomes then also keep each instance's latencies apart ([`Outcome::routes`]).
    route_header: Option<HeaderName>,
}

/// The calls of one run that one instance behind a load balancer answered (see [`Target::with_route_header`]).
pub struct RouteOutcome {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
}

/// Latencies and counts of one run.
pub struct Outcome {
    /// Microseconds from the intended send time (open loop) or the send (closed loop) to the full answer.
    pub latency: Histogram<u64>,
    /// Open loop with windows only ([`open_loop_windows`]): the latencies of the calls due in each window.
    pub windows: Vec<Histogram<u64>>,
    /// Open loop only: microseconds the scheduler sent each request after its intended time.
    pub lag: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    /// The first error seen, to tell a broken setup from an overloaded one.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Open loop with a route header only: the calls of each instance that answered, by the header's value
    /// (calls answered without the header, e.g. a transport error, are only in the totals).
    pub routes: BTreeMap<String, RouteOutcome>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            latency: histogram(),
            windows: Vec::new(),
            lag: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            routes: BTreeMap::new(),
        }
    }

    fn record_routed(&mut self, micros: u64, result: Result<(), CallError>, route: Option<String>) {
        if let Some(route) = route {
            let r = self.routes.entry(route).or_insert_with(|| RouteOutcome {
                latency: histogram(),
                ok: 0,
                errors: 0,
            });
            r.latency.saturating_record(micros.max(1));
            match result {
                Ok(()) => r.ok += 1,
                Err(_) => r.errors += 1,
            }
        }
        self.record(micros, result);
    }

    fn record(&mut self, micros: u64, result: Result<(), CallError>) {
        self.latency.saturating_record(micros.max(1));
        match result {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Adds `other`'s calls to these (a measurement taken in several slices).
    pub fn merge(&mut self, other: Outcome) {
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.windows.extend(other.windows);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        for (route, r) in other.routes {
            match self.routes.get_mut(&route) {
                Some(mine) => {
                    let _ = mine.latency.add(&r.latency);
                    mine.ok += r.ok;
                    mine.errors += r.errors;
                }
                None => {
                    self.routes.insert(route, r);
                }
            }
        }
    }

    /// Calls answered or failed.
    pub fn calls(&self) -> u64 {
        self.ok + self.errors
    }

    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

impl Target {
    pub fn new(uri: Uri, tokens: &[String]) -> anyhow::Result<Target> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build(connector);
        let bearers = tokens
            .iter()
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .collect::<Result<Vec<_>, _>>()?;
        anyhow::ensure!(!bearers.is_empty(), "at least one agent token is needed");
        Ok(Target {
            http,
            uri,
            bearers,
            sessions: Vec::new(),
            route_header: None,
        })
    }

    /// Keeps each answering instance's latencies apart in open-loop runs, by response header `name`.
    pub fn with_route_header(mut self, name: &'static str) -> Target {
        self.route_header = Some(HeaderName::from_static(name));
        self
    }

    /// Switches to the session flow: opens `n` sessions (rounded up to a multiple of the agents), 16 at a time,
    /// each by its own agent, and sends every later call in one of them.
    pub async fn open_sessions(mut self, n: usize) -> anyhow::Result<Target> {
        let agents = self.bearers.len();
        let n = n.div_ceil(agents) * agents;
        let mut sessions = Vec::with_capacity(n);
        for k in 0..n as u64 {
            let sid = self
                .initialize(k)
                .await
                .map_err(|e| anyhow::anyhow!("opening session {k}: {e}"))?;
            sessions.push(HeaderValue::from_str(&sid)?);
        }
        self.sessions = sessions;
        Ok(self)
    }

    /// Whether calls go out in sessions (2025-era) rather than stateless (2026-07-28).
    pub fn in_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    fn request(&self, i: u64, body: String) -> Request<Full<Bytes>> {
        let mut req = Request::post(self.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("a POST to a parsed URI is a valid request");
        let headers = req.headers_mut();
        let bearer = &self.bearers[(i % self.bearers.len() as u64) as usize];
        headers.insert(AUTHORIZATION, bearer.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        req
    }

    /// One `tools/call` of `echo`; Ok when the answer is a JSON-RPC result. Stateless-era (2026-07-28, `_meta`)
    /// unless sessions are open, then 2025-era in session `i % sessions`.
    pub async fn call(&self, i: u64) -> Result<(), CallError> {
        let session = (!self.sessions.is_empty())
            .then(|| &self.sessions[(i % self.sessions.len() as u64) as usize]);
        self.call_in(i, session).await
    }

    /// One `tools/call` of `echo` as agent `i % agents`: in `session` (2025-era), or stateless without one.
    pub async fn call_in(&self, i: u64, session: Option<&HeaderValue>) -> Result<(), CallError> {
        self.call_routed_in(i, session).await.0
    }

    /// [`Target::call`], with the value of the route header of the answer (when the target has one and the
    /// answer carried it).
    pub async fn call_routed(&self, i: u64) -> (Result<(), CallError>, Option<String>) {
        let session = (!self.sessions.is_empty())
            .then(|| &self.sessions[(i % self.sessions.len() as u64) as usize]);
        self.call_routed_in(i, session).await
    }

    async fn call_routed_in(
        &self,
        i: u64,
        session: Option<&HeaderValue>,
    ) -> (Result<(), CallError>, Option<String>) {
        let req = match session {
            None => {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello from toolgate-bench"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
                );
                self.request(i, body)
            }
            Some(session) => {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello from toolgate-bench"}}}}}}"#
                );
                in_session(self.request(i, body), session)
            }
        };
        let mut route = None;
        let send = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
            let status = resp.status();
            if let Some(name) = &self.route_header {
                route = resp
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
            }
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(CallError::Status(status));
            }
            if !contains(&bytes, br#""result""#) || contains(&bytes, br#""error""#) {
                return Err(CallError::NotAResult);
            }
            Ok(())
        };
        let result = tokio::time::timeout(CALL_TIMEOUT, send)
            .await
            .map_err(|_| CallError::Timeout(CALL_TIMEOUT))
            .and_then(|r| r);
        (result, route)
    }

    /// A 2025-era `initialize` (then `notifications/initialized`), as agent `i`; returns the session id.
    pub async fn initialize(&self, i: u64) -> Result<String, CallError> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"initialize","params":{{"protocolVersion":"{SESSION_PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"toolgate-bench","version":"0"}}}}}}"#
        );
        let resp = self
            .http
            .request(self.request(i, body))
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = resp.status();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = resp.into_body().collect().await;
        if status != StatusCode::OK {
            return Err(CallError::Status(status));
        }
        let sid = sid.ok_or(CallError::NoSession)?;
        let session = HeaderValue::from_str(&sid).map_err(|_| CallError::NoSession)?;
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
        self.send_for_success(in_session(self.request(i, note), &session))
            .await?;
        Ok(sid)
    }

    /// Ends a 2025-era session as agent `i` (`DELETE` with its `Mcp-Session-Id`), as a well-behaved agent does.
    pub async fn close_session(&self, i: u64, session: &HeaderValue) -> Result<(), CallError> {
        let mut req = self.request(i, String::new());
        *req.method_mut() = hyper::Method::DELETE;
        self.send_for_success(in_session(req, session)).await
    }

    /// Sends `req`, reads its answer to the end, and fails unless the status is a success.
    async fn send_for_success(&self, req: Request<Full<Bytes>>) -> Result<(), CallError> {
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            return Err(CallError::Status(status));
        }
        Ok(())
    }
}

/// `req` as part of 2025-era `session`: its `Mcp-Session-Id` and the negotiated protocol version.
fn in_session(mut req: Request<Full<Bytes>>, session: &HeaderValue) -> Request<Full<Bytes>> {
    let headers = req.headers_mut();
    headers.insert("mcp-session-id", session.clone());
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static(SESSION_PROTOCOL_VERSION),
    );
    req
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Open loop: `rate` calls per second for `duration`, each timed from its intended send time.
pub async fn open_loop(target: Arc<Target>, rate: u32, duration: Duration) -> Outcome {
    open_loop_windows(target, rate, duration, None).await
}

/// [`open_loop`], also keeping the latencies of the calls due in each `window` (the steady run's minutes) apart.
pub async fn open_loop_windows(
    target: Arc<Target>,
    rate: u32,
    duration: Duration,
    window: Option<Duration>,
) -> Outcome {
    let total = (u64::from(rate) * duration.as_millis() as u64 / 1000).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let handle = tokio::runtime::Handle::current();
    let mut initial = Outcome::new();
    if let Some(w) = window {
        let n = duration.as_nanos().div_ceil(w.as_nanos().max(1)) as usize;
        initial.windows = (0..n.max(1)).map(|_| histogram()).collect();
    }
    let outcome = Arc::new(Mutex::new(initial));
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now() + Duration::from_millis(20);
    // Every task holds a clone of `done`; the receiver sees the channel close once the scheduler and all tasks
    // have dropped theirs. Keeping no JoinHandle per call keeps a ten-minute run's memory flat.
    let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);

    // The scheduler is a plain thread: tokio's timer has millisecond granularity, which at 5 000 calls/s
    // would send requests in bursts of five and count the burst as latency.
    let scheduler = {
        let outcome = outcome.clone();
        std::thread::spawn(move || {
            for i in 0..total {
                let due = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let lag = due.elapsed().as_micros() as u64;
                if let Ok(mut o) = outcome.lock() {
                    o.lag.saturating_record(lag.max(1));
                }
                let (target, outcome, gate, done) =
                    (target.clone(), outcome.clone(), gate.clone(), done.clone());
                let slot = window.map(|w| {
                    (interval.mul_f64(i as f64).as_nanos() / w.as_nanos().max(1)) as usize
                });
                handle.spawn(async move {
                    let (result, route) = match gate.acquire().await {
                        Ok(_permit) => target.call_routed(i).await,
                        Err(_) => (Err(CallError::Transport("gate closed".into())), None),
                    };
                    let micros = due.elapsed().as_micros() as u64;
                    if let Ok(mut o) = outcome.lock() {
                        if let Some(h) = slot.and_then(|k| o.windows.get_mut(k)) {
                            h.saturating_record(micros.max(1));
                        }
                        o.record_routed(micros, result, route);
                    }
                    // The Arc first: once the last `done` is gone the caller unwraps it.
                    drop(outcome);
                    drop(done);
                });
            }
        })
    };
    let _ = tokio::task::spawn_blocking(move || scheduler.join()).await;
    let _ = all_done.recv().await;
    let elapsed = start.elapsed();
    let mut outcome = match Arc::try_unwrap(outcome) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        // Every task has finished, so nothing else holds the Arc; keep going with empty figures if not.
        Err(_) => Outcome::new(),
    };
    outcome.elapsed = elapsed;
    outcome
}

/// Closed loop: `concurrency` callers, each sending its next call as soon as the last one answered, for
/// `duration`. Its throughput is the saturation throughput of the target.
pub async fn closed_loop(target: Arc<Target>, concurrency: usize, duration: Duration) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::new();
            let mut i = w as u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = target.call(i).await;
                outcome.record(sent.elapsed().as_micros() as u64, result);
                i += concurrency as u64;
            }
            outcome
        }));
    }
    let mut total = Outcome::new();
    for worker in workers {
        if let Ok(o) = worker.await {
            let _ = total.latency.add(&o.latency);
            total.ok += o.ok;
            total.errors += o.errors;
            if total.first_error.is_none() {
                total.first_error = o.first_error;
            }
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// Which era of MCP the calls of a run speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// 2026-07-28: no session, the protocol version in each call's `_meta`.
    Stateless,
    /// 2025-11-25: `initialize` once per session, then `Mcp-Session-Id` on every call.
    Session,
}

impl Flow {
    pub fn label(self) -> &'static str {
        match self {
            Flow::Stateless => "stateless, 2026-07-28",
            Flow::Session => "sessions, 2025-11-25",
        }
    }
}
