//! SIEM fan-out: every `[[siem]]` sink reads the audit log from its own persisted cursor (per chain) in a
//! background task and delivers each event at least once, in chain order, through outages and restarts,
//! without ever touching a request's path.
//!
//! # Layout
//! - this file: [`Siem`], the configured sinks, their status for `GET /api/v1/siem` and the test send.
//! - [`delivery`]: the task per sink: lease, read, send, retry with capped back-off, advance the cursor.
//! - [`failure`]: the `siem_delivery` events (failed, recovered) and where the `siem_delivery_failure` alert
//!   is raised; the hold that keeps retention from pruning undelivered events.
//! - [`attempt`]: the named outcome of one attempt (ok / retry / don't retry / partial, and why).
//! - [`http`]: POSTs through the one outbound client; [`webhook`], [`splunk_hec`], [`datadog`],
//!   [`elasticsearch`]: the HTTP wire formats; [`syslog`] (RFC 5424 over TCP or UDP) and [`cef`]: the others.
//!
//! The event sent is the audit event exactly as the JSON export renders it, `event_hash` included, so
//! receivers can de-duplicate the re-sends that at-least-once delivery allows.

pub mod attempt;
pub mod cef;
mod cursors;
pub mod datadog;
mod delivery;
pub mod elasticsearch;
mod failure;
pub mod http;
mod recent;
mod runtime;
pub mod splunk_hec;
pub mod syslog;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};
use toolgate_engine::chain::{AuditEvent, ChainHead, EventDraft};

use crate::audit::store::FeedFilter;
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::config::{SiemSinkSettings, SinkKind};
use crate::telemetry::SiemMetrics;
use attempt::{Attempt, Why};
use http::{Endpoint, Reply};

/// How a sink's events reach it.
enum Wire {
    Webhook {
        endpoint: Endpoint,
        key: Vec<u8>,
    },
    SplunkHec {
        endpoint: Endpoint,
        auth: HeaderValue,
    },
    Datadog {
        endpoint: Endpoint,
        key: HeaderValue,
        hostname: String,
    },
    Elasticsearch {
        endpoint: Endpoint,
        auth: Option<HeaderValue>,
    },
    Syslog {
        transport: syslog::Transport,
        header: syslog::Header,
    },
    Cef {
        transport: syslog::Transport,
        header: syslog::Header,
    },
}

/// What one send did: the outcome, the sink's answer (HTTP kinds) and a line saying what happened.
#[derive(Debug, Clone)]
pub struct Sent {
    pub attempt: Attempt,
    pub reply: Option<Reply>,
    pub detail: String,
}

impl Sent {
    fn http(answer: Result<Reply, Why>, judge: impl FnOnce(&Reply) -> Attempt) -> Sent {
        match answer {
            Ok(reply) => {
                let mut attempt = judge(&reply);
                // The sink's own words (e.g. Splunk's `Invalid token`) say more than the status alone; the
                // excerpt has the sink's credentials removed already.
                if let (Some(why), false) = (attempt.why_mut(), reply.body.is_empty()) {
                    let said: String = reply.body.chars().take(200).collect();
                    why.detail = format!("{}: {said}", why.detail);
                }
                Sent {
                    attempt,
                    detail: format!("status {}", reply.status),
                    reply: Some(reply),
                }
            }
            Err(why) => Sent {
                detail: why.detail.clone(),
                attempt: Attempt::Retry(why),
                reply: None,
            },
        }
    }
}

/// What the API shows of a sink's delivery as this instance sees it.
#[derive(Debug, Clone, Default)]
struct Health {
    /// `starting`, `delivering`, `idle`, `failing` or `standby` (another instance holds the lease).
    state: &'static str,
    last_error: Option<Value>,
    last_delivery_at: Option<String>,
    consecutive_failures: u32,
}

/// One configured sink.
pub struct Sink {
    pub settings: SiemSinkSettings,
    wire: Wire,
    /// The `event_types` filter as the store reads it.
    filter: FeedFilter,
    health: Mutex<Health>,
}

