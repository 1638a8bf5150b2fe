//! A stdio MCP upstream: one child process shared by many agents, with request ids mapped.
//!
//! The child speaks newline-delimited JSON-RPC 2.0 on stdin/stdout and logs on stderr. Because many
//! agents share it, every forwarded request gets a fresh upstream id (a `u64` counter) and the answer
//! is handed back with the agent's original id restored. A supervisor task owns the child: it does
//! the MCP handshake itself, and when the child dies it fails in-flight requests and restarts it with
//! exponential back-off.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use exchange::{ClosedCheck, Pending};
pub use exchange::{Exchange, Inbound, Owner, Requester, Unroutable, UnroutableReason};
use route::Router;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// The protocol version offered in our own `initialize`.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// A child that writes longer lines is misbehaving; the line is skipped rather than buffered.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Stderr is only logged, so a much smaller bound is enough.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// Keeps one huge line from pinning its buffer for the life of the child.
const KEPT_LINE_CAPACITY: usize = 64 * 1024;
/// How much of a non-JSON line reaches the logs.
const PREVIEW_CHARS: usize = 200;
/// Lines waiting for the writer task; a full queue pushes back on callers.
const WRITE_QUEUE: usize = 256;
/// `notify` has no caller-supplied timeout, so a child that stops reading stdin must not hang it.
const NOTIFY_WAIT: Duration = Duration::from_secs(5);
/// After the child exits, the last lines it wrote are still worth reading (an answer, a last log).
const DRAIN_WAIT: Duration = Duration::from_millis(500);
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long was healthy, so its crash starts the back-off afresh.
const HEALTHY_RESET: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("could not start the upstream child process: {0}")]
    Spawn(io::Error),
    #[error("the upstream child process is down and being restarted")]
    Unavailable,
    #[error("the upstream child process did not answer in time")]
    Timeout,
    #[error("the upstream has been shut down")]
    Closed,
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("no request of the upstream awaits this answer from this agent")]
    NotAwaited,
}

/// One stdio MCP server process shared by every agent routed to it.
pub struct StdioUpstream {
    shared: Arc<Shared>,
    supervisor: AbortHandle,
}

