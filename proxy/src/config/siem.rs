//! `[[siem]]`: the SIEM sinks the audit log is fanned out to, validated at start, their credentials read once
//! from `token_env` / `token_file` and never shown again (not by `Debug`, not by any API).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use super::secret::Secret;

use super::ConfigError;

/// The wire format of a sink, spelled exactly as the contract does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Webhook,
    SplunkHec,
    Datadog,
    Elasticsearch,
    Syslog,
    Cef,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::SplunkHec => "splunk_hec",
            SinkKind::Datadog => "datadog",
            SinkKind::Elasticsearch => "elasticsearch",
            SinkKind::Syslog => "syslog",
            SinkKind::Cef => "cef",
        }
    }

    /// Whether the sink speaks HTTP(S) (else the syslog transport: `tcp://` or `udp://`).
    pub fn is_http(self) -> bool {
        !matches!(self, SinkKind::Syslog | SinkKind::Cef)
    }

    /// Whether the sink cannot work without a credential (the webhook's HMAC key, the HEC token, the API key).
    fn needs_token(self) -> bool {
        matches!(
            self,
            SinkKind::Webhook | SinkKind::SplunkHec | SinkKind::Datadog
        )
    }
}

/// One `[[siem]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemSinkSettings {
    /// Unique among the sinks; names the sink in the API, metrics (`sink` label) and its cursor rows.
    pub name: String,
    pub kind: SinkKind,
    /// `http(s)://…` for the HTTP kinds (the base URL: the kind's path is appended unless already there),
    /// `tcp://host:port` or `udp://host:port` for `syslog` and `cef`.
    pub url: String,
    /// The environment variable holding the credential (read once at start).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the credential (read once at start; surrounding whitespace trimmed).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Most events per delivery (per request; `datadog`: at most 1000, its intake's limit).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Only these event types are sent; absent = every type. Skipped events still advance the cursor.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// How long one delivery attempt may take (connect, send, answer).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// The first retry's wait; each failed attempt doubles it, up to `backoff_max_seconds`.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_seconds")]
    pub backoff_max_seconds: u64,
    /// Consecutive failed attempts after which the sink is reported failing (`siem_delivery` event `failed`).
    #[serde(default = "default_failing_after")]
    pub failing_after: u32,
    /// How often the sink looks for events of other instances' chains when nothing woke it (ms).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// After this instance's commits wake the sink, how long it waits for more before reading (ms), so that a
    /// busy log is read in batches of a few dozen events rather than once per commit. 0 reads at once.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How long the delivering instance's lease on the sink lasts without renewal; another instance takes
    /// the sink over once it expired.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// HTTPS sinks: a PEM file of extra CA certificates to trust (a private CA), besides the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `elasticsearch`: the index (or data stream) events are created in.
    #[serde(default = "default_index")]
    pub index: String,
    /// `syslog` / `cef`: the facility of every message (default 13, "log audit").
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// `datadog`: the `service` of each log; `syslog`/`cef`: the APP-NAME.
    #[serde(default = "default_service")]
    pub service: String,
    /// The credential, read from `token_env` or `token_file` by [`resolve_tokens`].
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl SiemSinkSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_seconds)
    }
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }
}

/// Datadog's logs intake takes at most this many entries per request.
pub const DATADOG_MAX_ENTRIES: usize = 1000;
/// The largest `batch_max` of any sink.
const MAX_BATCH: usize = 10_000;

