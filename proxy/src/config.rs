//! TOML configuration with environment overrides, validated once at start into typed structs.
//!
//! Nothing reads environment variables after start: [`Config::load`] takes the environment as a map, which also
//! lets tests build configurations without touching the process environment.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod behavior;
mod listener;
mod runs;

pub use behavior::BehaviorSettings;
pub use listener::{ClientAuth, ServerSettings, TlsFiles, TlsSettings};
pub use runs::RunsSettings;
pub mod admin_tokens;
mod secret;
mod siem;
pub use secret::Secret;
pub use siem::{SiemSinkSettings, SinkKind, DATADOG_MAX_ENTRIES};

use crate::audit::AuditSettings;
use crate::auth::AuthSettings;
pub use crate::telemetry::TelemetrySettings;

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "toolgate.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

/// The whole configuration, as `toolgate.toml` spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Base URL agents use to reach toolgate, for RFC 9728 metadata and `WWW-Authenticate`; default: the
    /// address the connection arrived at (never the request's `Host`, which the client chooses).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub session: SessionSettings,
    #[serde(default)]
    pub escalation: EscalationSettings,
    #[serde(default)]
    pub agents: AgentSettings,
    #[serde(default)]
    pub tools: ToolsSettings,
    /// `[behavior]`: baselines, scores and the alert rules' thresholds.
    #[serde(default)]
    pub behavior: BehaviorSettings,
    #[serde(default)]
    pub runs: RunsSettings,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamSettings>,
    /// `[[siem]]`: the SIEM sinks the audit log is delivered to.
    #[serde(default)]
    pub siem: Vec<SiemSinkSettings>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token of the admin API (every tenant); none and no tenant token = the admin API is off.
    pub token: Option<String>,
    /// Tokens that each see one tenant's objects only (`[[admin.tenant_tokens]]`).
    #[serde(default)]
    pub tenant_tokens: Vec<TenantTokenSettings>,
}

/// One `[[admin.tenant_tokens]]`: the tenant, and where its token is read from when the configuration is loaded
/// (never the config file itself, so the file can be shared).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTokenSettings {
    pub tenant: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The token, read at load ([`admin_tokens`]).
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tenant_tokens", &self.tenant_tokens)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Folder of `.rego` and data files.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            dir: default_policy_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// A session unused this long is forgotten (and a `session_end` event recorded).
    #[serde(default = "default_session_idle")]
    pub idle_timeout_seconds: u64,
    /// Most open sessions at once; `initialize` beyond it is refused with 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most open sessions of one agent (tenant and `sub`); its `initialize` beyond it ends its own longest-idle
    /// session, so no agent can fill `max_sessions` alone.
    #[serde(default = "default_max_sessions_per_agent")]
    pub max_sessions_per_agent: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout_seconds: default_session_idle(),
            max_sessions: default_max_sessions(),
            max_sessions_per_agent: default_max_sessions_per_agent(),
        }
    }
}

impl SessionSettings {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSettings {
    /// How long an escalated call is held waiting for a human before it is answered `-31002` (0 = at once).
    #[serde(default)]
    pub hold_seconds: u64,
    /// How long a reviewer's answer that no held call received waits for the agent's identical retry.
    #[serde(default = "default_answer_ttl_seconds")]
    pub answer_ttl_seconds: u64,
    /// Most pending escalations of one agent (tenant and `sub`); a call escalated beyond it is denied.
    #[serde(default = "default_max_pending_per_agent")]
    pub max_pending_per_agent: usize,
    /// How long an escalation may stay pending; then it expires to deny (`escalation_expired`).
    #[serde(default = "default_escalation_timeout_seconds")]
    pub timeout_seconds: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings {
            hold_seconds: 0,
            answer_ttl_seconds: default_answer_ttl_seconds(),
            max_pending_per_agent: default_max_pending_per_agent(),
            timeout_seconds: default_escalation_timeout_seconds(),
        }
    }
}

fn default_escalation_timeout_seconds() -> u64 {
    1800
}

/// The longest `escalation.timeout_seconds`: ten years, far beyond any review, and far from the end of the
/// timestamps the store can order.
const MAX_ESCALATION_TIMEOUT_SECONDS: u64 = 10 * 366 * 24 * 3600;

fn default_answer_ttl_seconds() -> u64 {
    3600
}

fn default_max_pending_per_agent() -> usize {
    16
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Agent ids (`sub`) that are stopped at the session stage with 403, whatever their token says.
    #[serde(default)]
    pub disabled: Vec<String>,
}

