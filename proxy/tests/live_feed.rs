//! The live feed (`GET /api/v1/audit/stream`) against the real server: ids, resuming after a disconnect
//! without a gap or a duplicate (by header and by query parameter, across the chains of several instances),
//! filters on replay and live, refused ids, the slow consumer, and the audited policy reload. The store reads
//! run on SQLite and, when `TOOLGATE_TEST_POSTGRES_URL` is set, on PostgreSQL.

mod common;
#[path = "live_feed/sse.rs"]
mod sse;

use std::collections::HashSet;
use std::future::Future;

use base64::Engine as _;
use common::{start, token, Agent, Options, Proxy, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sse::{Ask, Feed, SseEvent};
use toolgate_engine::chain::EventDraft;

/// Runs `case` with the URL of a fresh SQLite database and, when configured, of a fresh PostgreSQL schema.
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::run(false, super::$case).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::run(true, super::$case).await;
            }
        }
    };
}

async fn run<F, Fut>(postgres: bool, case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    if !postgres {
        case(format!(
            "sqlite://{}",
            dir.path().join("audit.db").display()
        ))
        .await;
        return;
    }
    common::on_postgres(case).await;
}

async fn proxy_on(url: &str, chain: Option<&str>) -> Proxy {
    start(Options {
        database_url: Some(url.to_owned()),
        audit_toml: chain.map_or(String::new(), |c| format!("chain_id = \"{c}\"")),
        ..Default::default()
    })
    .await
}

/// An allowed call (`echo`), answered by the demo upstream.
async fn allowed(proxy: &Proxy, agent: &str) {
    let mut agent = Agent::new(proxy, "demo", token(agent, &["dev"]));
    let answer = agent.call_stateless("echo", json!({ "text": "hi" })).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.message().get("error").is_none(),
        "{:?}",
        answer.message()
    );
}

/// A call the shipped policies deny (a system path).
async fn denied(proxy: &Proxy, agent: &str) {
    let mut agent = Agent::new(proxy, "demo", token(agent, &["dev"]));
    let answer = agent
        .call_stateless("read_file", json!({ "path": "/etc/passwd" }))
        .await;
    assert_eq!(answer.error_code(), Some(-31001));
}

/// Every event of `chain` stored after `after`, in seq order, once the events nobody waited for are committed.
async fn stored_after(proxy: &Proxy, chain: &str, after: i64) -> Vec<Value> {
    proxy.app.audit.checkpoint().await.unwrap();
    let mut events: Vec<Value> = common::audit_events(&proxy.app, 1000)
        .await
        .into_iter()
        .filter(|e| e["chain_id"] == chain && e["seq"].as_i64().unwrap() > after)
        .collect();
    events.sort_by_key(|e| e["seq"].as_i64().unwrap());
    events
}

fn seqs(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(SseEvent::seq).collect()
}

fn stored_seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

/// Every event has an id, no two the same, and is named by its type.
fn assert_well_formed(events: &[SseEvent]) {
    let mut ids = HashSet::new();
    for e in events {
        let id = e.id.as_deref().expect("every audit event has an id");
        assert!(ids.insert(id.to_owned()), "id {id} sent twice");
        assert_eq!(e.event, e.data["event_type"].as_str().unwrap(), "{e:?}");
    }
}

/// Consecutive seqs of one chain: nothing skipped, nothing twice.
fn assert_consecutive(seqs: &[i64]) {
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{seqs:?}");
    }
}

on_both!(a_resumed_feed_has_exactly_the_missed_events_then_the_live_ones);
async fn a_resumed_feed_has_exactly_the_missed_events_then_the_live_ones(url: String) {
    let proxy = proxy_on(&url, None).await;
    let mut feed = Feed::served(proxy.addr, Ask::default()).await;
    for _ in 0..3 {
        allowed(&proxy, "a1").await;
    }
    let first = feed.take(4).await;
    assert_well_formed(&first);
    assert_consecutive(&seqs(&first));
    assert_eq!(first[0].event, "tool_call");
    assert!(first.iter().any(|e| e.event == "tool_result"), "{first:?}");
    // The client goes away after four events; more is committed while it is gone.
    drop(feed);
    for _ in 0..3 {
        allowed(&proxy, "a1").await;
    }
    let seen = first.last().unwrap();
    let seen_id = seen.id.clone().unwrap();
    let by_query = format!("last_event_id={seen_id}");
    for ask in [
        Ask {
            last_event_id: Some(&seen_id),
            ..Default::default()
        },
        // An EventSource cannot set a header on its first connect.
        Ask {
            query: &by_query,
            ..Default::default()
        },
        // A reconnecting EventSource sends its newer header beside the URL's older parameter.
        Ask {
            query: "last_event_id=not-this-one",
            last_event_id: Some(&seen_id),
            ..Default::default()
        },
    ] {
        // Each client resumes from the same id: it misses the live events of the ones before it too.
        let missed = stored_after(&proxy, "toolgate", seen.seq()).await;
        assert!(missed.len() >= 6, "{missed:?}");
        let mut resumed = Feed::served(proxy.addr, ask).await;
        let replay = resumed.take(missed.len()).await;
        assert_eq!(
            seqs(&replay),
            stored_seqs(&missed),
            "exactly the missed events"
        );
        for (sent, stored) in replay.iter().zip(&missed) {
            assert_eq!(&sent.data, stored);
        }
        // Then live, going on from the replay: no gap, no duplicate.
        allowed(&proxy, "a1").await;
        let live = resumed.take(2).await;
        assert_eq!(live[0].seq(), replay.last().unwrap().seq() + 1);
        let all = [replay, live].concat();
        assert_well_formed(&all);
        assert_consecutive(&seqs(&all));
    }
    proxy.stop().await;
}

