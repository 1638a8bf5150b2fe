//! Prometheus metrics and JSON logs.
