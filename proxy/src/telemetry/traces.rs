//! OpenTelemetry traces: one SERVER span per MCP request, a child span per pipeline stage, W3C trace-context in
//! and out, and the batched OTLP export (gRPC or HTTP/protobuf) of it all.
//!
//! # One tracer per process
//! The `tracing` subscriber is process-global, so the OpenTelemetry layer and its tracer provider are too:
//! [`install`] builds them once (the first call wins, later calls return the same [`Tracing`]) and `serve` calls
//! it before anything else. Tests that start several proxies in one binary share that one provider; each test
//! tells its spans apart by trace id.
//!
//! # Export never touches a request
//! Finished spans go into the SDK's bounded batch queue (a full queue drops spans, it never waits). A dedicated
//! SDK thread hands batches to the exporter, which runs on its own one-thread tokio runtime (`otlp-export`), so an
//! unreachable or slow collector costs a request nothing and does not depend on which runtime started it. With no
//! endpoint configured there is no exporter, no queue and no thread at all, but spans still get ids: trace ids are
//! generated or continued and passed on exactly the same way.
//!
//! Spans carry ids, names, timings and the attributes set here; never argument values or secrets. Log events are
//! not copied into spans (the OpenTelemetry layer sees toolgate's spans only).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use super::logs::{JsonLines, LogSettings};
use super::Metrics;
use super::Stage;
use super::TelemetrySettings;
use crate::outbound::HttpClient;

/// Why tracing could not be set up; each stops start-up with this line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("telemetry.otlp_endpoint {endpoint:?}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("starting the OTLP export runtime: {0}")]
    Runtime(std::io::Error),
}

/// The process's tracer provider, and whether it exports.
pub struct Tracing {
    provider: SdkTracerProvider,
    /// `grpc` or `http/protobuf` when an exporter was built; `None` without an endpoint.
    exporter: Option<&'static str>,
}

impl Tracing {
    /// The OTLP protocol spans are exported with, or `None` when no exporter was built (no endpoint configured).
    pub fn exporter(&self) -> Option<&'static str> {
        self.exporter
    }

    /// The `tracing` layer that turns toolgate's spans into OpenTelemetry spans of this provider.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + Send + Sync + 'static,
        S: for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("toolgate"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                // Spans only: log events may quote targets and errors; spans carry just what is set here.
                meta.is_span() && meta.target().starts_with("toolgate")
            }))
    }

    /// Exports what is still queued and stops the exporter; called once on exit. Blocks up to the export timeout.
    pub fn shutdown(&self) {
        if self.exporter.is_some() {
            if let Err(e) = self.provider.shutdown() {
                tracing::warn!(error = %e, "flushing traces on exit failed");
            }
        }
    }

    /// Exports every finished span now (tests, and callers that must not lose the tail).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

/// Builds a provider from the settings: with `otlp_endpoint`, a batch exporter over `otlp_protocol`; without one,
/// no exporter at all. Installs nothing (see [`install`]).
pub fn build(settings: &TelemetrySettings, client: &HttpClient) -> Result<Tracing, TraceError> {
    let resource = Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(settings.service_name.clone())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = settings.otlp_endpoint.as_deref() else {
        return Ok(Tracing {
            provider: builder.build(),
            exporter: None,
        });
    };
    let failed = |message: String| TraceError::Exporter {
        endpoint: endpoint.to_owned(),
        message,
    };
    let runtime = export_runtime()?;
    let (exporter, protocol) = if settings.otlp_protocol == "http/protobuf" {
        let client = ExportClient {
            client: client.clone(),
            runtime: runtime.handle().clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(http_traces_url(endpoint))
            .with_http_client(client)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        (exporter, "http/protobuf")
    } else {
        // tonic's channel spawns its connection tasks on the runtime current at build time: ours.
        let _entered = runtime.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| failed(e.to_string()))?;
        (exporter, "grpc")
    };
    Ok(Tracing {
        provider: builder.with_batch_exporter(exporter).build(),
        exporter: Some(protocol),
    })
}

/// Builds the provider (see [`build`]) and installs the process's subscriber: JSON log lines filtered by
/// `logs`, plus the OpenTelemetry layer when spans are exported. Only the first call installs; later calls return the first [`Tracing`].
pub fn install(
    logs: &LogSettings,
    settings: &TelemetrySettings,
    client: &HttpClient,
) -> Result<&'static Tracing, TraceError> {
    static INSTALLED: OnceLock<Tracing> = OnceLock::new();
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tracing) = INSTALLED.get() {
        return Ok(tracing);
    }
    let tracing = build(settings, client)?;
    // Without an exporter the OpenTelemetry layer would build spans nobody receives (about 3 % of the CPU of a
    // call): it is left out. Request spans then take the trace id of the agent's `traceparent` or a fresh one
    // (`request_span`'s fallback), still written to the audit and the logs, and the agent's `traceparent`
    // travels to the upstream unchanged.
    let exporting = tracing.exporter.is_some().then(|| tracing.layer());
    // Each layer has its own filter: the log level must not decide which spans are traced.
    let _ = tracing_subscriber::registry()
        .with(exporting)
        .with(JsonLines::stdout().with_filter(super::logs::filter(logs)))
        .try_init();
    Ok(INSTALLED.get_or_init(|| tracing))
}