on_both!(a_resume_while_calls_go_on_switches_to_live_without_a_gap_or_a_duplicate);
async fn a_resume_while_calls_go_on_switches_to_live_without_a_gap_or_a_duplicate(url: String) {
    let proxy = proxy_on(&url, None).await;
    let mut feed = Feed::served(proxy.addr, Ask::default()).await;
    allowed(&proxy, "a1").await;
    let seen = feed.take(1).await.remove(0);
    drop(feed);
    // Calls commit while the client replays, subscribes and goes live.
    let busy = {
        let mut agent = Agent::new(&proxy, "demo", token("busy", &["dev"]));
        tokio::spawn(async move {
            for _ in 0..40 {
                let answer = agent.call_stateless("echo", json!({ "text": "on" })).await;
                assert_eq!(answer.status, StatusCode::OK);
            }
        })
    };
    let mut resumed = Feed::served(
        proxy.addr,
        Ask {
            last_event_id: seen.id.as_deref(),
            ..Default::default()
        },
    )
    .await;
    busy.await.unwrap();
    let head = stored_after(&proxy, "toolgate", 0).await.last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let mut got = Vec::new();
    while got.last().map_or(seen.seq(), SseEvent::seq) < head {
        got.push(resumed.next().await.expect("the feed goes on"));
    }
    assert_well_formed(&got);
    assert_eq!(got[0].seq(), seen.seq() + 1);
    assert_consecutive(&seqs(&got));
    proxy.stop().await;
}

/// Which stored events a filter keeps.
type Keeps = fn(&Value) -> bool;

/// The filters of the filter test, and which stored events each keeps.
const FILTERS: [(&str, Keeps); 4] = [
    ("agent_id=a2", |e| e["agent_id"] == "a2"),
    // A value is a value, never SQL.
    ("agent_id=x'%20OR%20'1'%3D'1,a2", |e| e["agent_id"] == "a2"),
    ("policy_result=deny", |e| e["policy_result"] == "deny"),
    ("event_type=tool_result,policy_deny", |e| {
        e["event_type"] == "tool_result" || e["event_type"] == "policy_deny"
    }),
];

/// Events of several agents and results; the last one (a2 denied) passes every filter of [`FILTERS`].
async fn mixed_calls(proxy: &Proxy) {
    allowed(proxy, "a1").await;
    denied(proxy, "a1").await;
    allowed(proxy, "a2").await;
    allowed(proxy, "a1").await;
    denied(proxy, "a2").await;
}

