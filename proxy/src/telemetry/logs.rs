//! JSON lines on stdout: `{"time","level","name","message",…fields}`, one object per event.
//!
//! Fields recorded on enclosing spans (e.g. `trace_id` on the request span) are added to every line logged
//! inside them, so one grep for a trace id finds every line of a request.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where log lines go and at what level; decided once at start.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `TOOLGATE_DEBUG=true`: debug level for toolgate's own modules.
    pub debug: bool,
    /// `TOOLGATE_LOG`: an `EnvFilter` directive list for per-module levels, e.g. `info,toolgate::mcp=debug`.
    pub filter: Option<String>,
}

/// Installs the JSON-lines logger as the global subscriber. Safe to call once; later calls are ignored.
/// (`serve` installs it together with traces: [`super::traces::install`].)
pub fn init(settings: &LogSettings) {
    let _ = tracing_subscriber::registry()
        .with(filter(settings))
        .with(JsonLines::stdout())
        .try_init();
}

/// The level filter of the log lines: `TOOLGATE_LOG` if valid, else info (debug for toolgate with
/// `TOOLGATE_DEBUG`).
pub fn filter(settings: &LogSettings) -> EnvFilter {
    let default = if settings.debug {
        "info,toolgate=debug,toolgate_engine=debug"
    } else {
        "info"
    };
    settings
        .filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// The layer that writes one JSON object per event, to stdout unless told otherwise.
pub struct JsonLines {
    out: Output,
}

enum Output {
    Stdout,
    /// Shared so that a line is one `write_all` under the lock, as on stdout.
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl JsonLines {
    /// Lines on stdout (what `serve` writes).
    pub fn stdout() -> JsonLines {
        JsonLines {
            out: Output::Stdout,
        }
    }

    /// Lines written to `out` instead: a file, or a buffer someone reads back (the hostile suite reads the
    /// lines a request left, to prove no secret reached them).
    pub fn to(out: Arc<Mutex<dyn Write + Send>>) -> JsonLines {
        JsonLines {
            out: Output::Writer(out),
        }
    }

    fn write(&self, line: &[u8]) {
        // One write per line so concurrent lines never interleave; a closed output is not worth a panic.
        match &self.out {
            Output::Stdout => {
                let _ = std::io::stdout().lock().write_all(line);
            }
            Output::Writer(w) => {
                let _ = w.lock().unwrap_or_else(|p| p.into_inner()).write_all(line);
            }
        }
    }
}

/// A span's fields as JSON, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        // `otel.kind` and the like steer the OpenTelemetry layer; they are not log fields.
        fields.retain(|k, _| !k.starts_with("otel."));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("time".into(), Value::String(super::now_rfc3339()));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().as_str().to_ascii_lowercase()),
        );
        line.insert(
            "name".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        line.insert("message".into(), Value::String(String::new()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        self.write(&out);
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}
