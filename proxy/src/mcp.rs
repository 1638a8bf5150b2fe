//! MCP: JSON-RPC types, sessions, upstreams and SSE: the protocol pieces the pipeline and the HTTP surface
//! (`crate::server::endpoint`) are built from. Nothing here imports the modules above it.
//!
//! - [`jsonrpc`]: parsing once, error codes, duplicate-key rejection.
//! - [`session`]: `Mcp-Session-Id` bound to the agent that opened it (in memory, and on PostgreSQL in the
//!   database every instance shares).
//! - [`upstream`]: the two kinds of upstream, [`http`] (streamable HTTP) and [`stdio`] (a shared child process).
//! - [`sse`]: the few Server-Sent Events helpers the proxy needs.
pub mod http;
pub mod jsonrpc;
pub mod session;
pub mod sse;
pub mod stdio;
pub mod upstream;

use hyper::header::HeaderMap;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// Keeps only the headers of an upstream answer that mean something to an MCP client.
pub fn keep_mcp_headers(headers: &mut HeaderMap) {
    let keep = [
        "content-type",
        "content-length",
        "transfer-encoding",
        SESSION_HEADER,
        PROTOCOL_HEADER,
        "cache-control",
        "last-event-id",
    ];
    let drop: Vec<_> = headers
        .keys()
        .filter(|k| !keep.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in drop {
        headers.remove(k);
    }
}

/// Protocol revisions toolgate understands. The newest stateful (2025) one is what it speaks to stdio children.
pub const PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// A protocol revision toolgate knows: the only form a session keeps, stores (`mcp_sessions.protocol_version`)
/// and audits, so an unknown text from an upstream's header or an agent's `initialize` is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion(&'static str);

impl ProtocolVersion {
    /// `text` if it is one of [`PROTOCOL_VERSIONS`], exactly.
    pub fn known(text: &str) -> Option<ProtocolVersion> {
        PROTOCOL_VERSIONS
            .iter()
            .find(|v| **v == text)
            .copied()
            .map(ProtocolVersion)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The newest stateful (2025) revision: what toolgate speaks to stdio children.
pub const NEWEST_STATEFUL: ProtocolVersion = ProtocolVersion("2025-11-25");

/// The stateless revision: no `initialize`, no session; every request carries its version in `_meta`.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The `_meta` key that carries the protocol version in the stateless era.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn only_listed_versions_are_known() {
        assert_eq!(ProtocolVersion::known("2025-11-25"), Some(NEWEST_STATEFUL));
        assert!(PROTOCOL_VERSIONS.contains(&NEWEST_STATEFUL.as_str()));
        assert!(PROTOCOL_VERSIONS.contains(&STATELESS_VERSION));
        for unknown in [
            "",
            "2025-11-25 ",
            "2025-11-25 AKIAZ7QXKD3MPL4HWN2R",
            "2099-01-01",
            "2025-11-2",
        ] {
            assert_eq!(ProtocolVersion::known(unknown), None, "{unknown:?}");
        }
    }
}