on_both!(filters_apply_to_the_replay_and_to_live_events);
async fn filters_apply_to_the_replay_and_to_live_events(url: String) {
    let proxy = proxy_on(&url, None).await;
    // A marker event gives an id to resume from later.
    let mut all = Feed::served(proxy.addr, Ask::default()).await;
    allowed(&proxy, "a0").await;
    let marker = all.take(1).await.remove(0);
    proxy.app.audit.checkpoint().await.unwrap();
    let marker_tail = stored_after(&proxy, "toolgate", marker.seq()).await.len();

    let mut live_feeds = Vec::new();
    for (query, _) in FILTERS {
        live_feeds.push(
            Feed::served(
                proxy.addr,
                Ask {
                    query,
                    ..Default::default()
                },
            )
            .await,
        );
    }
    mixed_calls(&proxy).await;
    let stored = stored_after(&proxy, "toolgate", marker.seq()).await;
    let calls = &stored[marker_tail..];
    for ((query, keeps), feed) in FILTERS.iter().zip(&mut live_feeds) {
        let expected: Vec<&Value> = calls.iter().filter(|e| keeps(e)).collect();
        assert!(expected.len() >= 2, "{query}: {expected:?}");
        let got = feed.take(expected.len()).await;
        assert_well_formed(&got);
        let got_data: Vec<&Value> = got.iter().map(|e| &e.data).collect();
        assert_eq!(got_data, expected, "live, {query}");
    }

    // Resumed after the marker with a filter: the stored events that pass it, then live ones that pass it.
    let marker_id = marker.id.clone().unwrap();
    for (query, keeps) in FILTERS {
        let mut resumed = Feed::served(
            proxy.addr,
            Ask {
                query,
                last_event_id: Some(&marker_id),
                ..Default::default()
            },
        )
        .await;
        let expected: Vec<Value> = stored_after(&proxy, "toolgate", marker.seq())
            .await
            .into_iter()
            .filter(keeps)
            .collect();
        let got = resumed.take(expected.len()).await;
        assert_well_formed(&got);
        let got_data: Vec<Value> = got.iter().map(|e| e.data.clone()).collect();
        assert_eq!(got_data, expected, "replay, {query}");
        // An event that passes none of the filters, then one that passes them all.
        let mut other = filler(0);
        other.agent_id = Some("a1".into());
        proxy.app.audit.append(other).await.unwrap();
        denied(&proxy, "a2").await;
        let next = resumed.take(1).await.remove(0);
        assert!(keeps(&next.data), "live after replay, {query}: {next:?}");
        assert_eq!(next.data["event_type"], "policy_deny", "{query}: {next:?}");
    }
    proxy.stop().await;
}