impl Sink {
    fn new(
        settings: SiemSinkSettings,
        client: &crate::outbound::HttpClient,
    ) -> anyhow::Result<Sink> {
        let client = match &settings.ca_file {
            Some(ca) => crate::outbound::client_trusting(Some(ca))?,
            None => client.clone(),
        };
        let token = settings.token.as_ref();
        let endpoint = |path: &str| {
            Endpoint::new(
                client.clone(),
                &settings.url,
                path,
                settings.timeout(),
                token,
            )
            .map_err(|e| anyhow::anyhow!("siem.{}.url: {e}", settings.name))
        };
        let secret_header = |value: String| -> anyhow::Result<HeaderValue> {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                anyhow::anyhow!(
                    "siem.{}: the token is not a valid header value",
                    settings.name
                )
            })?;
            value.set_sensitive(true);
            Ok(value)
        };
        let token_text = || token.map(|t| t.expose().to_owned()).unwrap_or_default();
        let syslog_transport = || {
            let url = url::Url::parse(&settings.url).expect("validated at load");
            let protocol = if url.scheme() == "udp" {
                syslog::Protocol::Udp
            } else {
                syslog::Protocol::Tcp
            };
            let host = url.host_str().unwrap_or_default();
            let port = url.port().unwrap_or(514);
            syslog::Transport::new(protocol, format!("{host}:{port}"), settings.timeout())
        };
        let header = || syslog::Header::new(settings.facility, &settings.service);
        let wire = match settings.kind {
            SinkKind::Webhook => Wire::Webhook {
                endpoint: endpoint("")?,
                key: token_text().into_bytes(),
            },
            SinkKind::SplunkHec => Wire::SplunkHec {
                endpoint: endpoint(splunk_hec::PATH)?,
                auth: secret_header(format!("Splunk {}", token_text()))?,
            },
            SinkKind::Datadog => Wire::Datadog {
                endpoint: endpoint(datadog::PATH)?,
                key: secret_header(token_text())?,
                hostname: header().hostname,
            },
            SinkKind::Elasticsearch => Wire::Elasticsearch {
                endpoint: endpoint(elasticsearch::PATH)?,
                auth: token
                    .map(|t| secret_header(format!("ApiKey {}", t.expose())))
                    .transpose()?,
            },
            SinkKind::Syslog => Wire::Syslog {
                transport: syslog_transport(),
                header: header(),
            },
            SinkKind::Cef => Wire::Cef {
                transport: syslog_transport(),
                header: header(),
            },
        };
        Ok(Sink {
            filter: FeedFilter {
                event_types: settings.event_types.clone().unwrap_or_default(),
                ..FeedFilter::default()
            },
            settings,
            wire,
            health: Mutex::new(Health {
                state: "starting",
                ..Health::default()
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Sends `events` in the sink's wire format: one attempt, no retry.
    pub async fn send(&self, events: &[&AuditEvent]) -> Sent {
        match &self.wire {
            Wire::Webhook { endpoint, key } => {
                let body = webhook::encode(events);
                let signature = HeaderValue::from_str(&webhook::signature(key, &body))
                    .expect("hex is a valid header value");
                let headers = [(
                    HeaderName::from_static(webhook::SIGNATURE_HEADER),
                    signature,
                )];
                let answer = endpoint.post("application/json", &headers, body).await;
                Sent::http(answer, |r| Attempt::from_status(r.status))
            }
            Wire::SplunkHec { endpoint, auth } => {
                let headers = [(AUTHORIZATION, auth.clone())];
                let answer = endpoint
                    .post("application/json", &headers, splunk_hec::encode(events))
                    .await;
                Sent::http(answer, |r| Attempt::from_status(r.status))
            }
            Wire::Datadog {
                endpoint,
                key,
                hostname,
            } => {
                let headers = [(HeaderName::from_static("dd-api-key"), key.clone())];
                let requests = datadog::encode(
                    events,
                    &self.settings.service,
                    hostname,
                    datadog::MAX_ENTRIES,
                    datadog::MAX_BYTES,
                );
                let mut last = None;
                for (range, body) in requests {
                    let answer = endpoint.post("application/json", &headers, body).await;
                    let sent = Sent::http(answer, |r| Attempt::from_status(r.status));
                    if sent.attempt != Attempt::Ok {
                        if range.start == 0 {
                            return sent;
                        }
                        // The earlier requests were taken: only the rest is owed.
                        let (why, retry) = match &sent.attempt {
                            Attempt::Retry(why) => (why.clone(), true),
                            other => (other.why().cloned().unwrap_or(Why::new("io", "")), false),
                        };
                        return Sent {
                            attempt: Attempt::Partial {
                                failed: (range.start..events.len()).collect(),
                                why,
                                retry,
                            },
                            ..sent
                        };
                    }
                    last = Some(sent);
                }
                last.unwrap_or(Sent {
                    attempt: Attempt::Ok,
                    reply: None,
                    detail: "nothing to send".into(),
                })
            }
            Wire::Elasticsearch { endpoint, auth } => {
                let headers: Vec<_> = auth.iter().map(|a| (AUTHORIZATION, a.clone())).collect();
                let body = elasticsearch::encode(events, &self.settings.index);
                let answer = endpoint.post("application/x-ndjson", &headers, body).await;
                Sent::http(answer, |r| match Attempt::from_status(r.status) {
                    Attempt::Ok => elasticsearch::judge(&r.full, events.len()),
                    other => other,
                })
            }
            Wire::Syslog { transport, header } => {
                let messages: Vec<String> = events
                    .iter()
                    .map(|e| syslog::event_message(header, e))
                    .collect();
                let (attempt, detail) = transport.send(&messages).await;
                Sent {
                    attempt,
                    reply: None,
                    detail,
                }
            }
            Wire::Cef { transport, header } => {
                let messages: Vec<String> = events
                    .iter()
                    .map(|e| cef::event_message(header, e))
                    .collect();
                let (attempt, detail) = transport.send(&messages).await;
                Sent {
                    attempt,
                    reply: None,
                    detail,
                }
            }
        }
    }

    /// Removes this sink's credentials from `text` (for errors shown by the API and logged).
    fn scrub(&self, text: &str) -> String {
        match &self.wire {
            Wire::Webhook { endpoint, .. }
            | Wire::SplunkHec { endpoint, .. }
            | Wire::Datadog { endpoint, .. }
            | Wire::Elasticsearch { endpoint, .. } => endpoint.scrub(text),
            Wire::Syslog { .. } | Wire::Cef { .. } => text.to_owned(),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long the cursor keeper waits, after one sink's acknowledged batch, for the other sinks' (fed by the
/// same commits, they finish within a few milliseconds of each other) to commit all of them at once.
const CURSOR_GATHER: Duration = Duration::from_millis(20);

/// The configured sinks and their delivery tasks.
pub struct Siem {
    sinks: Vec<Arc<Sink>>,
    store: AuditStore,
    /// This instance's name on sink leases: its chain id (two live instances never share one; a restarted
    /// instance takes its own lease back at once).
    holder: String,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A sink name the configuration does not have.
#[derive(Debug, thiserror::Error)]
#[error("no SIEM sink is named {0:?}")]
pub struct UnknownSink(pub String);

impl Siem {
    /// Builds every sink, makes retention wait for them and starts one delivery task per sink.
    pub fn start(
        settings: &[SiemSinkSettings],
        audit: &AuditLog,
        client: &crate::outbound::HttpClient,
        metrics: SiemMetrics,
    ) -> anyhow::Result<Arc<Siem>> {
        let sinks = settings
            .iter()
            .map(|s| Sink::new(s.clone(), client).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (stop, _) = tokio::sync::watch::channel(false);
        let siem = Arc::new(Siem {
            sinks,
            store: audit.store().clone(),
            holder: audit.chain_id().to_owned(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        if siem.sinks.is_empty() {
            return Ok(siem);
        }
        for sink in &siem.sinks {
            metrics.register_sink(sink.name());
        }
        audit.hold_retention(Arc::new(failure::DeliveryHold::new(
            siem.sinks.iter().map(|s| s.name().to_owned()).collect(),
            audit.clone(),
            metrics.clone(),
        )));
        // The cursor keeper stays on the caller's runtime: its transaction holds the writer's connection, which
        // the audit writer needs next, so it must not wait for a low-priority thread between its statements.
        let (cursors, keeper) = cursors::CursorKeeper::start(
            siem.store.clone(),
            siem.holder.clone(),
            siem.sinks.len(),
            CURSOR_GATHER,
        );
        // Every other task runs on the SIEM's own low-priority thread, never on the request path's workers.
        let _on_the_siem_thread = runtime::handle()?.enter();
        let mut tasks = Vec::new();
        for sink in &siem.sinks {
            let task = delivery::Delivery::new(
                sink.clone(),
                audit.clone(),
                siem.holder.clone(),
                metrics.clone(),
                siem.stop.subscribe(),
                cursors.clone(),
            );
            tasks.push(tokio::spawn(task.run()));
        }
        // Last: it ends once every delivery task has (they hold its handles), so `stop` waits for it too.
        drop(cursors);
        tasks.push(keeper);
        *siem.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(siem)
    }

    /// Stops the delivery tasks (each finishes its current attempt first) and gives their leases up, so
    /// another instance takes the sinks over at once.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn sinks(&self) -> &[Arc<Sink>] {
        &self.sinks
    }

    pub fn sink(&self, name: &str) -> Result<&Arc<Sink>, UnknownSink> {
        self.sinks
            .iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| UnknownSink(name.to_owned()))
    }

    /// Every sink's status, as `GET /api/v1/siem` shows it: never a credential, nor the URL's userinfo or
    /// query.
    pub async fn status(&self) -> Result<Vec<Value>, AuditError> {
        let heads = self.store.chain_heads().await?;
        let now = time::OffsetDateTime::now_utc();
        let mut out = Vec::with_capacity(self.sinks.len());
        for sink in &self.sinks {
            let cursors = self.store.siem_cursors(sink.name()).await?;
            let lease = self.store.siem_lease(sink.name()).await?;
            let mut cursor = serde_json::Map::new();
            let (mut lag_events, mut lag_seconds, mut delivered) = (0i64, 0f64, 0i64);
            for (chain, head) in &heads {
                let at = cursors.iter().find(|c| &c.chain_id == chain);
                let seq = at.map_or(0, |c| c.delivered_seq);
                delivered += at.map_or(0, |c| c.delivered);
                cursor.insert(chain.clone(), json!(seq));
                if *head > seq {
                    lag_events += head - seq;
                    let oldest = self
                        .store
                        .chain_events(chain, seq, *head, &FeedFilter::default(), 1)
                        .await?;
                    if let Some(t) = oldest.first().and_then(|e| {
                        time::OffsetDateTime::parse(
                            &e.timestamp,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    }) {
                        lag_seconds = lag_seconds.max((now - t).as_seconds_f64().max(0.0));
                    }
                }
            }
            let health = sink.health().clone();
            out.push(json!({
                "name": sink.name(),
                "kind": sink.settings.kind.as_str(),
                "url": http::display_url(&sink.settings.url),
                "event_types": sink.settings.event_types,
                "batch_max": sink.settings.batch_max,
                "state": health.state,
                "delivering_instance": lease.as_ref().map(|l| l.holder.clone()),
                "cursor": cursor,
                "lag_events": lag_events,
                "lag_seconds": (lag_seconds * 1000.0).round() / 1000.0,
                "delivered": delivered,
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "last_delivery_at": health.last_delivery_at,
            }));
        }
        Ok(out)
    }

    /// Sends one test event (type `siem_test`, on chain `siem-test`, never stored in the audit log) to `name`
    /// and answers what the sink said.
    pub async fn send_test(&self, name: &str, requester: &str) -> Result<Value, UnknownSink> {
        let sink = self.sink(name)?;
        let mut head = ChainHead::genesis("siem-test");
        let event = head.seal(EventDraft {
            id: uuid::Uuid::now_v7().to_string(),
            timestamp: crate::telemetry::format_rfc3339(time::OffsetDateTime::now_utc()),
            event_type: "siem_test".into(),
            requester_id: Some(requester.to_owned()),
            extra: json!({ "sink": name, "test": true }),
            ..EventDraft::default()
        });
        let sent = sink.send(&[&event]).await;
        Ok(json!({
            "sink": name,
            "kind": sink.settings.kind.as_str(),
            "outcome": sent.attempt.name(),
            "reason": sent.attempt.why().map(|w| w.reason),
            "detail": sink.scrub(&sent.detail),
            "status": sent.reply.as_ref().map(|r| r.status),
            "body": sent.reply.as_ref().map(|r| r.body.clone()),
            "event_hash": event.event_hash,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use toolgate_engine::chain::{AuditEvent, ChainHead, EventDraft};

    use crate::audit::{AuditLog, AuditSettings};
    use crate::telemetry::{AuditMetrics, SiemMetrics};

    /// A sink failing through an outage keeps taking what the audit writer broadcasts (and drops it: it will
    /// read those events from the database), so the writer's ring of recent events is not held alive while
    /// events pile up; only the failed batch is. Before, the ring's last 4 096 events stayed in memory for the
    /// whole outage (and for as long as a standby instance's sinks waited for the lease).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_sink_does_not_hold_the_writers_broadcasts() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings {
            database_url: format!("sqlite://{}", dir.path().join("audit.db").display()),
            signing_key_file: Some(dir.path().join("audit.key")),
            checkpoint_dir: Some(dir.path().join("checkpoints")),
            ..AuditSettings::default()
        };
        let log = AuditLog::open(&settings, AuditMetrics::unregistered())
            .await
            .unwrap();
        // A port nobody listens on: every attempt is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink: super::SiemSinkSettings = toml::from_str(&format!(
            "name = \"down\"\nkind = \"syslog\"\nurl = \"tcp://127.0.0.1:{port}\"\nbatch_max = 10\n\
             backoff_initial_ms = 20\nbackoff_max_seconds = 1\nfailing_after = 1\n"
        ))
        .unwrap();
        let siem = super::Siem::start(
            &[sink],
            &log,
            &crate::outbound::client(),
            SiemMetrics::unregistered(),
        )
        .unwrap();
        for _ in 0..300 {
            log.append(EventDraft {
                event_type: "tool_call".into(),
                agent_id: Some("agent-1".into()),
                ..EventDraft::default()
            })
            .await
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.unread_broadcasts() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            log.unread_broadcasts(),
            0,
            "the failing sink left the broadcasts unread"
        );
        let status = siem.status().await.unwrap();
        assert_eq!(status[0]["state"], "failing", "{status:?}");
        // The 300 events and the `siem_delivery` event that recorded the failure: all still owed.
        assert!(status[0]["lag_events"].as_i64() >= Some(300), "{status:?}");
        siem.stop().await;
        log.close().await;
    }

    /// The `seq`th event of a test chain, sealed like the writer seals them.
    pub(crate) fn event(seq: i64) -> AuditEvent {
        let mut head = ChainHead {
            chain_id: "c1".into(),
            seq: seq - 1,
            hash: "ab".repeat(32),
        };
        head.seal(EventDraft {
            id: format!("id-{seq}"),
            timestamp: "2026-11-22T20:15:00.123456Z".into(),
            event_type: "tool_call".into(),
            agent_id: Some("agent-1".into()),
            tool_name: Some("read_file".into()),
            policy_result: Some("allow".into()),
            ..EventDraft::default()
        })
    }
}
