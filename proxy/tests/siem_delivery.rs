//! SIEM fan-out against the real server and local receivers on 127.0.0.1 that speak each wire format: the
//! webhook's signature, Splunk HEC envelopes, Datadog entries, Elasticsearch `_bulk` creates (with failed items
//! retried alone), RFC 5424 syslog over TCP with octet counting and CEF over UDP (escaping a hostile tool
//! name). Then what must not be lost: a sink answering 503 for a while (every event arrives, in chain order,
//! `siem_delivery` failed then recovered), a kill -9 mid-delivery and a restart, and two instances on one
//! PostgreSQL sharing a sink through its lease. The credential never shows in the API (hostile test).

mod common;
#[path = "siem/receivers.rs"]
mod receivers;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, send, start, token, Agent, Options, Proxy, ADMIN};
use hmac::{Hmac, Mac};
use hyper::{Method, StatusCode};
use receivers::Received;
use serde_json::{json, Value};
use sha2::Sha256;
use toolgate::audit::AuditStore;
use toolgate_engine::chain::AuditEvent;

/// A `[[siem]]` table with quick retries, then `extra` lines.
fn sink(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[[siem]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\npoll_ms = 100\n{extra}\n"
    )
}

/// Writes `token` to a file in `dir` and returns the `token_file = …` line.
fn token_file(dir: &tempfile::TempDir, name: &str, token: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    format!("token_file = \"{}\"", path.display())
}

async fn proxy_with(sinks: String) -> Proxy {
    start(Options {
        extra_toml: sinks,
        ..Default::default()
    })
    .await
}

/// `n` allowed calls and one denied call through the demo upstream.
async fn traffic(proxy: &Proxy, agent: &str, n: usize) {
    let mut a = Agent::new(proxy, "demo", token(agent, &["dev"]));
    for i in 0..n {
        let answer = a
            .call_stateless("echo", json!({ "text": format!("hello {i}") }))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    a.call_stateless("run_shell", json!({ "command": "id" }))
        .await;
}

/// Every stored event, by chain and seq.
async fn stored(store: &AuditStore) -> Vec<AuditEvent> {
    let mut all = Vec::new();
    for (chain, head) in store.chain_heads().await.unwrap() {
        all.extend(
            store
                .chain_events(&chain, 0, head, &Default::default(), 1_000_000)
                .await
                .unwrap(),
        );
    }
    all
}

/// Waits until every stored event's hash is among those `received` returns; returns the stored events.
async fn all_delivered(
    store: &AuditStore,
    limit: Duration,
    received: impl Fn() -> Vec<Value>,
) -> Vec<AuditEvent> {
    eventually(limit, || async {
        let events = stored(store).await;
        let got: HashSet<String> = received()
            .iter()
            .filter_map(|e| e["event_hash"].as_str().map(str::to_owned))
            .collect();
        events
            .iter()
            .all(|e| got.contains(&e.event_hash))
            .then_some(events)
    })
    .await
}

/// For each chain, the seqs of `received` in first-arrival order must rise: chain order.
fn assert_chain_order(received: &[Value]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen = HashSet::new();
    for e in received {
        if !seen.insert(e["event_hash"].as_str().unwrap().to_owned()) {
            continue;
        }
        let chain = e["chain_id"].as_str().unwrap().to_owned();
        let seq = e["seq"].as_i64().unwrap();
        let before = last.insert(chain.clone(), seq).unwrap_or(0);
        assert!(
            seq > before,
            "chain {chain}: seq {seq} arrived after {before}"
        );
    }
}

/// The events of webhook requests, in arrival order.
fn webhook_events(requests: &[Received]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.path == "/hook")
        .flat_map(|r| {
            serde_json::from_slice::<Vec<Value>>(&r.body).expect("a webhook body is a JSON array")
        })
        .collect()
}

async fn admin(proxy: &Proxy, method: Method, path: &str) -> common::Answer {
    let auth = format!("Bearer {ADMIN}");
    send(method, &proxy.url(path), &[("authorization", &auth)], "").await
}

