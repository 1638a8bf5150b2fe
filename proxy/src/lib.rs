//! toolgate: a security proxy for AI agents' MCP tool calls.
//!
//! Every tool call runs one straight pipeline: JWT -> session -> DLP -> policy -> forward -> audit.
//! The decisions themselves are made by the pure `toolgate-engine` crate; this crate is the I/O around it.
//!
//! # Layout
//! - [`cli`]: clap subcommands: serve, demo-server, token, policy, audit.
//! - [`config`]: TOML + environment overrides, validated once at start into typed structs.
//! - [`server`]: the hyper server, routing, body limits, the one place errors become responses.
//! - [`mcp`]: JSON-RPC types, streamable HTTP (both protocol eras), sessions, upstreams (HTTP, stdio).
//! - [`pipeline`]: one tool call: jwt -> session -> dlp -> policy -> forward -> audit.
//! - [`policy_cli`]: `toolgate policy test` and `toolgate policy eval`.
//! - [`policy_reload`]: policy hot reload (folder watching, SIGHUP, the admin endpoint).
//! - [`app`]: the shared state built at start; [`admin`]: the admin API; [`escalation`]: held calls.
//! - [`auth`]: JWT verification (HS256 dev secret, RS256/ES256 via JWKS) and dev token minting.
//! - [`audit`]: the audit stores (SQLite, PostgreSQL), the single writer task, signed checkpoints, verify, export.
//! - [`telemetry`]: Prometheus metrics, OTLP traces (a span and a metric per stage) and JSON logs.
//! - [`tools`]: tool definitions pinned against rug pulls (cache and state machine; SQL in the audit store).
//! - [`demo_server`]: the bundled stdio MCP server behind the default config.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo_server;
pub mod escalation;
pub mod mcp;
pub mod outbound;
pub mod pipeline;
pub mod policy_cli;
pub mod policy_reload;
pub mod response;
pub mod server;
pub mod telemetry;
pub mod tools;
