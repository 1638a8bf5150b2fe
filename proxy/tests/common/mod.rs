//! Test harness: starts the real toolgate server in-process on 127.0.0.1:0 with real upstreams (the bundled
//! demo server as a stdio child, and a mock streamable-HTTP MCP server), and speaks MCP to it over HTTP.
#![allow(dead_code)]

pub mod instances;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use toolgate::app::App;
use toolgate::config::Config;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN: &str = "integration-admin-token";

/// The repository's root (for the shipped policies).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A running toolgate.
pub struct Proxy {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Extra TOML appended to the generated config, e.g. more `[[upstream]]` tables.
pub struct Options {
    pub extra_toml: String,
    pub demo: bool,
    pub database_url: Option<String>,
    pub hold_seconds: u64,
    /// Extra lines inside `[auth]`, e.g. `audience = "toolgate"`.
    pub auth_toml: String,
    /// Extra lines inside `[audit]`, e.g. `public_verify_per_minute = 2`.
    pub audit_toml: String,
    /// Extra lines inside `[escalation]`, e.g. `timeout_seconds = 1`.
    pub escalation_toml: String,
    /// `policy.dir` (default: the shipped `policies/`); a test that edits policies passes its own copy.
    pub policy_dir: Option<PathBuf>,
    /// `telemetry.otlp_endpoint`: with it the harness installs traces as `serve` does (once per test binary:
    /// the subscriber is process-global, so every test of that binary must use the same endpoint).
    pub otlp_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_toml: String::new(),
            demo: true,
            database_url: None,
            hold_seconds: 0,
            auth_toml: String::new(),
            audit_toml: String::new(),
            escalation_toml: String::new(),
            policy_dir: None,
            otlp_endpoint: None,
        }
    }
}

/// toolgate in front of the mock streamable-HTTP upstream, as upstream `web` (workdir `/workspace`, timeout 5 s),
/// without the demo child; the shipped policies unless `policy_dir` says otherwise.
pub async fn with_http_upstream(
    state: upstream::State,
    policy_dir: Option<PathBuf>,
) -> (Proxy, upstream::MockUpstream) {
    let mock = upstream::start(state).await;
    let extra = format!(
        "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 5\nworkdir = \"/workspace\"\n",
        mock.addr
    );
    let proxy = start(Options {
        extra_toml: extra,
        demo: false,
        policy_dir,
        ..Default::default()
    })
    .await;
    (proxy, mock)
}

pub async fn start(opts: Options) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let db = opts
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("audit.db").display()));
    // The audit signing key lives in the test's folder, never in the working directory.
    let key = dir.path().join("audit.signing-key").display().to_string();
    let audit_toml = &opts.audit_toml;
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n[auth]\nhs256_secret = \"{SECRET}\"\n{}\n[admin]\ntoken = \"{ADMIN}\"\n[policy]\ndir = \"{}\"\n[audit]\ndatabase_url = \"{db}\"\nsigning_key_file = \"{key}\"\n{audit_toml}\n[escalation]\nhold_seconds = {}\n{}\n",
        opts.auth_toml,
        opts.policy_dir
            .clone()
            .unwrap_or_else(|| repo_root().join("policies"))
            .display(),
        opts.hold_seconds,
        opts.escalation_toml,
    );
    if opts.demo {
        toml.push_str(&format!(
            "[[upstream]]\nname = \"demo\"\ncommand = [\"{}\", \"demo-server\", \"--sandbox\", \"{}\"]\ntimeout_seconds = 2\nworkdir = \"/workspace\"\n",
            env!("CARGO_BIN_EXE_toolgate"),
            dir.path().join("sandbox").display()
        ));
    }
    if let Some(endpoint) = &opts.otlp_endpoint {
        toml.push_str(&format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\n"));
    }
    toml.push_str(&opts.extra_toml);
    let path = dir.path().join("toolgate.toml");
    std::fs::write(&path, toml).unwrap();
    let config = Config::load(&path, &HashMap::new()).expect("test config is valid");
    if config.telemetry.otlp_endpoint.is_some() {
        // Log lines stay off unless asked for (TOOLGATE_TEST_LOG, an EnvFilter list): they go to stdout.
        let logs = toolgate::telemetry::logs::LogSettings {
            debug: false,
            filter: Some(std::env::var("TOOLGATE_TEST_LOG").unwrap_or_else(|_| "off".into())),
        };
        toolgate::telemetry::traces::install(
            &logs,
            &config.telemetry,
            &toolgate::outbound::client(),
        )
        .expect("traces install");
    }
    let app = App::start(config).await.expect("toolgate starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(toolgate::server::run(listener, app.clone(), async move {
        let _ = rx.await;
    }));
    Proxy {
        addr,
        app,
        dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits for the audit log to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.app.siem.stop().await;
        self.app.audit.close().await;
    }
}

