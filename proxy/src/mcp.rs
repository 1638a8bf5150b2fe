//! MCP: JSON-RPC types, streamable HTTP (both protocol eras), sessions and upstreams.
pub mod stdio;