impl StdioUpstream {
    /// Spawns `command` (argv; `command[0]` resolved via PATH) with `env` added, performs the MCP
    /// handshake (initialize, then notifications/initialized) and supervises the child, restarting
    /// it with exponential back-off when it exits. Returns once the first handshake succeeded, or
    /// the error of the first spawn or handshake (each bounded by `timeout`).
    pub async fn start(
        name: &str,
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Arc<StdioUpstream>, StdioError> {
        let spec = ChildSpec::new(command, env, timeout)?;
        let shared = Arc::new(Shared::new(name));
        let (first_tx, first_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(shared.clone(), spec, first_tx)).abort_handle();
        // Built before waiting so that an error (or a cancelled `start`) drops it and kills the child.
        let upstream = Arc::new(StdioUpstream { shared, supervisor });
        match first_rx.await {
            Ok(Ok(())) => Ok(upstream),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(StdioError::Closed),
        }
    }

    /// The child's initialize result (serverInfo, capabilities, protocolVersion) from the latest
    /// handshake.
    pub fn initialize_result(&self) -> Value {
        lock(&self.shared.initialize_result).clone()
    }

    /// Sends one JSON-RPC request (number or string id) under a fresh upstream id, waits up to
    /// `timeout` for the matching response and returns it with the original id restored. No request of the
    /// child's is routed to it.
    pub async fn request(&self, message: Value, timeout: Duration) -> Result<Value, StdioError> {
        self.exchange(message, None, timeout)
            .await?
            .response()
            .await
    }

    /// Sends one JSON-RPC request (number or string id) under a fresh upstream id on behalf of `requester`,
    /// and returns its exchange: the child's requests routed to that agent while it is in flight, then the
    /// answer with the original id restored (see [`Exchange::next`] for the timeout).
    pub async fn exchange(
        &self,
        mut message: Value,
        requester: Option<Requester>,
        timeout: Duration,
    ) -> Result<Exchange, StdioError> {
        let object = message
            .as_object_mut()
            .ok_or_else(|| protocol("a request must be a JSON object"))?;
        if !object.get("method").is_some_and(Value::is_string) {
            return Err(protocol("a request needs a string method"));
        }
        let upstream_id = self.shared.next_id();
        let original_id = match object.insert("id".to_owned(), Value::from(upstream_id)) {
            Some(id @ (Value::Number(_) | Value::String(_))) => id,
            _ => return Err(protocol("a request needs a number or string id")),
        };
        // The child reports progress by the token it was given: toolgate's own (the upstream id), so two agents
        // with the same token cannot receive each other's, and the agent's is restored on the way back.
        let progress_token = object
            .get_mut("params")
            .and_then(|params| params.get_mut("_meta"))
            .and_then(Value::as_object_mut)
            .and_then(|meta| meta.get_mut("progressToken"))
            .map(|token| std::mem::replace(token, Value::from(upstream_id)));
        let link = self.shared.current_link()?;
        let shared = self.shared.clone();
        let start = ExchangeStart {
            requester,
            progress_token,
            original_id,
            timeout,
            closed: Arc::new(move || shared.is_closed()),
        };
        match tokio::time::timeout(timeout, link.exchange(upstream_id, &message, start)).await {
            Err(_) => {
                tracing::debug!(upstream = %self.shared.name, upstream_id, "request timed out");
                Err(StdioError::Timeout)
            }
            Ok(Err(StdioError::Unavailable)) if self.shared.is_closed() => Err(StdioError::Closed),
            Ok(outcome) => outcome,
        }
    }

    /// Writes an answer to a request of the child's back with the child's own id: the agent's, or toolgate's
    /// refusal in its place. Only an id delivered to `owner` and not yet answered is accepted
    /// ([`StdioError::NotAwaited`] otherwise, whoever else it was delivered to).
    pub async fn answer(&self, owner: &Owner, answer: Value) -> Result<(), StdioError> {
        let link = self.shared.current_link()?;
        let line = link.pending.answer(owner, answer)?;
        link.send_line(line).await
    }

    /// Sets what to do when the child says its tools changed (once; a second call is ignored). The notice is
    /// acted on even when it reaches no agent.
    pub fn on_tools_changed(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.on_tools_changed.set(Box::new(f));
    }

    /// Sends a notification (no id, no answer).
    pub async fn notify(&self, message: Value) -> Result<(), StdioError> {
        let object = message
            .as_object()
            .ok_or_else(|| protocol("a notification must be a JSON object"))?;
        if !object.get("method").is_some_and(Value::is_string) {
            return Err(protocol("a notification needs a string method"));
        }
        if object.contains_key("id") {
            return Err(protocol("a notification must not carry an id"));
        }
        self.shared.current_link()?.send(&message).await
    }

    /// Whether a handshaken child is currently serving requests.
    pub fn is_up(&self) -> bool {
        lock(&self.shared.link).is_some()
    }

    /// How many times the child has been spawned again after the first start (attempts, whether
    /// or not the new child came up).
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Kills the child and stops supervising; later calls fail with [`StdioError::Closed`].
    pub fn shutdown(&self) {
        let link = {
            let mut slot = lock(&self.shared.link);
            self.shared.closed.store(true, Ordering::SeqCst);
            slot.take()
        };
        if let Some(link) = link {
            link.pending.close();
        }
        // The supervisor owns the child (kill_on_drop) and its I/O tasks (a JoinSet aborts on
        // drop), so aborting it tears everything down.
        self.supervisor.abort();
    }
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("name", &self.shared.name)
            .field("up", &self.is_up())
            .field("restarts", &self.restarts())
            .finish_non_exhaustive()
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// State shared by the public handle and the supervisor. Never holds the handle itself, so dropping
/// the last `Arc<StdioUpstream>` really stops the child.
struct Shared {
    name: Arc<str>,
    next_id: AtomicU64,
    /// The running, handshaken child; `None` while it is down. A std mutex: it is never held
    /// across an await.
    link: Mutex<Option<Arc<Link>>>,
    initialize_result: Mutex<Value>,
    closed: AtomicBool,
    restarts: AtomicU64,
    /// Told when the child says its tools changed (`notifications/tools/list_changed`), whoever it reaches.
    on_tools_changed: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Shared {
    fn new(name: &str) -> Self {
        Shared {
            name: Arc::from(name),
            next_id: AtomicU64::new(1),
            link: Mutex::new(None),
            initialize_result: Mutex::new(Value::Null),
            closed: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            on_tools_changed: std::sync::OnceLock::new(),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn current_link(&self) -> Result<Arc<Link>, StdioError> {
        let slot = lock(&self.link);
        if self.is_closed() {
            return Err(StdioError::Closed);
        }
        slot.clone().ok_or(StdioError::Unavailable)
    }

    /// Publishes a link, unless `shutdown` already ran (checked under the same lock it takes).
    fn publish(&self, link: Arc<Link>) -> bool {
        let mut slot = lock(&self.link);
        if self.is_closed() {
            return false;
        }
        *slot = Some(link);
        true
    }

    fn unpublish(&self) {
        lock(&self.link).take();
    }
}

/// The I/O of one running child: its stdin queue and the requests waiting for an answer.
struct Link {
    writer: mpsc::Sender<Vec<u8>>,
    pending: Arc<Pending>,
}

impl Link {
    /// Sends a request already carrying `id` (the agent's `original_id` set aside) and returns its exchange.
    async fn exchange(
        &self,
        id: u64,
        message: &Value,
        start: ExchangeStart,
    ) -> Result<Exchange, StdioError> {
        let line = encode(message)?;
        let registered = self
            .pending
            .register(id, start.requester, start.progress_token)?;
        // Built before sending, so a failed or cancelled send forgets the entry.
        let exchange = Exchange::new(
            registered,
            self.pending.clone(),
            id,
            start.original_id,
            start.timeout,
            start.closed,
        );
        self.writer
            .send(line)
            .await
            .map_err(|_| StdioError::Unavailable)?;
        Ok(exchange)
    }

    async fn send(&self, message: &Value) -> Result<(), StdioError> {
        self.send_line(encode(message)?).await
    }

    async fn send_line(&self, line: Vec<u8>) -> Result<(), StdioError> {
        self.writer
            .send_timeout(line, NOTIFY_WAIT)
            .await
            .map_err(|err| match err {
                mpsc::error::SendTimeoutError::Timeout(_) => StdioError::Timeout,
                mpsc::error::SendTimeoutError::Closed(_) => StdioError::Unavailable,
            })
    }
}

/// What an exchange is opened with besides its message.
struct ExchangeStart {
    requester: Option<Requester>,
    progress_token: Option<Value>,
    original_id: Value,
    timeout: Duration,
    closed: ClosedCheck,
}

/// How to start the child. Deliberately not `Debug`: arguments and env values may hold secrets.
struct ChildSpec {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl ChildSpec {
    fn new(
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, StdioError> {
        let (program, args) = command.split_first().ok_or_else(|| {
            StdioError::Spawn(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command is empty",
            ))
        })?;
        Ok(ChildSpec {
            program: program.clone(),
            args: args.to_vec(),
            env: env.to_vec(),
            timeout,
        })
    }

    fn spawn(&self) -> Result<Child, StdioError> {
        Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(StdioError::Spawn)
    }
}

/// Runs children one after another until aborted. The first outcome goes to `first`; if the first
/// child never comes up, supervision stops there.
async fn supervise(
    shared: Arc<Shared>,
    spec: ChildSpec,
    first: oneshot::Sender<Result<(), StdioError>>,
) {
    let mut first = Some(first);
    let mut backoff = BACKOFF_INITIAL;
    loop {
        match run_child(&shared, &spec, &mut first).await {
            Ok(healthy_for) => {
                if healthy_for >= HEALTHY_RESET {
                    backoff = BACKOFF_INITIAL;
                }
            }
            Err(err) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(err));
                    return;
                }
                tracing::warn!(upstream = %shared.name, error = %err, "upstream child failed to come up");
            }
        }
        if shared.is_closed() {
            return;
        }
        tracing::warn!(
            upstream = %shared.name,
            delay_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "restarting upstream child"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        shared.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spawns one child, handshakes, serves until it exits, and returns how long it was up. An `Err`
/// means it never came up.
async fn run_child(
    shared: &Shared,
    spec: &ChildSpec,
    first: &mut Option<oneshot::Sender<Result<(), StdioError>>>,
) -> Result<Duration, StdioError> {
    let mut child = spec.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(StdioError::Spawn(io::Error::other(
            "the child's stdio pipes are missing",
        )));
    };
    tracing::debug!(upstream = %shared.name, pid = child.id(), "upstream child spawned");

    // Dropping these sets (on return or abort) stops the tasks.
    let mut writer_task = JoinSet::new();
    let mut stderr_task = JoinSet::new();
    let (writer, queue) = mpsc::channel(WRITE_QUEUE);
    writer_task.spawn(write_lines(stdin, queue, shared.name.clone()));
    stderr_task.spawn(log_stderr(stderr, shared.name.clone()));

    let link = Arc::new(Link {
        writer: writer.clone(),
        pending: Arc::new(Pending::default()),
    });
    // Read inline rather than in a task, so the stdout closing is one more event to wait on.
    let router = Router {
        shared,
        pending: link.pending.clone(),
        writer,
        answer_within: spec.timeout,
    };
    let reading = read_stdout(BufReader::new(stdout), router);
    tokio::pin!(reading);

    let handshake = tokio::time::timeout(spec.timeout, handshake(shared, spec, &link));
    let handshaken = tokio::select! {
        outcome = handshake => outcome.unwrap_or(Err(StdioError::Timeout)),
        () = &mut reading => Err(protocol("the child closed stdout during the MCP handshake")),
        status = child.wait() => Err(protocol(&format!(
            "the child exited during the MCP handshake ({})",
            describe_exit(&status)
        ))),
    };
    let initialize_result = match handshaken {
        Ok(result) => result,
        Err(err) => {
            link.pending.close();
            return Err(err);
        }
    };
    log_ready(&shared.name, &initialize_result);
    *lock(&shared.initialize_result) = initialize_result;
    if !shared.publish(link.clone()) {
        link.pending.close();
        return Err(StdioError::Closed);
    }
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
    let up_since = Instant::now();

    let status = tokio::select! {
        () = &mut reading => {
            // A child without stdout can no longer answer; make sure it is really gone.
            let _ = child.start_kill();
            child.wait().await
        }
        status = child.wait() => {
            let _ = tokio::time::timeout(DRAIN_WAIT, &mut reading).await;
            status
        }
    };
    // Down first, then fail the waiters: a caller that sees Unavailable also sees is_up() false.
    shared.unpublish();
    link.pending.close();
    let _ = tokio::time::timeout(DRAIN_WAIT, stderr_task.join_next()).await;
    tracing::warn!(upstream = %shared.name, status = %describe_exit(&status), "upstream child exited");
    Ok(up_since.elapsed())
}

/// Our own initialize and notifications/initialized; returns the child's initialize result.
async fn handshake(shared: &Shared, spec: &ChildSpec, link: &Link) -> Result<Value, StdioError> {
    let id = shared.next_id();
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "toolgate", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let start = ExchangeStart {
        requester: None,
        progress_token: None,
        original_id: Value::from(id),
        timeout: spec.timeout,
        closed: Arc::new(|| false),
    };
    let response = link
        .exchange(id, &initialize, start)
        .await?
        .response()
        .await?;
    let result = match (response.get("result"), response.get("error")) {
        (Some(result @ Value::Object(_)), _) => result.clone(),
        (_, Some(error)) => {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            return Err(protocol(&format!(
                "the child refused initialize (JSON-RPC error {code})"
            )));
        }
        _ => return Err(protocol("the child's initialize result is not an object")),
    };
    link.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    Ok(result)
}

fn log_ready(name: &str, initialize_result: &Value) {
    let server = initialize_result
        .pointer("/serverInfo/name")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let version = initialize_result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    tracing::info!(upstream = %name, server = %preview(server.as_bytes()), protocol_version = %preview(version.as_bytes()), "upstream child ready");
}

/// The only task that writes to stdin, so lines never interleave.
async fn write_lines(mut stdin: ChildStdin, mut queue: mpsc::Receiver<Vec<u8>>, name: Arc<str>) {
    while let Some(line) = queue.recv().await {
        let written = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
        .await;
        if let Err(err) = written {
            tracing::debug!(upstream = %name, error = %err, "writing to the child's stdin failed");
            return;
        }
    }
}

async fn read_stdout(mut stdout: BufReader<ChildStdout>, router: Router<'_>) {
    let name = router.shared.name.clone();
    let mut line = Vec::new();
    loop {
        match read_line_bounded(&mut stdout, &mut line, MAX_LINE).await {
            Ok(LineRead::Eof) => return,
            Ok(LineRead::TooLong) => {
                tracing::warn!(upstream = %name, max_bytes = MAX_LINE, "skipped an over-long line from the child");
            }
            Ok(LineRead::Line) => router.line(&line),
            Err(err) => {
                tracing::warn!(upstream = %name, error = %err, "reading the child's stdout failed");
                return;
            }
        }
        if line.capacity() > KEPT_LINE_CAPACITY {
            line = Vec::new();
        }
    }
}

async fn log_stderr(stderr: tokio::process::ChildStderr, name: Arc<str>) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        match read_line_bounded(&mut stderr, &mut line, MAX_STDERR_LINE).await {
            Ok(LineRead::Line) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(upstream = %name, line = %text.trim_end(), "child stderr");
            }
            Ok(LineRead::TooLong) => {
                tracing::debug!(upstream = %name, "skipped an over-long stderr line from the child")
            }
            Ok(LineRead::Eof) | Err(_) => return,
        }
    }
}

#[derive(Debug, PartialEq)]
enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line (newline included if present) into `buf`, never holding more than `max` bytes:
/// the rest of a longer line is consumed and discarded.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (used, complete) = match available.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            let content = buf.len() + used - usize::from(complete);
            if content > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..used]);
            }
        }
        reader.consume(used);
        if complete {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

fn encode(message: &Value) -> Result<Vec<u8>, StdioError> {
    let mut line = serde_json::to_vec(message)
        .map_err(|err| protocol(&format!("could not encode a message: {err}")))?;
    line.push(b'\n');
    Ok(line)
}

/// The first characters of untrusted output, for a log line.
fn preview(bytes: &[u8]) -> String {
    // 4 bytes per char at most, so this slice still holds PREVIEW_CHARS characters.
    let head = &bytes[..bytes.len().min(PREVIEW_CHARS * 4)];
    String::from_utf8_lossy(head)
        .chars()
        .take(PREVIEW_CHARS)
        .collect()
}

fn describe_exit(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(err) => format!("status unknown: {err}"),
    }
}

fn protocol(message: &str) -> StdioError {
    StdioError::Protocol(message.to_owned())
}

/// A poisoned lock only means another thread panicked mid-update of plain data; keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

mod exchange;
mod route;
#[cfg(test)]
mod tests;
