//! Traces end to end: toolgate exports its spans over OTLP gRPC to a real receiver (a tonic `TraceService`) in this
//! test, continues the agent's `traceparent`, passes its own on to the upstream, and writes the same trace id
//! into the audit log.
//!
//! The tracing subscriber is process-global: every test in this binary that starts a proxy with an endpoint
//! uses the one receiver below, and tells its spans apart by trace id.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{eventually, send, start, token, upstream, Agent, Options};
use hyper::{Method, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use toolgate::config::{Config, TelemetrySettings};

/// The agent's trace and span: toolgate must continue the first and hang its server span under the second.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const AGENT_SPAN_ID: &str = "b7ad6b7169203331";

/// What the receiver got: every span, with the `service.name` of its resource.
type Received = Arc<Mutex<Vec<(Option<String>, Span)>>>;

struct Receiver(Received);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| string_value(kv.value.as_ref()?.value.as_ref()?))
            });
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The one OTLP receiver of this binary, on 127.0.0.1:0. It runs on a thread and runtime of its own because it
/// must outlive each test's runtime.
fn receiver() -> &'static (SocketAddr, Received) {
    static RECEIVER: OnceLock<(SocketAddr, Received)> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Received::default();
        let service = TraceServiceServer::new(Receiver(received.clone()));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            });
        });
        (addr, received)
    })
}

fn string_value(v: &AnyValue) -> Option<String> {
    match v {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        AnyValue::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = string_value(kv.value.as_ref()?.value.as_ref()?)?;
            Some((kv.key.clone(), value))
        })
        .collect()
}

const STAGES: [&str; 6] = ["jwt", "session", "dlp", "policy", "forward", "audit"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_is_one_trace_continued_from_the_agent_with_a_span_per_stage() {
    let (receiver_addr, received) = receiver();
    let mock = upstream::start(upstream::State::default()).await;
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 2\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        otlp_endpoint: Some(format!("http://{receiver_addr}")),
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "web", token("agent-traced", &[]));
    agent.initialize().await;

    // tools/call with the agent's own traceparent.
    let traceparent = format!("00-{TRACE_ID}-{AGENT_SPAN_ID}-01");
    let auth = format!("Bearer {}", agent.token);
    let session = agent.session.clone().unwrap();
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "argument-value-never-in-spans" } } });
    let answer = send(
        Method::POST,
        &agent.url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", &session),
            ("traceparent", &traceparent),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.message()["result"]["content"][0]["text"],
        "called echo",
        "{:?}",
        answer.message()
    );

    // The spans arrive in batches: flush now rather than wait for the schedule, then poll with a deadline.
    let settings = TelemetrySettings::default();
    let logs = toolgate::telemetry::logs::LogSettings {
        debug: false,
        filter: None,
    };
    let tracing =
        toolgate::telemetry::traces::install(&logs, &settings, &toolgate::outbound::client())
            .unwrap();
    assert_eq!(
        tracing.exporter(),
        Some("grpc"),
        "the harness installed the exporter first"
    );
    tokio::task::spawn_blocking(|| tracing.flush())
        .await
        .unwrap();
    let trace_id = hex::decode(TRACE_ID).unwrap();
    let spans = eventually(Duration::from_secs(20), || {
        let received = received.clone();
        let trace_id = trace_id.clone();
        async move {
            let spans: Vec<(Option<String>, Span)> = received
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s.trace_id == trace_id)
                .cloned()
                .collect();
            let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
            (names.contains(&"tools/call") && STAGES.iter().all(|stage| names.contains(stage)))
                .then_some(spans)
        }
    })
    .await;

    // The server span: named after the method, a child of the agent's span, in the agent's trace.
    let servers: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "tools/call")
        .collect();
    assert_eq!(servers.len(), 1, "one server span per request");
    let server = servers[0];
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex::encode(&server.parent_span_id), AGENT_SPAN_ID);
    assert!(spans
        .iter()
        .all(|(service, _)| service.as_deref() == Some("toolgate")));
    let attrs = attributes(server);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("mcp.session.id", "upstream-session-1"),
        ("gen_ai.tool.name", "echo"),
        ("toolgate.agent_id", "agent-traced"),
        ("toolgate.policy_result", "allow"),
        ("toolgate.policy_id", "toolgate.default"),
        ("rpc.jsonrpc.request_id", "7"),
        ("http.response.status_code", "200"),
        ("trace_id", TRACE_ID),
    ] {
        assert_eq!(
            attrs.get(key).map(String::as_str),
            Some(value),
            "{key} in {attrs:?}"
        );
    }

    // One child per stage, each a direct child of the server span.
    for stage in STAGES {
        let children: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == stage)
            .collect();
        assert_eq!(children.len(), 1, "one {stage} span");
        assert_eq!(
            children[0].parent_span_id, server.span_id,
            "{stage} is a child of the server span"
        );
        assert!(children[0].end_time_unix_nano >= children[0].start_time_unix_nano);
    }

    // No span of the trace carries an argument value.
    for (_, span) in &spans {
        for (key, value) in attributes(span) {
            assert!(
                !value.contains("argument-value-never-in-spans"),
                "{}: {key}={value}",
                span.name
            );
        }
    }

    // The upstream got toolgate's forward span as its parent, in the same trace.
    let forward = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "forward")
        .unwrap();
    let sent = {
        let received = mock.state.received.lock().unwrap();
        let traceparents = mock.state.traceparents.lock().unwrap();
        let i = received
            .iter()
            .position(|(m, _, _)| m["method"] == "tools/call")
            .expect("the call reached the upstream");
        traceparents[i].clone().expect("a traceparent was sent")
    };
    assert_eq!(
        sent,
        format!("00-{TRACE_ID}-{}-01", hex::encode(&forward.span_id)),
        "the agent's traceparent is replaced by the forward span's"
    );

    // The audit events of the call carry the same trace id.
    let app = proxy.app.clone();
    let events = eventually(Duration::from_secs(5), || {
        let app = app.clone();
        async move {
            let events = app
                .audit
                .store()
                .query(&toolgate::audit::EventFilter {
                    tool_name: Some("echo".into()),
                    limit: Some(100),
                    ..Default::default()
                })
                .await
                .ok()?;
            let events: Vec<Value> = serde_json::to_value(events).ok()?.as_array()?.clone();
            events
                .iter()
                .any(|e| e["event_type"] == "tool_result")
                .then_some(events)
        }
    })
    .await;
    for event in &events {
        assert_eq!(event["trace_id"], TRACE_ID, "{event}");
    }
    proxy.stop().await;
}

