//! The two kinds of upstream MCP server, behind one type.

use std::sync::Arc;

use super::http::HttpUpstream;
use super::stdio::StdioUpstream;

// Built once per upstream at start and never moved afterwards: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    /// Streamable HTTP: toolgate forwards the agent's HTTP request and streams the answer back.
    Http(HttpUpstream),
    /// A stdio child shared by every agent: toolgate owns the MCP session with it and maps request ids.
    Stdio(Arc<StdioUpstream>),
}

impl Upstream {
    pub fn kind(&self) -> &'static str {
        match self {
            Upstream::Http(_) => "http",
            Upstream::Stdio(_) => "stdio",
        }
    }
}