/// `[tools]`: how the tool definitions upstreams list are pinned against rug pulls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsSettings {
    /// `tofu` (the first definition seen is pinned) or `approve` (every new definition waits for an admin).
    #[serde(default)]
    pub pinning: crate::tools::Pinning,
}

/// One `[[upstream]]`: an MCP server reached over streamable HTTP (`url`) or a stdio child (`command`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub name: String,
    pub url: Option<String>,
    pub command: Option<Vec<String>>,
    /// Extra environment for a stdio child.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra headers sent to an HTTP upstream (e.g. its own credentials); the agent's token is never passed on.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTPS upstreams: a PEM file of extra CA certificates to trust (a private CA), besides the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one forwarded request may take.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_seconds: u64,
    /// Directory relative tool paths are resolved against before policy evaluation.
    #[serde(default = "default_workdir")]
    pub workdir: String,
}

impl UpstreamSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("./policies")
}
fn default_session_idle() -> u64 {
    3600
}
fn default_max_sessions() -> usize {
    100_000
}
fn default_max_sessions_per_agent() -> usize {
    64
}
fn default_upstream_timeout() -> u64 {
    30
}
fn default_workdir() -> String {
    "/".into()
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("an empty config is valid")
    }
}

impl Config {
    /// Reads `path` (a missing file is an error unless it is the default path, which then means "all defaults"),
    /// applies the environment overrides of the contract, and validates.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                String::new()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
        config.apply_env(env)?;
        siem::resolve_tokens(&mut config.siem, env)?;
        admin_tokens::resolve(&mut config.admin, env)?;
        config.validate()?;
        Ok(config)
    }

    /// The environment variables of the contract override the file.
    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(v) = get("TOOLGATE_LISTEN") {
            self.listen = v.parse().map_err(|e| ConfigError::Invalid {
                key: "TOOLGATE_LISTEN".into(),
                message: format!("{e}"),
            })?;
        }
        if let Some(v) = get("TOOLGATE_JWT_HS256_SECRET") {
            self.auth.hs256_secret = Some(v);
        }
        if let Some(v) = get("TOOLGATE_JWKS_FILE") {
            self.auth.jwks_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("TOOLGATE_JWKS_URL") {
            self.auth.jwks_url = Some(v);
        }
        if let Some(v) = get("TOOLGATE_JWT_ISSUER") {
            self.auth.issuer = Some(v);
        }
        if let Some(v) = get("TOOLGATE_JWT_AUDIENCE") {
            self.auth.audience = Some(v);
        }
        if let Some(v) = get("TOOLGATE_ADMIN_TOKEN") {
            self.admin.token = Some(v);
        }
        if let Some(v) = get("TOOLGATE_POLICY_DIR") {
            self.policy.dir = PathBuf::from(v);
        }
        if let Some(v) = get("TOOLGATE_DATABASE_URL") {
            self.audit.database_url = v;
        }
        // The standard OpenTelemetry variables, read here once like every other one; TOOLGATE_* ones win.
        if let Some(v) =
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.telemetry.otlp_endpoint = Some(v);
        }
        if let Some(v) =
            get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            self.telemetry.otlp_protocol = v;
        }
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            self.telemetry.service_name = v;
        }
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for pair in v.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    self.telemetry
                        .resource_attributes
                        .insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        if let Some(v) = get("TOOLGATE_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(v);
        }
        if let Some(v) = get("TOOLGATE_OTLP_PROTOCOL") {
            self.telemetry.otlp_protocol = v;
        }
        let disabled = |k: &str| get(k).map(|v| v.to_ascii_lowercase());
        if disabled("OTEL_SDK_DISABLED").as_deref() == Some("true")
            || disabled("OTEL_TRACES_EXPORTER").as_deref() == Some("none")
        {
            self.telemetry.otlp_endpoint = None;
        }
        if let Some(v) = get("TOOLGATE_SSE_KEEPALIVE_SECONDS") {
            self.telemetry.sse_keepalive_seconds = v.parse().map_err(|_| ConfigError::Invalid {
                key: "TOOLGATE_SSE_KEEPALIVE_SECONDS".into(),
                message: format!("not a number of seconds: {v:?}"),
            })?;
        }
        if let Some(v) = get("TOOLGATE_DEBUG") {
            self.telemetry.debug =
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = get("TOOLGATE_LOG") {
            self.telemetry.log = Some(v);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if self.max_body_bytes < 1024 {
            return Err(invalid(
                "max_body_bytes",
                format!("{} is below the minimum of 1024", self.max_body_bytes),
            ));
        }
        if !matches!(
            self.telemetry.otlp_protocol.as_str(),
            "grpc" | "http/protobuf"
        ) {
            return Err(invalid(
                "telemetry.otlp_protocol",
                format!(
                    "{:?} is not one of \"grpc\", \"http/protobuf\"",
                    self.telemetry.otlp_protocol
                ),
            ));
        }
        if self
            .audit
            .retention_days_by_tenant
            .keys()
            .any(|tenant| tenant.trim().is_empty())
        {
            return Err(invalid(
                "audit.retention_days_by_tenant",
                "a tenant name is empty".to_owned(),
            ));
        }
        if let Some(url) = &self.public_url {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e| invalid("public_url", format!("{url:?}: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
                return Err(invalid(
                    "public_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        self.server.validate()?;
        self.behavior.validate()?;
        self.tls.files()?;
        self.runs.validate()?;
        siem::validate(&self.siem)?;
        for (key, value) in [
            ("session.max_sessions", self.session.max_sessions),
            (
                "session.max_sessions_per_agent",
                self.session.max_sessions_per_agent,
            ),
            (
                "escalation.max_pending_per_agent",
                self.escalation.max_pending_per_agent,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if !(1..=MAX_ESCALATION_TIMEOUT_SECONDS).contains(&self.escalation.timeout_seconds) {
            return Err(invalid(
                "escalation.timeout_seconds",
                format!(
                    "{} is not between 1 and {MAX_ESCALATION_TIMEOUT_SECONDS}",
                    self.escalation.timeout_seconds
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for u in &self.upstreams {
            let key = format!("upstream.{}", u.name);
            if u.name.is_empty()
                || !u
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(invalid(
                    "upstream.name",
                    format!("{:?} must be non-empty [A-Za-z0-9._-]", u.name),
                ));
            }
            if !seen.insert(u.name.as_str()) {
                return Err(invalid(&key, "the name is used twice".into()));
            }
            match (&u.url, &u.command) {
                (Some(_), Some(_)) => {
                    return Err(invalid(&key, "set either url or command, not both".into()))
                }
                (None, None) => {
                    return Err(invalid(
                        &key,
                        "set url (streamable HTTP) or command (stdio)".into(),
                    ))
                }
                (Some(url), None) => {
                    let uri: hyper::Uri = url
                        .parse()
                        .map_err(|e| invalid(&format!("{key}.url"), format!("{url:?}: {e}")))?;
                    if !matches!(uri.scheme_str(), Some("http") | Some("https"))
                        || uri.host().is_none()
                    {
                        return Err(invalid(
                            &format!("{key}.url"),
                            format!("{url:?} is not an http(s) URL"),
                        ));
                    }
                }
                (None, Some(cmd)) if cmd.is_empty() => {
                    return Err(invalid(
                        &format!("{key}.command"),
                        "the command is empty".into(),
                    ))
                }
                (None, Some(_)) => {}
            }
            if u.timeout_seconds == 0 {
                return Err(invalid(
                    &format!("{key}.timeout_seconds"),
                    "must be at least 1".into(),
                ));
            }
            if !u.workdir.starts_with('/') {
                return Err(invalid(
                    &format!("{key}.workdir"),
                    format!("{:?} is not absolute", u.workdir),
                ));
            }
        }
        Ok(())
    }

    /// What `serve` needs beyond parsing: a way to authenticate agents and at least one upstream.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError::Invalid {
                key: "upstream".into(),
                message: "no [[upstream]] is configured: toolgate has nothing to proxy".into(),
            });
        }
        self.auth.validate().map_err(|e| ConfigError::Invalid {
            key: "auth".into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.policy.dir, PathBuf::from("./policies"));
        assert_eq!(c.audit.database_url, "sqlite://toolgate-audit.db");
        assert_eq!(c.telemetry.otlp_protocol, "grpc");
        assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(c.tools.pinning, crate::tools::Pinning::Tofu);
        assert_eq!(c.server.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout(), Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 4096);
        assert_eq!(c.server.max_connections_per_ip, 256);
        assert!(c.tls.files().unwrap().is_none(), "plain HTTP by default");
        assert_eq!(c.session.max_sessions_per_agent, 64);
        assert_eq!(c.escalation.max_pending_per_agent, 16);
        assert_eq!(c.escalation.timeout_seconds, 1800);
    }

    #[test]
    fn tls_files_are_read_together() {
        let f = write("[tls]\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nclient_ca_file = \"/ca.pem\"\nclient_auth = \"optional\"\n");
        let c = Config::load(f.path(), &HashMap::new()).unwrap();
        let files = c.tls.files().unwrap().expect("TLS on");
        assert_eq!(files.cert_file, PathBuf::from("/c.pem"));
        assert_eq!(files.key_file, PathBuf::from("/k.pem"));
        assert_eq!(
            files.client_auth,
            Some((ClientAuth::Optional, PathBuf::from("/ca.pem")))
        );
    }

    #[test]
    fn tool_pinning_is_read() {
        let f = write("[tools]\npinning = \"approve\"\n");
        let c = Config::load(f.path(), &HashMap::new()).unwrap();
        assert_eq!(c.tools.pinning, crate::tools::Pinning::Approve);
    }

    #[test]
    fn env_overrides_the_file() {
        let f = write("listen = \"127.0.0.1:9000\"\n[policy]\ndir = \"/p\"\n[[upstream]]\nname = \"fs\"\nurl = \"http://127.0.0.1:7000/mcp\"\n");
        let c = Config::load(
            f.path(),
            &env(&[
                ("TOOLGATE_LISTEN", "127.0.0.1:9100"),
                ("TOOLGATE_DATABASE_URL", "postgres://x/y"),
                ("TOOLGATE_DEBUG", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.policy.dir, PathBuf::from("/p"));
        assert_eq!(c.audit.database_url, "postgres://x/y");
        assert!(c.telemetry.debug);
        assert_eq!(c.upstreams[0].name, "fs");
    }

    #[test]
    fn bad_configs_are_named() {
        let cases = [
            ("listen = 5", "invalid config file"),
            ("bogus = 1", "unknown field"),
            ("[[upstream]]\nname = \"a\"\n", "set url (streamable HTTP) or command (stdio)"),
            ("[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\n", "is not an http(s) URL"),
            ("[[upstream]]\nname = \"a\"\ncommand = []\n", "the command is empty"),
            ("[[upstream]]\nname = \"a b\"\ncommand = [\"x\"]\n", "must be non-empty"),
            ("[[upstream]]\nname = \"a\"\ncommand = [\"x\"]\n[[upstream]]\nname = \"a\"\ncommand = [\"y\"]\n", "used twice"),
            ("[telemetry]\notlp_protocol = \"udp\"\n", "otlp_protocol"),
            ("[tools]\npinning = \"never\"\n", "unknown variant"),
            ("public_url = \"evil\"\n", "public_url"),
            ("[server]\nheader_read_timeout_seconds = 0\n", "server.header_read_timeout_seconds"),
            ("[server]\nmax_connections_per_ip = 0\n", "server.max_connections_per_ip"),
            ("[tls]\ncert_file = \"c.pem\"\n", "tls.key_file"),
            ("[tls]\nkey_file = \"k.pem\"\n", "tls.cert_file"),
            ("[tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_auth = \"required\"\n", "client_ca_file"),
            ("[tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_ca_file = \"ca\"\n", "tls.client_ca_file"),
            ("[tls]\nclient_auth = \"sometimes\"\n", "unknown variant"),
            ("[session]\nmax_sessions_per_agent = 0\n", "session.max_sessions_per_agent"),
            ("[escalation]\nmax_pending_per_agent = 0\n", "escalation.max_pending_per_agent"),
            ("[escalation]\ntimeout_seconds = 0\n", "escalation.timeout_seconds"),
            ("[audit]\nretention_days_by_tenant = { \"\" = 3 }\n", "audit.retention_days_by_tenant"),
            ("[audit]\nretention_days_by_tenant = { t1 = -3 }\n", "invalid config file"),
            ("[escalation]\ntimeout_seconds = 999999999999\n", "escalation.timeout_seconds"),
        ];
        for (text, want) in cases {
            let f = write(text);
            let err = Config::load(f.path(), &HashMap::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
        let err =
            Config::load(Path::new("/nonexistent/toolgate.toml"), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("cannot read config file"), "{err}");
        let err =
            Config::load(Path::new("/dev/null"), &env(&[("TOOLGATE_LISTEN", "nope")])).unwrap_err();
        assert!(err.to_string().contains("TOOLGATE_LISTEN"), "{err}");
    }

    #[test]
    fn serve_needs_an_upstream() {
        let err = Config::default().validate_for_serve().unwrap_err();
        assert!(err.to_string().contains("no [[upstream]]"), "{err}");
    }
}