/// A token for `sub` with the given roles, valid for an hour.
pub fn token(sub: &str, roles: &[&str]) -> String {
    let settings = toolgate::auth::AuthSettings {
        hs256_secret: Some(SECRET.into()),
        ..Default::default()
    };
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    toolgate::auth::mint_hs256(
        &settings,
        sub,
        Some("tenant-1"),
        &roles,
        Duration::from_secs(3600),
    )
    .unwrap()
}

/// A token with arbitrary claims signed with `secret`.
pub fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON-RPC message of an answer that is JSON or SSE.
    pub fn message(&self) -> Value {
        let ct = self.header("content-type").unwrap_or_default();
        if ct.starts_with("text/event-stream") {
            let text = String::from_utf8_lossy(&self.body);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let last = data.iter().rev().find_map(|d| {
                serde_json::from_str::<Value>(d)
                    .ok()
                    .filter(|v| v.get("id").is_some())
            });
            last.unwrap_or_else(|| panic!("no JSON-RPC answer in SSE: {text}"))
        } else {
            self.json()
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn error_code(&self) -> Option<i64> {
        self.message().get("error")?.get("code")?.as_i64()
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request and reads the whole answer.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .expect("request reaches toolgate");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("answer within 20 s")
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An MCP client of one agent against one upstream of the proxy.
pub struct Agent {
    pub url: String,
    pub token: String,
    pub session: Option<String>,
    next_id: i64,
}

impl Agent {
    /// An agent of the MCP endpoint at `url` (another process's, say).
    pub fn at(url: String, token: String) -> Agent {
        Agent {
            url,
            token,
            session: None,
            next_id: 1,
        }
    }

    pub fn new(proxy: &Proxy, upstream: &str, token: String) -> Agent {
        Agent {
            url: proxy.url(&format!("/mcp/{upstream}")),
            token,
            session: None,
            next_id: 1,
        }
    }

    /// POSTs one JSON-RPC message with the usual MCP headers.
    pub async fn post(&self, message: &Value) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = &self.session {
            headers.push(("mcp-session-id", s.as_str()));
        }
        send(Method::POST, &self.url, &headers, message.to_string()).await
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Answer {
        let id = self.next_id;
        self.next_id += 1;
        self.post(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await
    }

    /// The 2025 era handshake: initialize, remember the session, send notifications/initialized.
    pub async fn initialize(&mut self) -> Answer {
        let answer = self
            .request("initialize", json!({ "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } }))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "initialize: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        self.session = Some(
            answer
                .header("mcp-session-id")
                .expect("initialize returns Mcp-Session-Id"),
        );
        let note = self
            .post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(note.status, StatusCode::ACCEPTED);
        answer
    }

    pub async fn call(&mut self, tool: &str, arguments: Value) -> Answer {
        self.request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }

    /// A stateless-era (2026-07-28) call: no session, the version in `_meta`.
    pub async fn call_stateless(&mut self, tool: &str, arguments: Value) -> Answer {
        self.request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments, "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } }),
        )
        .await
    }
}

/// The newest `limit` audit events as JSON (newest first); empty if the query fails.
pub async fn audit_events(app: &App, limit: u32) -> Vec<Value> {
    let filter = toolgate::audit::EventFilter {
        limit: Some(limit),
        ..Default::default()
    };
    let Ok(page) = app.audit.store().query(&filter).await else {
        return Vec::new();
    };
    let v = serde_json::to_value(page).unwrap_or_default();
    v.get("events")
        .cloned()
        .unwrap_or(v)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls `f` until it returns Some, for at most `limit` (no fixed sleeps: the first success returns at once).
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Copies the folder `from` into `to`, subfolders included.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the shipped policies under `dir` (as `dir/policies`) whose `toolgate_config` knobs `edit`
/// changed, for a test that needs another setting than the shipped default.
pub fn shipped_policies_with(dir: &std::path::Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let policies = dir.join("policies");
    copy_dir(&repo_root().join("policies"), &policies);
    let data_path = policies.join("toolgate/data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    edit(&mut data["toolgate_config"]);
    std::fs::write(&data_path, data.to_string()).unwrap();
    policies
}

/// Runs `case` with the URL of a fresh PostgreSQL schema (dropped afterwards, also when the case fails), or
/// prints a skip notice and returns when `TOOLGATE_TEST_POSTGRES_URL` is not set.
pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(schema) = instances::PgSchema::create("toolgate_case").await else {
        return;
    };
    // A task, so a failing assertion still lets the schema be dropped.
    let outcome = tokio::spawn(case(schema.url.clone())).await;
    schema.drop_now().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
