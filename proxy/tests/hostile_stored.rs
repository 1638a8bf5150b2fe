//! The hostile suite's `stored` module (nothing DLP flags is stored, logged or labelled) in a test process of its
//! own: it captures toolgate's log lines with a scoped subscriber, and tracing caches each log call site's
//! interest process-wide, so a call site first reached by another test of the same process (with no subscriber
//! installed) can stay disabled for this one under `cargo test`, which runs a binary's tests as threads of one
//! process. Alone here, every line the requests write is captured.

#[path = "common/mod.rs"]
mod common;
#[path = "hostile/stored.rs"]
mod stored;
