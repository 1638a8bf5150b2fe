//! The hostile-input suite: toolgate attacked the way an agent holding a valid token would attack it, through the
//! real server on a loopback port with the shipped policies. One module per class of attack, covering both the
//! bypasses that were found and fixed (each a regression test) and the attacks that already held, so that none
//! of them can come back unnoticed. The `stored` module runs in a process of its own (`tests/hostile_stored.rs`):
//! it captures log lines.

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod dlp_evasion;
mod headers;
mod held;
mod identity;
mod parsing;
mod sse_framing;
mod targets;
mod tls;