async fn siem_status(proxy: &Proxy) -> Value {
    let answer = admin(proxy, Method::GET, "/api/v1/siem").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.json()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_batches_are_signed_and_carry_every_event_in_chain_order() {
    let receiver = receivers::http(receivers::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = "webhook-signing-key-0123456789";
    let proxy = proxy_with(sink(
        "hook",
        "webhook",
        &receiver.url("/hook"),
        &format!("{}\nbatch_max = 4", token_file(&dir, "hook.key", key)),
    ))
    .await;
    traffic(&proxy, "agent-1", 6).await;
    let events = all_delivered(proxy.app.audit.store(), Duration::from_secs(20), || {
        webhook_events(&receiver.received())
    })
    .await;
    let requests = receiver.received();
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(&r.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(r.header("x-toolgate-signature"), Some(expected.as_str()));
        let batch: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        assert!(
            (1..=4).contains(&batch.len()),
            "batch_max is 4: {}",
            batch.len()
        );
    }
    let received = webhook_events(&requests);
    assert_chain_order(&received);
    // Each event exactly as the JSON export renders it.
    let by_hash: HashMap<&str, &Value> = received
        .iter()
        .map(|e| (e["event_hash"].as_str().unwrap(), e))
        .collect();
    for e in &events {
        assert_eq!(
            *by_hash[e.event_hash.as_str()],
            serde_json::to_value(e).unwrap()
        );
    }

    // The status: cursor at the head, nothing owed, never the key.
    let status = eventually(Duration::from_secs(5), || async {
        let status = siem_status(&proxy).await;
        (status["sinks"][0]["lag_events"] == 0).then_some(status)
    })
    .await;
    let sink = &status["sinks"][0];
    assert_eq!(sink["name"], "hook");
    assert_eq!(sink["kind"], "webhook");
    let heads = proxy.app.audit.store().chain_heads().await.unwrap();
    assert_eq!(sink["cursor"]["toolgate"], heads[0].1);
    assert!(sink["delivered"].as_i64().unwrap() >= events.len() as i64);
    assert!(!status.to_string().contains(key));

    // The test send: one signed siem_test event, the sink's answer, an admin_action.
    let answer = admin(&proxy, Method::POST, "/api/v1/siem/hook/test").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["outcome"], "ok");
    assert_eq!(body["status"], 200);
    let last = receiver.received().pop().unwrap();
    let test_events: Vec<Value> = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(test_events[0]["event_type"], "siem_test");
    assert_eq!(test_events[0]["event_hash"], body["event_hash"]);
    let unknown = admin(&proxy, Method::POST, "/api/v1/siem/nope/test").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"], "not_found");
    let actions: Vec<Value> = common::audit_events(&proxy.app, 100)
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "admin_action")
        .collect();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["extra"]["action"], "siem_test");
    assert_eq!(actions[0]["extra"]["sink"], "hook");
    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metric(
            &text,
            "toolgate_siem_events_delivered_total",
            &["sink=\"hook\""]
        ) >= events.len() as f64
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_and_datadog_get_their_envelopes() {
    let splunk = receivers::http(Arc::new(|_, _| {
        (200, r#"{"text":"Success","code":0}"#.into())
    }))
    .await;
    let datadog = receivers::http(Arc::new(|_, _| (202, "{}".into()))).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = sink(
        "splunk",
        "splunk_hec",
        &splunk.url(""),
        &token_file(&dir, "hec", "hec-token-1"),
    ) + &sink(
        "dd",
        "datadog",
        &datadog.url(""),
        &format!(
            "{}\nevent_types = [\"tool_call\"]",
            token_file(&dir, "dd", "dd-key-1")
        ),
    );
    let proxy = proxy_with(sinks).await;
    traffic(&proxy, "agent-2", 3).await;
    let hec_events = || {
        splunk
            .received()
            .iter()
            .flat_map(|r| {
                serde_json::Deserializer::from_slice(&r.body)
                    .into_iter::<Value>()
                    .map(|v| v.unwrap())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<Value>>()
    };
    all_delivered(proxy.app.audit.store(), Duration::from_secs(20), || {
        hec_events()
            .into_iter()
            .map(|e| e["event"].clone())
            .collect()
    })
    .await;
    for r in splunk.received() {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(r.header("authorization"), Some("Splunk hec-token-1"));
    }
    for envelope in hec_events() {
        assert_eq!(envelope["source"], "toolgate");
        assert_eq!(envelope["sourcetype"], "toolgate:audit");
        assert!(envelope["time"].as_f64().unwrap() > 1.7e9);
        assert!(envelope["event"]["event_hash"].is_string());
    }
    // Datadog: only tool_call events (the filter), every one of them.
    let tool_calls: HashSet<String> = eventually(Duration::from_secs(20), || async {
        let want: HashSet<String> = stored(proxy.app.audit.store())
            .await
            .into_iter()
            .filter(|e| e.event_type == "tool_call")
            .map(|e| e.event_hash)
            .collect();
        let got: HashSet<String> = datadog
            .received()
            .iter()
            .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
            .map(|entry| {
                assert_eq!(entry["ddsource"], "toolgate");
                let event: Value =
                    serde_json::from_str(entry["message"].as_str().unwrap()).unwrap();
                assert_eq!(
                    event["event_type"], "tool_call",
                    "the filter lets only tool_call through"
                );
                event["event_hash"].as_str().unwrap().to_owned()
            })
            .collect();
        (!want.is_empty() && want == got).then_some(got)
    })
    .await;
    assert!(tool_calls.len() >= 3);
    // The events the filter skipped are passed too: nothing is owed, and only the tool calls were counted.
    let status = eventually(Duration::from_secs(10), || async {
        let status = siem_status(&proxy).await;
        let dd = status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "dd")
            .cloned()
            .unwrap();
        (dd["lag_events"] == 0).then_some(dd)
    })
    .await;
    assert_eq!(status["delivered"], tool_calls.len());
    assert_eq!(status["event_types"], json!(["tool_call"]));
    for r in datadog.received() {
        assert_eq!(r.path, "/api/v2/logs");
        assert_eq!(r.header("dd-api-key"), Some("dd-key-1"));
    }
    proxy.stop().await;
}

/// The `_id`s of a `_bulk` body, in order.
fn bulk_ids(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .step_by(2)
        .map(|l| {
            let action: Value = serde_json::from_str(l).unwrap();
            action["create"]["_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_creates_by_event_hash_and_retries_only_failed_items() {
    let docs: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    // The first bulk request of two or more items has its odd items refused with 429, once.
    let refuse: Arc<Mutex<HashSet<String>>> = Arc::default();
    let first_refused: Arc<Mutex<Option<Vec<String>>>> = Arc::default();
    let bulk = receivers::elasticsearch(docs.clone(), refuse.clone());
    let seen = first_refused.clone();
    let answer: receivers::Answerer = Arc::new(move |req, n| {
        let ids = bulk_ids(&req.body);
        {
            let mut first = seen.lock().unwrap();
            if first.is_none() && ids.len() >= 2 {
                let odd: Vec<String> = ids.iter().skip(1).step_by(2).cloned().collect();
                refuse.lock().unwrap().extend(odd.iter().cloned());
                *first = Some(odd);
            }
        }
        bulk(req, n)
    });
    let receiver = receivers::http(answer).await;
    let proxy = proxy_with(sink(
        "es",
        "elasticsearch",
        &receiver.url(""),
        "index = \"toolgate-test\"\nbatch_max = 8",
    ))
    .await;
    traffic(&proxy, "agent-3", 4).await;
    let events = eventually(Duration::from_secs(20), || async {
        let events = stored(proxy.app.audit.store()).await;
        let docs = docs.lock().unwrap();
        events
            .iter()
            .all(|e| docs.contains_key(&e.event_hash))
            .then_some(events)
    })
    .await;
    for e in &events {
        assert_eq!(
            docs.lock().unwrap()[&e.event_hash],
            serde_json::to_value(e).unwrap()
        );
    }
    let requests = receiver.received();
    for r in &requests {
        assert_eq!(r.path, "/_bulk");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<Value> = String::from_utf8_lossy(&r.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for pair in lines.chunks(2) {
            assert_eq!(pair[0]["create"]["_index"], "toolgate-test");
            assert_eq!(
                pair[0]["create"]["_id"], pair[1]["event_hash"],
                "_id is the event hash"
            );
        }
    }
    // The request right after the partly refused one re-sends exactly the refused items.
    let refused = first_refused
        .lock()
        .unwrap()
        .clone()
        .expect("a bulk of two or more items came");
    let first = requests
        .iter()
        .position(|r| bulk_ids(&r.body).len() >= 2)
        .unwrap();
    assert_eq!(bulk_ids(&requests[first + 1].body), refused);
    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metric(
            &text,
            "toolgate_siem_delivery_failures_total",
            &["sink=\"es\"", "reason=\"items\""]
        ) >= 1.0
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_and_cef_over_udp_frame_and_escape() {
    let tcp = receivers::syslog_tcp().await;
    let udp = receivers::syslog_udp().await;
    let sinks = sink("syslog", "syslog", &format!("tcp://{}", tcp.addr), "")
        + &sink(
            "cef",
            "cef",
            &format!("udp://{}", udp.addr),
            "facility = 16",
        );
    let proxy = proxy_with(sinks).await;
    traffic(&proxy, "agent-4", 2).await;
    let hostile = r"evil|tool=x\y";
    let mut a = Agent::new(&proxy, "demo", token("agent-4", &["dev"]));
    a.call_stateless(hostile, json!({})).await;
    let parsed = |messages: Vec<String>| -> Vec<Value> {
        messages
            .iter()
            .map(|m| serde_json::from_str(&receivers::parse_rfc5424(m).msg).unwrap())
            .collect()
    };
    let events = all_delivered(proxy.app.audit.store(), Duration::from_secs(20), || {
        parsed(tcp.messages())
    })
    .await;
    let by_hash: HashMap<String, &AuditEvent> =
        events.iter().map(|e| (e.event_hash.clone(), e)).collect();
    for m in tcp.messages() {
        let m = receivers::parse_rfc5424(&m);
        let json: Value = serde_json::from_str(&m.msg).unwrap();
        let event = by_hash[json["event_hash"].as_str().unwrap()];
        assert_eq!(m.version, "1");
        assert_eq!(m.timestamp, event.timestamp);
        assert_eq!(m.app_name, "toolgate");
        assert_eq!(m.msg_id, event.event_type);
        assert_eq!(m.structured_data, "-");
        assert!(m.proc_id.parse::<u32>().is_ok());
        let severity = if event.event_type == "policy_deny" {
            4
        } else if event.error.is_some() {
            3
        } else {
            6
        };
        if event.error.is_none() {
            assert_eq!(m.pri, 13 * 8 + severity, "{}", event.event_type);
        }
        assert_eq!(json, serde_json::to_value(event).unwrap());
    }
    assert_chain_order(&parsed(tcp.messages()));

    // CEF: every event, the hostile tool name escaped so it forges no field.
    let records = eventually(Duration::from_secs(20), || async {
        let messages = udp.messages();
        let hostile_seen = messages.iter().any(|m| m.contains("evil"));
        (messages.len() >= events.len() && hostile_seen).then_some(messages)
    })
    .await;
    for m in &records {
        let m = receivers::parse_rfc5424(m);
        assert_eq!(m.pri / 8, 16, "facility local0");
        assert!(m.msg.starts_with("CEF:0|toolgate|toolgate|"), "{}", m.msg);
    }
    let record = records
        .iter()
        .map(|m| receivers::parse_rfc5424(m).msg)
        .find(|m| m.contains("evil"))
        .unwrap();
    assert!(
        record.contains(r"|evil\|tool=x\\y") || record.contains(r" evil\|tool=x\\y|"),
        "header escapes | and \\: {record}"
    );
    assert!(
        record.contains(r"cs2=evil|tool\=x\\y"),
        "extension escapes = and \\: {record}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_is_recorded_as_failed_then_recovered() {
    let receiver = receivers::http(Arc::new(|_, _| (503, r#"{"error":"down"}"#.into()))).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_with(sink(
        "hook",
        "webhook",
        &receiver.url("/hook"),
        &format!(
            "{}\nbatch_max = 3\nfailing_after = 2",
            token_file(&dir, "k", "outage-key")
        ),
    ))
    .await;
    traffic(&proxy, "agent-5", 5).await;
    // Down: attempts fail and are counted; the sink is reported failing.
    let status = eventually(Duration::from_secs(20), || async {
        let status = siem_status(&proxy).await;
        (status["sinks"][0]["state"] == "failing").then_some(status)
    })
    .await;
    let sink = &status["sinks"][0];
    assert_eq!(sink["last_error"]["reason"], "status_5xx");
    assert_eq!(sink["last_error"]["status"], 503);
    assert_eq!(
        sink["last_error"]["detail"],
        r#"status 503: {"error":"down"}"#
    );
    assert!(sink["lag_events"].as_i64().unwrap() > 0);
    assert!(sink["lag_seconds"].as_f64().unwrap() >= 0.0);
    traffic(&proxy, "agent-5", 3).await;
    // Up again: everything arrives, in chain order.
    receiver.set_answer(receivers::ok());
    // Only what the sink acknowledged (200) counts as delivered.
    let acknowledged = || -> Vec<Value> {
        let answered: Vec<Received> = receiver
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect();
        webhook_events(&answered)
    };
    let events = all_delivered(
        proxy.app.audit.store(),
        Duration::from_secs(30),
        acknowledged,
    )
    .await;
    assert!(
        receiver
            .received()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            >= 2
    );
    let delivered = acknowledged();
    assert_chain_order(&delivered);
    let kinds: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.event_type == "siem_delivery")
        .map(|e| {
            (
                e.extra["status"].as_str().unwrap().to_owned(),
                e.extra["sink"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&("failed".to_owned(), "hook".to_owned())),
        "{kinds:?}"
    );
    let recovered = eventually(Duration::from_secs(10), || async {
        stored(proxy.app.audit.store())
            .await
            .into_iter()
            .find(|e| e.event_type == "siem_delivery" && e.extra["status"] == "recovered")
    })
    .await;
    assert!(recovered.extra["failed_attempts"].as_i64().unwrap() >= 2);
    let status = eventually(Duration::from_secs(10), || async {
        let status = siem_status(&proxy).await;
        (status["sinks"][0]["lag_events"] == 0).then_some(status)
    })
    .await;
    assert_ne!(status["sinks"][0]["state"], "failing");
    let metrics = send(Method::GET, &proxy.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metric(
            &text,
            "toolgate_siem_delivery_failures_total",
            &["sink=\"hook\"", "reason=\"status_5xx\""]
        ) >= 2.0
    );
    assert_eq!(
        metric(&text, "toolgate_siem_lag_events", &["sink=\"hook\""]),
        0.0
    );
    assert_eq!(
        metric(&text, "toolgate_siem_sink_failing", &["sink=\"hook\""]),
        0.0
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_never_shows_in_the_api() {
    // A hostile sink: it echoes every request header back, and refuses (401) so the error is kept and shown.
    let receiver = receivers::http(Arc::new(|req, _| {
        (401, json!({ "echo": req.headers }).to_string())
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = "hec-SECRET-token-4242";
    let url = format!("http://collector:pa55w0rd-SECRET@{}/", receiver.addr);
    let proxy = proxy_with(
        sink("splunk", "splunk_hec", &url, &token_file(&dir, "t", token))
            + &sink(
                "es",
                "elasticsearch",
                &format!(
                    "http://elastic:es-SECRET-pw@{}/?api_key=q-SECRET",
                    receiver.addr
                ),
                "",
            ),
    )
    .await;
    traffic(&proxy, "agent-6", 1).await;
    let status = eventually(Duration::from_secs(20), || async {
        let status = siem_status(&proxy).await;
        status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["last_error"]["status"] == 401)
            .then_some(status)
    })
    .await;
    // The sink did receive the credentials…
    let received = receiver.received();
    assert!(received
        .iter()
        .any(|r| r.header("authorization") == Some(&format!("Splunk {token}"))));
    // …and the API shows none of them.
    let test = admin(&proxy, Method::POST, "/api/v1/siem/splunk/test").await;
    assert_eq!(test.status, StatusCode::OK);
    assert_eq!(test.json()["outcome"], "dont_retry");
    assert_eq!(test.json()["status"], 401);
    let es_test = admin(&proxy, Method::POST, "/api/v1/siem/es/test").await;
    for shown in [
        status.to_string(),
        String::from_utf8_lossy(&test.body).to_string(),
        String::from_utf8_lossy(&es_test.body).to_string(),
    ] {
        assert!(!shown.contains("SECRET"), "a credential is shown: {shown}");
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("elastic:es-SECRET-pw");
        assert!(!shown.contains(&basic), "a credential is shown: {shown}");
    }
    assert!(
        status
            .to_string()
            .contains(&format!("http://{}/", receiver.addr)),
        "the URL without userinfo: {status}"
    );
    // Nor does the audit log (failures are recorded there).
    let audit = serde_json::to_string(&stored(proxy.app.audit.store()).await).unwrap();
    assert!(!audit.contains("SECRET"));
    proxy.stop().await;
}