#[test]
fn without_an_endpoint_no_exporter_is_built() {
    let tracing = toolgate::telemetry::traces::build(
        &TelemetrySettings::default(),
        &toolgate::outbound::client(),
    )
    .unwrap();
    assert_eq!(tracing.exporter(), None);

    // The standard variables are read once, with the rest of the configuration; TOOLGATE_* ones win.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toolgate.toml");
    std::fs::write(&path, "").unwrap();
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let config = Config::load(
        &path,
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "gate-7"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test, team=sec",
            ),
        ]),
    )
    .unwrap();
    let t = &config.telemetry;
    assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    assert_eq!(t.otlp_protocol, "http/protobuf");
    assert_eq!(t.service_name, "gate-7");
    assert_eq!(t.resource_attributes["team"], "sec");
    assert_eq!(
        toolgate::telemetry::traces::build(t, &toolgate::outbound::client())
            .unwrap()
            .exporter(),
        Some("http/protobuf")
    );
    let config = Config::load(
        &path,
        &env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("TOOLGATE_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4317")
    );
    let config = Config::load(
        &path,
        &env(&[
            ("TOOLGATE_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(config.telemetry.otlp_endpoint, None);
    assert_eq!(
        toolgate::telemetry::traces::build(&config.telemetry, &toolgate::outbound::client())
            .unwrap()
            .exporter(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_posts_the_spans_to_v1_traces() {
    use http_body_util::BodyExt;
    use prost::Message;
    // A bare OTLP/HTTP receiver: records the path, content type and decoded body of each POST.
    type Posts = Arc<Mutex<Vec<(String, String, ExportTraceServiceRequest)>>>;
    let posts = Posts::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let decoded =
                                ExportTraceServiceRequest::decode(body).unwrap_or_default();
                            recorded.lock().unwrap().push((path, content_type, decoded));
                            let answer = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    // A provider of its own (not the process's), driven by a subscriber scoped to this thread.
    let settings = TelemetrySettings {
        otlp_endpoint: Some(format!("http://{addr}")),
        otlp_protocol: "http/protobuf".into(),
        service_name: "toolgate-http-test".into(),
        ..TelemetrySettings::default()
    };
    let tracing = Arc::new(
        toolgate::telemetry::traces::build(&settings, &toolgate::outbound::client()).unwrap(),
    );
    let metrics = toolgate::telemetry::Metrics::new(10);
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{AGENT_SPAN_ID}-01").parse().unwrap(),
    );
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        tracing.layer(),
    );
    tracing::subscriber::with_default(subscriber, || {
        let (span, trace_id) =
            toolgate::telemetry::traces::request_span("web", &headers, String::new);
        assert_eq!(trace_id, TRACE_ID);
        span.in_scope(|| {
            toolgate::telemetry::traces::name_request("tools/list");
            toolgate::telemetry::stage(&metrics, toolgate::telemetry::Stage::Policy)
                .in_scope(|| ());
        });
    });
    let flushing = tracing.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();
    let (path, content_type, request) = eventually(Duration::from_secs(20), || {
        let posts = posts.clone();
        async move { posts.lock().unwrap().first().cloned() }
    })
    .await;
    assert_eq!(path, "/v1/traces");
    assert_eq!(content_type, "application/x-protobuf");
    let spans: Vec<&Span> = request
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| s.spans.iter()))
        .collect();
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["policy", "tools/list"]);
    assert!(spans.iter().all(|s| hex::encode(&s.trace_id) == TRACE_ID));
    // The policy histogram was observed once by the same guard that made the span.
    assert!(metrics
        .render()
        .contains("toolgate_stage_duration_seconds_count{stage=\"policy\"} 1"));
    let shutting = tracing.clone();
    tokio::task::spawn_blocking(move || shutting.shutdown())
        .await
        .unwrap();
}

/// A secret the agent hides in the JSON-RPC id and the tool name: span attributes carry them redacted, like logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_request_id_or_tool_name_never_reaches_a_span() {
    const HIDDEN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const KEY: &str = "AKIAZ7EXAMPLE4DEMO7Q";
    let (receiver_addr, received) = receiver();
    let mock = upstream::start(upstream::State::default()).await;
    let proxy = start(Options {
        extra_toml: format!(
            "[[upstream]]\nname = \"web\"\nurl = \"http://{}/mcp\"\ntimeout_seconds = 2\nworkdir = \"/workspace\"\n",
            mock.addr
        ),
        demo: false,
        otlp_endpoint: Some(format!("http://{receiver_addr}")),
        ..Default::default()
    })
    .await;
    let agent = Agent::new(&proxy, "web", token("agent-hider", &[]));
    let traceparent = format!("00-{HIDDEN_TRACE}-{AGENT_SPAN_ID}-01");
    let auth = format!("Bearer {}", agent.token);
    let body = json!({
        "jsonrpc": "2.0",
        "id": format!("req-{KEY}"),
        "method": "tools/call",
        "params": {
            "name": format!("echo_{KEY}"),
            "arguments": {},
            "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} }
        }
    });
    let answer = send(
        Method::POST,
        &agent.url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("traceparent", &traceparent),
        ],
        body.to_string(),
    )
    .await;
    // Refused (a critical finding), and answered with the agent's own id all the same.
    assert_eq!(
        answer.message()["error"]["code"],
        -31001,
        "{:?}",
        answer.message()
    );
    assert_eq!(answer.message()["id"], format!("req-{KEY}"));

    let settings = TelemetrySettings::default();
    let logs = toolgate::telemetry::logs::LogSettings {
        debug: false,
        filter: None,
    };
    let tracing =
        toolgate::telemetry::traces::install(&logs, &settings, &toolgate::outbound::client())
            .unwrap();
    tokio::task::spawn_blocking(move || tracing.flush())
        .await
        .unwrap();
    let trace_id = hex::decode(HIDDEN_TRACE).unwrap();
    let spans = eventually(Duration::from_secs(20), || {
        let received = received.clone();
        let trace_id = trace_id.clone();
        async move {
            let spans: Vec<Span> = received
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| s.trace_id == trace_id)
                .map(|(_, s)| s.clone())
                .collect();
            spans
                .iter()
                .any(|s| s.name == "tools/call")
                .then_some(spans)
        }
    })
    .await;
    let server = spans.iter().find(|s| s.name == "tools/call").unwrap();
    let attrs = attributes(server);
    let id = attrs
        .get("rpc.jsonrpc.request_id")
        .expect("the request id is an attribute");
    assert!(id.contains("[REDACTED:aws_access_key]"), "{id}");
    for span in &spans {
        assert!(!span.name.contains(KEY), "span name {}", span.name);
        for (key, value) in attributes(span) {
            assert!(!value.contains(KEY), "{}: {key}={value}", span.name);
        }
    }
    proxy.stop().await;
}