fn default_batch_max() -> usize {
    100
}
fn default_timeout_seconds() -> u64 {
    10
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_seconds() -> u64 {
    60
}
fn default_failing_after() -> u32 {
    3
}
fn default_linger_ms() -> u64 {
    // Measured at 1 000 calls/s with six sinks (BENCHMARKS.md): 200 ms made ~500-event bursts that added
    // 1.5–2.3 ms to the tool calls' p99; 50 ms, ~1 ms; 20 ms, 0.2–1 ms (+13.5 %), for a little more CPU per event.
    20
}
fn default_poll_ms() -> u64 {
    500
}
fn default_lease_seconds() -> u64 {
    15
}
fn default_index() -> String {
    "toolgate-audit".into()
}
fn default_facility() -> u8 {
    13
}
fn default_service() -> String {
    "toolgate".into()
}

/// Reads each sink's credential from the environment map or its file, once, at load.
pub(super) fn resolve_tokens(
    sinks: &mut [SiemSinkSettings],
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    for sink in sinks {
        let key = format!("siem.{}", sink.name);
        let invalid = |message: String| ConfigError::Invalid {
            key: key.clone(),
            message,
        };
        sink.token = super::secret::read(sink.token_env.as_ref(), sink.token_file.as_ref(), env)
            .map_err(invalid)?;
    }
    Ok(())
}

/// Checks every sink: names, kinds, URLs, credentials and limits, with the key of the culprit in the error.
pub(super) fn validate(sinks: &[SiemSinkSettings]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for sink in sinks {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: if field.is_empty() {
                format!("siem.{}", sink.name)
            } else {
                format!("siem.{}.{field}", sink.name)
            },
            message,
        };
        if sink.name.is_empty()
            || sink.name.len() > 64
            || !sink
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid {
                key: "siem.name".into(),
                message: format!("{:?} must be 1 to 64 of [A-Za-z0-9._-]", sink.name),
            });
        }
        if !seen.insert(sink.name.as_str()) {
            return Err(invalid("", "the name is used twice".into()));
        }
        check_url(sink).map_err(|m| invalid("url", m))?;
        if sink.kind.needs_token() && sink.token_env.is_none() && sink.token_file.is_none() {
            return Err(invalid(
                "",
                format!(
                    "kind {} needs a credential: set token_env or token_file",
                    sink.kind.as_str()
                ),
            ));
        }
        if !sink.kind.is_http() && (sink.token_env.is_some() || sink.token_file.is_some()) {
            return Err(invalid(
                "",
                format!("kind {} takes no credential", sink.kind.as_str()),
            ));
        }
        let most = if sink.kind == SinkKind::Datadog {
            DATADOG_MAX_ENTRIES
        } else {
            MAX_BATCH
        };
        if !(1..=most).contains(&sink.batch_max) {
            return Err(invalid(
                "batch_max",
                format!("{} is not between 1 and {most}", sink.batch_max),
            ));
        }
        if sink.event_types.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(invalid(
                "event_types",
                "an empty list would send nothing: leave it out to send every type".into(),
            ));
        }
        for (field, value) in [
            ("timeout_seconds", sink.timeout_seconds),
            ("backoff_initial_ms", sink.backoff_initial_ms),
            ("backoff_max_seconds", sink.backoff_max_seconds),
            ("poll_ms", sink.poll_ms),
            ("lease_seconds", sink.lease_seconds),
            ("failing_after", u64::from(sink.failing_after)),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        if sink.backoff_initial() > sink.backoff_max() {
            return Err(invalid(
                "backoff_initial_ms",
                "is above backoff_max_seconds".into(),
            ));
        }
        if sink.facility > 23 {
            return Err(invalid(
                "facility",
                format!("{} is not a syslog facility (0 to 23)", sink.facility),
            ));
        }
        if sink.index.is_empty()
            || sink
                .index
                .chars()
                .any(|c| matches!(c, '/' | '\\' | '?' | '#' | '*' | '"' | ' ' | ',' | '|'))
        {
            return Err(invalid(
                "index",
                format!("{:?} is not an index name", sink.index),
            ));
        }
    }
    Ok(())
}