on_both!(a_feed_covers_the_chains_of_every_instance_on_the_database);
async fn a_feed_covers_the_chains_of_every_instance_on_the_database(url: String) {
    let one = proxy_on(&url, None).await;
    let two = proxy_on(&url, Some("second")).await;
    let mut feed = Feed::served(one.addr, Ask::default()).await;
    // The other instance's events are read from the database.
    allowed(&two, "b1").await;
    let theirs = feed.take(2).await;
    assert!(theirs.iter().all(|e| e.chain() == "second"), "{theirs:?}");
    assert_well_formed(&theirs);
    allowed(&one, "a1").await;
    let ours = feed.take(2).await;
    assert!(ours.iter().all(|e| e.chain() == "toolgate"), "{ours:?}");
    let seen = ours.last().unwrap().clone();
    drop(feed);

    // While the client is away, both instances commit; the resume has everything of both, once.
    allowed(&two, "b1").await;
    allowed(&one, "a1").await;
    denied(&two, "b2").await;
    let their_seen = theirs.last().unwrap().seq();
    let missed_theirs = stored_after(&two, "second", their_seen).await;
    let missed_ours = stored_after(&one, "toolgate", seen.seq()).await;
    let mut resumed = Feed::served(
        one.addr,
        Ask {
            last_event_id: seen.id.as_deref(),
            ..Default::default()
        },
    )
    .await;
    let replay = resumed.take(missed_theirs.len() + missed_ours.len()).await;
    assert_well_formed(&replay);
    for (chain, missed) in [("second", &missed_theirs), ("toolgate", &missed_ours)] {
        let got: Vec<i64> = replay
            .iter()
            .filter(|e| e.chain() == chain)
            .map(SseEvent::seq)
            .collect();
        assert_eq!(got, stored_seqs(missed), "chain {chain}");
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_and_filters_are_refused_before_the_stream_begins() {
    let proxy = start(Options::default()).await;
    allowed(&proxy, "a1").await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let unknown_chain = b64(r#"{"feed":1,"chains":{"elsewhere":1}}"#);
    let ahead = b64(r#"{"feed":1,"chains":{"toolgate":1000000}}"#);
    let not_ours = b64(r#"{"page":2}"#);
    let cases = [
        (
            None,
            "last_event_id=%25%25garbled",
            "bad_last_event_id",
            "not a feed id",
        ),
        (Some("garbled!"), "", "bad_last_event_id", "not a feed id"),
        (
            Some(not_ours.as_str()),
            "",
            "bad_last_event_id",
            "not a feed id",
        ),
        (
            Some(unknown_chain.as_str()),
            "",
            "bad_last_event_id",
            "does not hold",
        ),
        (
            Some(ahead.as_str()),
            "",
            "bad_last_event_id",
            "ahead of the audit log",
        ),
        (None, "agent_id=a1,,a2", "bad_request", "none of them empty"),
        (None, "event_type=", "bad_request", "none of them empty"),
    ];
    for (header, query, code, says) in cases {
        let feed = Feed::open(
            proxy.addr,
            Ask {
                query,
                last_event_id: header,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(feed.status, 400, "{header:?} {query}: {}", feed.head);
        assert!(feed
            .header("content-type")
            .is_some_and(|t| t == "application/json"));
        let error = feed.refusal().await;
        assert_eq!(error["error"], code, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // An empty id is no id, as in SSE: the feed starts now (after the held outcome of the first call).
    proxy.app.audit.checkpoint().await.unwrap();
    let mut fresh = Feed::served(
        proxy.addr,
        Ask {
            last_event_id: Some(""),
            ..Default::default()
        },
    )
    .await;
    denied(&proxy, "a1").await;
    assert_eq!(fresh.take(1).await[0].event, "policy_deny");
    proxy.stop().await;
}

/// A filler event of about 4 KiB (`extra` holds up to 4096 bytes, each string up to 1024).
fn filler(n: usize) -> EventDraft {
    let text = "f".repeat(1000);
    EventDraft {
        event_type: "filler".into(),
        extra: json!({ "n": n, "a": text, "b": text, "c": text }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_told_and_dropped_and_calls_go_on() {
    let proxy = start(Options::default()).await;
    // A client that stops reading: its socket's buffers fill, then the feed's channel.
    let mut slow = Feed::served(
        proxy.addr,
        Ask {
            receive_buffer: Some(4096),
            ..Default::default()
        },
    )
    .await;
    // Far more than the socket buffers and the feed's channel hold (about 25 MiB), while agents call.
    let calls = {
        let mut agent = Agent::new(&proxy, "demo", token("busy", &["dev"]));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..40 {
                answers.push(agent.call_stateless("echo", json!({ "text": "on" })).await);
            }
            answers
        })
    };
    for round in 0..60 {
        let appends = (0..100).map(|i| proxy.app.audit.append(filler(round * 100 + i)));
        for ack in futures_util::future::join_all(appends).await {
            ack.unwrap();
        }
    }
    for answer in calls.await.unwrap() {
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            answer.message().get("error").is_none(),
            "{:?}",
            answer.message()
        );
    }

    // Now it reads: what was sent before it was dropped, then the notice, then the end of the stream.
    let mut sent = Vec::new();
    let notice = loop {
        let event = slow.next().await.expect("the notice comes before the end");
        if event.event == "system_notification" {
            break event;
        }
        sent.push(event);
    };
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the notice"
    );
    assert!(notice.id.is_none(), "a notice moves no cursor");
    assert_eq!(notice.data["kind"], "slow_consumer");
    assert!(notice.data["message"]
        .as_str()
        .unwrap()
        .contains("Last-Event-ID"));
    let last = sent
        .last()
        .expect("events were sent before the feed fell behind");
    assert_eq!(notice.data["resume_with"], json!(last.id));
    assert_well_formed(&sent);
    assert_consecutive(&seqs(&sent));
    assert!(sent.len() < 6000, "dropped before the end: {}", sent.len());

    // resume_with continues exactly after the last event sent.
    let mut resumed = Feed::served(
        proxy.addr,
        Ask {
            last_event_id: notice.data["resume_with"].as_str(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(resumed.take(1).await[0].seq(), last.seq() + 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_is_an_admin_action_in_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::shipped_policies_with(dir.path(), |_| {});
    let proxy = start(Options {
        policy_dir: Some(policies.clone()),
        ..Default::default()
    })
    .await;
    let mut feed = Feed::served(
        proxy.addr,
        Ask {
            query: "event_type=admin_action",
            ..Default::default()
        },
    )
    .await;
    let url = proxy.url("/api/v1/policy/reload");
    let auth = format!("Bearer {ADMIN}");
    let headers = [("authorization", auth.as_str())];
    let reload = || common::send(Method::POST, &url, &headers, "");
    let ok = reload().await;
    assert_eq!(ok.status, StatusCode::OK);
    let event = feed.take(1).await.remove(0);
    assert_eq!(event.event, "admin_action");
    assert_eq!(event.data["requester_id"], "admin");
    assert_eq!(event.data["extra"]["action"], "policy_reload");
    assert_eq!(event.data["extra"]["result"], "ok");
    assert_eq!(event.data["extra"]["revision"], ok.json()["revision"]);
    assert_eq!(event.data["extra"]["error"], Value::Null);

    // A refused reload is recorded too, with its error; the old revision keeps serving.
    std::fs::write(
        policies.join("toolgate/broken.rego"),
        "package toolgate\nthis is not rego\n",
    )
    .unwrap();
    let refused = reload().await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let event = feed.take(1).await.remove(0);
    assert_eq!(event.data["extra"]["action"], "policy_reload");
    assert_eq!(event.data["extra"]["result"], "error");
    assert_eq!(event.data["extra"]["revision"], ok.json()["revision"]);
    assert!(event.data["extra"]["error"]
        .as_str()
        .unwrap()
        .contains("broken.rego"));
    proxy.stop().await;
}
