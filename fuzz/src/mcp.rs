//! The proxy's two protocol parsers, compiled here from their own source files.
//!
//! Depending on the `toolgate` crate would build its whole server stack (hyper, rustls, sqlx, OpenTelemetry…)
//! under the sanitizers for two leaf modules; `#[path]` compiles exactly the files the proxy ships instead, so
//! the targets always fuzz the current code. The price: these files may only use `serde`, `serde_json`,
//! `thiserror`, `std` and the one constant below from their parent module. `proxy/tests/fuzz_sources.rs`
//! compiles them the same way in `make test`, so a change that breaks this build fails there first.

/// The same constant as `toolgate::mcp::META_PROTOCOL_VERSION` (`jsonrpc.rs` reads it as `super::…`).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

#[path = "../../proxy/src/mcp/jsonrpc.rs"]
pub mod jsonrpc;

#[path = "../../proxy/src/mcp/sse.rs"]
pub mod sse;