/// The runtime OTLP exports run on, started on first use and kept for the life of the process.
fn export_runtime() -> Result<&'static tokio::runtime::Runtime, TraceError> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    // Exactly one is ever built: a runtime dropped by a losing racer would panic inside an async caller.
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(TraceError::Runtime)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// OTLP/HTTP posts to `{base}/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` means; a URL that already names the
/// traces path is used as it is.
fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The OTLP/HTTP client: toolgate's own pooled hyper client (rustls for https), each export spawned on the export
/// runtime so that it works from the SDK's plain export thread.
#[derive(Debug)]
struct ExportClient {
    client: HttpClient,
    runtime: tokio::runtime::Handle,
}

impl opentelemetry_http::HttpClient for ExportClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: hyper::Request<Bytes>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<hyper::Response<Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            use http_body_util::BodyExt;
            let (parts, body) = request.into_parts();
            let request = hyper::Request::from_parts(parts, http_body_util::Full::new(body));
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            // The collector's answer is a small protobuf status; cap it anyway.
            let body = http_body_util::Limited::new(body, 1024 * 1024)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(hyper::Response::from_parts(parts, body))
        });
        Box::pin(async move { task.await? })
    }
}

/// The request's SERVER span, continuing the agent's `traceparent` when it sent a valid one, and its trace id.
/// The span is named `mcp` until [`name_request`] renames it after the MCP method. Without an OpenTelemetry
/// layer (a library user with no subscriber) the trace id comes from `fallback`.
pub fn request_span(
    upstream: &str,
    headers: &HeaderMap,
    fallback: impl FnOnce() -> String,
) -> (tracing::Span, String) {
    // The upstream's name comes from the URL path the agent chose: an unknown one is logged redacted and capped.
    let span = tracing::info_span!(
        "mcp",
        otel.kind = "server",
        trace_id = tracing::field::Empty,
        upstream = %crate::redaction::loggable(upstream),
        agent_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    let trace_id = if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        fallback()
    };
    span.record("trace_id", trace_id.as_str());
    (span, trace_id)
}

/// Names the current request span after its MCP method (`tools/call`, `initialize`, …), once it is parsed.
pub fn name_request(method: &str) {
    // An agent names the method: an invented one is exported redacted and capped, like any attribute.
    let method = crate::redaction::loggable(method).into_owned();
    let span = tracing::Span::current();
    span.context().span().update_name(method.clone());
    span.set_attribute("mcp.method.name", method);
}

/// Sets string attributes on the current span (the request span wherever callers use it, outside a stage).
/// The one way string attributes are set: each value is redacted of what DLP flags and capped
/// ([`crate::redaction::loggable`]), since tool names, targets and session ids come from the agent.
pub fn annotate(attributes: &[(&'static str, &str)]) {
    let span = tracing::Span::current();
    for (key, value) in attributes {
        span.set_attribute(*key, crate::redaction::loggable(value).into_owned());
    }
}

/// Sets an integer attribute on `span` (status codes, request ids).
pub fn annotate_int(span: &tracing::Span, key: &'static str, value: i64) {
    span.set_attribute(key, value);
}

/// One pipeline stage: its span (a child of the current span) and its `toolgate_stage_duration_seconds`
/// observation, both ended when the guard is dropped. The one way stages are timed, so each is timed once.
#[must_use = "a stage is timed until the guard is dropped"]
pub struct StageSpan {
    span: tracing::Span,
    _timer: prometheus::HistogramTimer,
}

/// Opens `stage` under the current span and starts its timer.
pub fn stage(metrics: &Metrics, stage: Stage) -> StageSpan {
    // One literal per stage: span names are static metadata in `tracing`.
    let span = match stage {
        Stage::Jwt => tracing::info_span!("jwt"),
        Stage::Session => tracing::info_span!("session"),
        Stage::Dlp => tracing::info_span!("dlp"),
        Stage::Policy => tracing::info_span!("policy"),
        Stage::Forward => tracing::info_span!("forward"),
        Stage::Result => tracing::info_span!("result"),
        Stage::Audit => tracing::info_span!("audit"),
    };
    StageSpan {
        span,
        _timer: metrics.stage(stage).start_timer(),
    }
}

impl StageSpan {
    /// Runs a synchronous stage inside its span; the stage ends when `f` returns.
    pub fn in_scope<T>(self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// Runs an asynchronous stage inside its span; the stage ends when `fut` completes (or is dropped).
    pub async fn run<F: Future>(self, fut: F) -> F::Output {
        fut.instrument(self.span.clone()).await
    }
}

/// The current span's context as a W3C `traceparent` (and `tracestate`), if there is a valid one.
fn current_trace_context() -> Option<HashMap<String, String>> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut fields);
    fields.contains_key("traceparent").then_some(fields)
}

/// Replaces the agent's `traceparent`/`tracestate` in outgoing HTTP headers with the current span's, so the
/// upstream's spans hang under toolgate's. Without a valid current span the agent's headers stay as they are.
pub fn inject_headers(headers: &mut HeaderMap) {
    let Some(fields) = current_trace_context() else {
        return;
    };
    headers.remove("traceparent");
    headers.remove("tracestate");
    for (k, v) in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.insert(name, value);
        }
    }
}

