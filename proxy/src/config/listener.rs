//! `[server]` and `[tls]`: how the listener guards itself before any request is authenticated (timeouts,
//! connection caps) and whether it speaks TLS.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[server]`: limits that hold before authentication, so one client cannot exhaust the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// A connection must deliver a complete request head (and, with TLS, finish its handshake) this long after
    /// it opens or after its first byte of a new request; otherwise it is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// A connection with no request in flight (no response still streaming) for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// A request's whole body must arrive this long after its head; otherwise it is answered 408 and nothing
    /// of it is judged or forwarded (a body sent a byte at a time would hold the request open forever).
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_seconds: u64,
    /// Open connections at most; more are refused (plain HTTP: a 503 with `Retry-After`, then close).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections at most from one client IP (IPv6: one /64), so one client cannot starve others.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Failed authentications (401, agents' and the admin API's) one client IP may have per minute; past it,
    /// its MCP and admin requests are answered 429 without a token being looked at, until the bucket refills.
    #[serde(default = "default_auth_failures_per_minute")]
    pub auth_failures_per_minute: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout_seconds: default_header_read_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            body_read_timeout_seconds: default_body_read_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            auth_failures_per_minute: default_auth_failures_per_minute(),
        }
    }
}

impl ServerSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_seconds)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key: format!("server.{key}"),
                    message: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        at_least_one(
            "header_read_timeout_seconds",
            self.header_read_timeout_seconds,
        )?;
        at_least_one("idle_timeout_seconds", self.idle_timeout_seconds)?;
        at_least_one("body_read_timeout_seconds", self.body_read_timeout_seconds)?;
        at_least_one("max_connections", self.max_connections as u64)?;
        at_least_one("max_connections_per_ip", self.max_connections_per_ip as u64)?;
        at_least_one(
            "auth_failures_per_minute",
            u64::from(self.auth_failures_per_minute),
        )?;
        Ok(())
    }
}

fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_body_read_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_ip() -> usize {
    256
}
fn default_auth_failures_per_minute() -> u32 {
    300
}

/// `[tls]`: HTTPS on the listener. Both files or neither (neither = plain HTTP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first; re-read when it changes on disk.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf; re-read when it changes on disk.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that sign agents' client certificates; needed by `client_auth`.
    pub client_ca_file: Option<PathBuf>,
    /// Whether agents present a client certificate: `none` (default), `optional`, `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is asked for; one that is presented must chain to `client_ca_file`.
    Optional,
    /// A handshake without a client certificate that chains to `client_ca_file` fails.
    Required,
}

/// The validated TLS files: only a [`TlsSettings`] that passed [`TlsSettings::files`] serves TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// With the client CA when client certificates are asked for.
    pub client_auth: Option<(ClientAuth, PathBuf)>,
}

impl TlsSettings {
    /// The files to serve TLS with, `None` for plain HTTP, or why the combination is invalid.
    pub fn files(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: format!("tls.{key}"),
            message: message.into(),
        };
        let client_auth = match (self.client_auth, &self.client_ca_file) {
            (ClientAuth::None, None) => None,
            (ClientAuth::None, Some(_)) => {
                return Err(invalid(
                    "client_ca_file",
                    "set client_auth = \"optional\" or \"required\" to use it",
                ))
            }
            (_, None) => {
                return Err(invalid(
                    "client_auth",
                    "client certificates need tls.client_ca_file",
                ))
            }
            (mode, Some(ca)) => Some((mode, ca.clone())),
        };
        match (&self.cert_file, &self.key_file) {
            (None, None) if client_auth.is_some() => Err(invalid(
                "client_auth",
                "client certificates need tls.cert_file and tls.key_file",
            )),
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_auth,
            })),
            (Some(_), None) => Err(invalid("key_file", "tls.cert_file needs tls.key_file")),
            (None, Some(_)) => Err(invalid("cert_file", "tls.key_file needs tls.cert_file")),
        }
    }
}