/// The URL's scheme fits the kind and it names a host (and, for the syslog transport, a port).
fn check_url(sink: &SiemSinkSettings) -> Result<(), String> {
    let url = url::Url::parse(&sink.url).map_err(|e| format!("not a URL: {e}"))?;
    let scheme = url.scheme();
    if sink.kind.is_http() {
        if !matches!(scheme, "http" | "https") {
            return Err(format!(
                "scheme {scheme:?}: kind {} needs http:// or https://",
                sink.kind.as_str()
            ));
        }
    } else {
        if !matches!(scheme, "tcp" | "udp") {
            return Err(format!(
                "scheme {scheme:?}: kind {} needs tcp://host:port or udp://host:port",
                sink.kind.as_str()
            ));
        }
        if url.port().is_none() {
            return Err("the syslog transport needs a port (e.g. tcp://host:514)".into());
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<super::super::Config, ConfigError> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        super::super::Config::load(f.path(), &env)
    }

    #[test]
    fn a_sink_is_read_with_its_token_and_defaults() {
        let c = load(
            "[[siem]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"\ntoken_env = \"HOOK_KEY\"\nevent_types = [\"policy_deny\"]\n",
            &[("HOOK_KEY", " s3cret ")],
        )
        .unwrap();
        let sink = &c.siem[0];
        assert_eq!(sink.kind, SinkKind::Webhook);
        assert_eq!(sink.token.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(sink.batch_max, 100);
        assert_eq!(
            sink.event_types.as_deref(),
            Some(&["policy_deny".to_owned()][..])
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "Debug shows the credential");
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "hec-token\n").unwrap();
        let c = load(
            &format!(
                "[[siem]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = \"https://splunk:8088\"\ntoken_file = \"{}\"\n",
                token.path().display()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.siem[0].token.as_ref().unwrap().expose(), "hec-token");
    }

    #[test]
    fn bad_sinks_are_named() {
        let hook =
            "[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x/\"\ntoken_env = \"K\"\n";
        let cases = [
            ("[[siem]]\nname = \"a\"\nkind = \"kafka\"\nurl = \"https://x\"\n", "unknown variant"),
            (&format!("{hook}{hook}") as &str, "used twice"),
            ("[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x/\"\n", "needs a credential"),
            ("[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"ftp://x/\"\ntoken_env = \"K\"\n", "needs http"),
            ("[[siem]]\nname = \"a\"\nkind = \"syslog\"\nurl = \"https://x/\"\n", "needs tcp://"),
            ("[[siem]]\nname = \"a\"\nkind = \"syslog\"\nurl = \"tcp://x\"\n", "needs a port"),
            ("[[siem]]\nname = \"a\"\nkind = \"cef\"\nurl = \"udp://x:514\"\ntoken_env = \"K\"\n", "takes no credential"),
            ("[[siem]]\nname = \"a b\"\nkind = \"cef\"\nurl = \"udp://x:514\"\n", "siem.name"),
            ("[[siem]]\nname = \"a\"\nkind = \"datadog\"\nurl = \"https://x\"\ntoken_env = \"K\"\nbatch_max = 1001\n", "siem.a.batch_max"),
            ("[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x\"\ntoken_env = \"MISSING\"\n", "not set or empty"),
            ("[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x\"\ntoken_env = \"K\"\ntoken_file = \"/k\"\n", "not both"),
            ("[[siem]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x\"\ntoken_file = \"/nonexistent/k\"\n", "cannot read token_file"),
            ("[[siem]]\nname = \"a\"\nkind = \"syslog\"\nurl = \"tcp://x:1\"\nevent_types = []\n", "siem.a.event_types"),
            ("[[siem]]\nname = \"a\"\nkind = \"syslog\"\nurl = \"tcp://x:1\"\nfacility = 24\n", "siem.a.facility"),
            ("[[siem]]\nname = \"a\"\nkind = \"syslog\"\nurl = \"tcp://x:1\"\nlease_seconds = 0\n", "siem.a.lease_seconds"),
            ("[[siem]]\nname = \"a\"\nkind = \"elasticsearch\"\nurl = \"http://x:9200\"\nindex = \"a/b\"\n", "siem.a.index"),
        ];
        for (text, want) in cases {
            let err = load(text, &[("K", "key")]).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
            assert!(!err.contains("key\""), "the credential leaks into {err:?}");
        }
    }
}
