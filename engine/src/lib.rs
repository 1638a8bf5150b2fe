//! toolgate-engine: the decision core of toolgate.
//!
//! Pure and synchronous: no tokio, no sockets, no SQL. Everything here is a function of its inputs, so the
//! proxy, the CLI, the tests and the benchmarks all judge a tool call the same way.
//!
//! # Layout
//! - [`dlp`]: detectors over any message or result -> findings (type, severity, JSON pointer, count); never raw
//!   values; and redaction of what they found.
//! - [`injection`]: prompt-injection and tool-poisoning markers in results, prompts and tool definitions.
//! - [`input`]: the Rego input document; tool action/target classification and normalisation.
//! - [`policy`]: load a folder of `.rego` and data files, compile, smoke-evaluate, evaluate (regorus).
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON and `input_hash`.
//! - [`chain`]: the audit event, its hash, and verification over any iterator of events.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod chain;
pub mod dlp;
pub mod injection;
pub mod input;
pub mod policy;
