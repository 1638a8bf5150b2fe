//! toolgate: a security proxy for AI agents' MCP traffic.
//!
//! Every message runs one straight pipeline: JWT -> session -> DLP -> policy -> audit -> forward -> result ->
//! audit. The decisions themselves are made by the pure `toolgate-engine` crate; this crate is the I/O around
//! it. Modules only import the ones below them (`tests/module_cycles.rs` keeps it so): `cli` and `server` at
//! the top, then `admin` and `pipeline`, `app`, the state and protocol modules, and `telemetry`, `response` and
//! `outbound` at the bottom.
//!
//! # Layout
//! - [`cli`]: clap subcommands: serve, demo-server, token, policy, audit.
//! - [`config`]: TOML + environment overrides, validated once at start into typed structs.
//! - [`server`]: the hyper server: the listener's connection caps, timeouts and TLS, routing, the MCP HTTP
//!   surface (`server::endpoint`), public verify.
//! - [`mcp`]: JSON-RPC types, sessions, SSE, upstreams (HTTP, stdio).
//! - [`pipeline`]: the one ordered path of every MCP message, and the one place MCP refusals become responses.
//! - [`response`]: response bodies and builders; [`outbound`]: the one outbound HTTP client.
//! - [`policy_cli`]: `toolgate policy test` and `toolgate policy eval`.
//! - [`policy_reload`]: the serving policy set and its hot reload (folder watching, SIGHUP, the admin endpoint).
//! - [`app`]: the shared state built at start; [`admin`]: the admin API; [`escalation`]: held calls.
//! - [`behaviour`]: per-agent baselines, the score of each call, prompt pins, and the rules that open
//!   [`alerts`] (stored alerts, their keeper, ack and resolve).
//! - [`agents`]: agents seen (counted in memory, flushed to the audit database) and the kill switch.
//! - [`runs`]: agent runs from start to finish (requests carrying a run id belong to it), and their timeout.
//! - [`console`]: the web console at `/ui/`, its files embedded in the binary.
//! - [`auth`]: JWT verification (HS256 dev secret, RS256/ES256 via JWKS) and dev token minting.
//! - [`redaction`]: what DLP flags redacted and long values capped, for everything written out (audit, logs,
//!   spans, metric labels).
//! - [`shared_state`]: the state-change bus: PostgreSQL `LISTEN/NOTIFY` keeps each instance's caches (sessions,
//!   disabled agents, escalations, tool and prompt pins) in step with the database the instances share; a SQLite
//!   file's writes are watched instead; the background tasks wait on it rather than poll.
//! - [`audit`]: the audit stores (SQLite, PostgreSQL), the single writer task, signed checkpoints, verify, export.
//! - [`telemetry`]: Prometheus metrics, OTLP traces (a span and a metric per stage) and JSON logs.
//! - [`siem`]: SIEM sinks fed from the audit log, each from its own persisted cursor, off the request path.
//! - [`tools`]: tool definitions pinned against rug pulls (cache and state machine; SQL in the audit store).
//! - [`demo_server`]: the bundled stdio MCP server behind the default config.
// One exception, allowed where it is: `server::release` calls glibc's `malloc_trim`. `tests/unsafe_code.rs`
// keeps it the only one.
#![deny(unsafe_code)]

pub mod admin;
pub mod agents;
pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod behaviour;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo_server;
pub mod escalation;
pub mod mcp;
pub mod outbound;
pub mod pipeline;
pub mod policy_cli;
pub mod policy_reload;
pub mod redaction;
pub mod response;
pub mod runs;
pub mod server;
pub mod shared_state;
pub mod siem;
pub mod telemetry;
pub mod tools;