/// Puts the current span's context into `params._meta.traceparent` (and `tracestate`) of a JSON-RPC message for
/// a stdio upstream, which has no headers. Params that are not an object are left alone.
pub fn inject_meta(message: &mut Value) {
    let Some(fields) = current_trace_context() else {
        return;
    };
    let Some(object) = message.as_object_mut() else {
        return;
    };
    let params = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(params) = params.as_object_mut() else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    meta.remove("tracestate");
    for (k, v) in fields {
        meta.insert(k, Value::String(v));
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn settings(endpoint: Option<&str>, protocol: &str) -> TelemetrySettings {
        TelemetrySettings {
            otlp_endpoint: endpoint.map(str::to_owned),
            otlp_protocol: protocol.to_owned(),
            ..TelemetrySettings::default()
        }
    }

    /// Runs `f` under a subscriber with only `tracing`'s OpenTelemetry layer, scoped to this thread.
    fn with_layer<T>(tracing: &Tracing, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn no_endpoint_builds_no_exporter_but_still_continues_trace_ids() {
        let tracing = build(&settings(None, "grpc"), &crate::outbound::client()).unwrap();
        assert_eq!(tracing.exporter(), None);
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        let (trace_id, fresh, forwarded) = with_layer(&tracing, || {
            let (span, trace_id) = request_span("demo", &headers, || "fallback".into());
            let (_, fresh) = request_span("demo", &HeaderMap::new(), || "fallback".into());
            let mut out = HeaderMap::new();
            out.insert("traceparent", HeaderValue::from_static("00-agent-agent-01"));
            span.in_scope(|| inject_headers(&mut out));
            (trace_id, fresh, out)
        });
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, trace_id);
        assert_ne!(fresh, "0".repeat(32), "a fresh trace id is generated");
        assert_ne!(fresh, "fallback", "the layer, not the fallback, made it");
        let tp = forwarded["traceparent"].to_str().unwrap();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "the upstream's parent is toolgate's span: {tp}"
        );
    }

    #[test]
    fn an_endpoint_builds_an_exporter_of_the_configured_protocol() {
        // Building connects lazily: an endpoint nobody listens on is not a start-up error.
        let grpc = build(
            &settings(Some("http://127.0.0.1:9"), "grpc"),
            &crate::outbound::client(),
        )
        .unwrap();
        assert_eq!(grpc.exporter(), Some("grpc"));
        let http = build(
            &settings(Some("http://127.0.0.1:9"), "http/protobuf"),
            &crate::outbound::client(),
        )
        .unwrap();
        assert_eq!(http.exporter(), Some("http/protobuf"));
        assert!(matches!(
            build(
                &settings(Some("not a url"), "grpc"),
                &crate::outbound::client()
            ),
            Err(TraceError::Exporter { .. })
        ));
    }

    #[test]
    fn without_a_layer_the_fallback_trace_id_is_used_and_nothing_is_injected() {
        let (span, trace_id) = request_span("demo", &HeaderMap::new(), || "f".repeat(32));
        assert_eq!(trace_id, "f".repeat(32));
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        let mut message = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
        span.in_scope(|| {
            inject_headers(&mut headers);
            inject_meta(&mut message);
        });
        assert_eq!(headers["traceparent"], PARENT);
        assert!(message.get("params").is_none());
    }

    #[test]
    fn stdio_messages_carry_the_trace_context_in_params_meta() {
        let tracing = build(&settings(None, "grpc"), &crate::outbound::client()).unwrap();
        let mut message = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "read_file", "arguments": {}, "_meta": { "traceparent": "forged", "progressToken": 7 } }
        });
        let trace_id = with_layer(&tracing, || {
            let (span, trace_id) = request_span("demo", &HeaderMap::new(), String::new);
            span.in_scope(|| inject_meta(&mut message));
            trace_id
        });
        let meta = &message["params"]["_meta"];
        let tp = meta["traceparent"].as_str().unwrap();
        assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
        assert_eq!(meta["progressToken"], 7);
        assert!(TraceId::from_hex(&trace_id).is_ok());
    }

    #[test]
    fn http_traces_url_appends_the_signal_path_once() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
