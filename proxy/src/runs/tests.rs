//! Runs against real databases (SQLite always, PostgreSQL when `TOOLGATE_TEST_POSTGRES_URL` is set), with the
//! clock in the test's hands: starts and ends take the time they are given, and the timeout is driven by
//! calling [`Runs::expire_due`] with a chosen `now`, never by sleeping.

use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::audit::test_db::{on_both, run, Kind, TestDb};
use crate::audit::{AuditMetrics, AuditSettings, EventFilter};

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

impl TestDb {
    /// One instance's runs (timeout `timeout_seconds`), writing to its own audit chain, no keeper running.
    async fn runs(&self, chain: &str, timeout_seconds: u64) -> (Runs, Arc<Metrics>) {
        let settings = AuditSettings {
            database_url: self.url.clone(),
            chain_id: Some(chain.to_owned()),
            signing_key_file: Some(self.dir.path().join(format!("{chain}.key"))),
            ..AuditSettings::default()
        };
        let audit = AuditLog::open(&settings, AuditMetrics::unregistered())
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new(10));
        let alerts = crate::alerts::Alerts::load(
            self.store().await,
            audit.clone(),
            metrics.alerts.clone(),
            metrics.audit_write_failures.clone(),
        )
        .await
        .map(Arc::new)
        .unwrap();
        let runs = Runs::new(
            self.store().await,
            audit,
            metrics.clone(),
            alerts,
            &RunsSettings {
                timeout_seconds,
                max_running_per_agent: 3,
            },
        );
        (runs, metrics)
    }
}

fn identity(tenant: Option<&str>, sub: &str) -> AgentIdentity {
    AgentIdentity {
        id: sub.into(),
        tenant_id: tenant.map(str::to_owned),
        roles: vec![],
        claims: json!({ "sub": sub, "requester": "carol" }),
        expires_at: u64::MAX,
    }
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

fn start_body(objective: &str) -> content::Start {
    content::start(
        &Scanner::new(),
        json!({ "objective": objective, "plan": ["a", "b"], "dry_run": true })
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn finish_body(body: serde_json::Value) -> content::Finish {
    content::finish(&Scanner::new(), body.to_string().as_bytes()).unwrap()
}

/// The committed events of `event_type`, oldest first.
async fn events(runs: &Runs, event_type: &str) -> Vec<serde_json::Value> {
    let page = runs
        .store
        .query(&EventFilter {
            limit: Some(1000),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let all = serde_json::to_value(page).unwrap();
    let all = all.get("events").cloned().unwrap_or(all);
    let mut found: Vec<serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .cloned()
        .collect();
    found.reverse();
    found
}

async fn a_run_lives_from_start_to_finish(db: TestDb) {
    let (runs, metrics) = db.runs("c1", 3600).await;
    let alice = identity(Some("t1"), "alice");
    let run_id = runs
        .start_at(&alice, start_body("ship it"), t0())
        .await
        .unwrap();
    assert!(is_run_id(&run_id), "{run_id}");

    for _ in 0..3 {
        assert_eq!(
            runs.attach(&alice, &run_id).await.unwrap(),
            Attachment::Run(Arc::from(run_id.as_str()))
        );
    }
    // Another agent, the same `sub` in another tenant, and an unknown id: refused alike, nothing counted.
    for other in [identity(Some("t1"), "bob"), identity(Some("t2"), "alice")] {
        assert_eq!(
            runs.attach(&other, &run_id).await.unwrap(),
            Attachment::Refused
        );
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        runs.attach(&alice, &unknown).await.unwrap(),
        Attachment::Refused
    );
    assert_eq!(
        runs.attach(&alice, "not a run").await.unwrap(),
        Attachment::Refused
    );

    let running = runs.get(&run_id).await.unwrap().unwrap();
    assert_eq!(running.status, "running");
    assert_eq!(
        running.calls, 3,
        "counted in memory, flushed before reading"
    );
    assert_eq!(running.requester_id.as_deref(), Some("carol"));
    assert_eq!(running.tenant_id.as_deref(), Some("t1"));
    assert_eq!(running.plan, json!(["a", "b"]));
    assert!(running.dry_run);

    // Only its agent finishes it; another is told it does not exist.
    let bob = identity(Some("t1"), "bob");
    assert!(matches!(
        runs.owned(&bob, &run_id).await,
        Err(RunError::NotFound)
    ));
    // Another instance on the same database reads the run from the table once, then counts in memory.
    let (other, _) = db.runs("c2", 3600).await;
    for _ in 0..2 {
        assert_eq!(
            other.attach(&alice, &run_id).await.unwrap(),
            Attachment::Run(Arc::from(run_id.as_str()))
        );
    }
    assert_eq!(
        other.attach(&bob, &run_id).await.unwrap(),
        Attachment::Refused
    );
    other.flush().await.unwrap();
    runs.attach(&alice, &run_id).await.unwrap();
    let row = runs.owned(&alice, &run_id).await.unwrap();
    let done = runs
        .finish_at(
            row,
            finish_body(json!({ "status": "succeeded", "artifacts": ["report.pdf"] })),
            t0() + Duration::from_millis(90_250),
        )
        .await
        .unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.duration_ms, Some(90_250));
    assert_eq!(
        done.calls, 6,
        "both instances' calls, the one counted here after the last flush going in with the end"
    );
    assert_eq!(done.artifacts, json!(["report.pdf"]));
    assert_eq!(
        done.finished_at.as_deref(),
        Some("2030-03-17T17:48:10.250000Z")
    );
    assert_eq!(runs.get(&run_id).await.unwrap().unwrap(), done);

    // Ended: attaches nothing more, and cannot be finished again.
    assert_eq!(
        runs.attach(&alice, &run_id).await.unwrap(),
        Attachment::Refused
    );
    assert!(matches!(
        runs.owned(&alice, &run_id).await,
        Err(RunError::AlreadyEnded(s)) if s == "succeeded"
    ));

    let started = events(&runs, "run_start").await;
    let finished = events(&runs, "run_finish").await;
    assert_eq!((started.len(), finished.len()), (1, 1));
    assert_eq!(started[0]["workflow_id"], run_id.as_str());
    assert_eq!(started[0]["requester_id"], "carol");
    assert_eq!(started[0]["extra"]["dry_run"], true);
    assert_eq!(finished[0]["workflow_id"], run_id.as_str());
    assert_eq!(finished[0]["extra"]["status"], "succeeded");
    assert_eq!(finished[0]["extra"]["duration_ms"], 90_250);
    assert_eq!(finished[0]["extra"]["calls"], 6);
    // The other instance forgets the run ended here.
    other.forget_ended_elsewhere().await.unwrap();
    assert_eq!(
        other.attach(&alice, &run_id).await.unwrap(),
        Attachment::Refused
    );

    let text = metrics.render();
    assert!(
        text.contains(r#"toolgate_agent_runs_total{agent_id="alice",status="succeeded"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"toolgate_agent_run_duration_seconds_bucket{agent_id="alice",le="120"} 1"#)
            && text.contains(
                r#"toolgate_agent_run_duration_seconds_bucket{agent_id="alice",le="60"} 0"#
            ),
        "{text}"
    );
}
on_both!(a_run_lives_from_start_to_finish);

async fn a_run_past_its_deadline_fails_as_timed_out(db: TestDb) {
    let (runs, metrics) = db.runs("c1", 60).await;
    let alice = identity(None, "alice");
    let late = runs
        .start_at(&alice, start_body("slow"), t0())
        .await
        .unwrap();
    let later = runs
        .start_at(&alice, start_body("slower"), t0() + Duration::from_secs(30))
        .await
        .unwrap();
    runs.attach(&alice, &late).await.unwrap();

    // Nothing is due a moment before the deadline.
    assert_eq!(
        runs.expire_due(t0() + Duration::from_millis(59_999))
            .await
            .unwrap(),
        0
    );
    // At the deadline plus a keeper tick, the first run ends; the second is not yet due.
    let now = t0() + Duration::from_millis(60_250);
    assert_eq!(runs.expire_due(now).await.unwrap(), 1);
    let timed_out = runs.get(&late).await.unwrap().unwrap();
    assert_eq!(timed_out.status, "failed");
    assert_eq!(timed_out.error.as_deref(), Some(TIMED_OUT));
    assert_eq!(timed_out.duration_ms, Some(60_250));
    assert_eq!(timed_out.calls, 1);
    assert_eq!(runs.get(&later).await.unwrap().unwrap().status, "running");
    // Expiring again ends nothing twice.
    assert_eq!(runs.expire_due(now).await.unwrap(), 0);

    let finished = events(&runs, "run_finish").await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["workflow_id"], late.as_str());
    assert_eq!(finished[0]["error"], TIMED_OUT);
    assert_eq!(finished[0]["extra"]["status"], "failed");
    assert!(metrics
        .render()
        .contains(r#"toolgate_agent_runs_total{agent_id="alice",status="failed"} 1"#));

    // A second instance on the same database: the run ended there is forgotten here, and only one ends it.
    let (other, _) = db.runs("c2", 60).await;
    runs.attach(&alice, &later).await.unwrap();
    let now = t0() + Duration::from_secs(91);
    assert_eq!(other.expire_due(now).await.unwrap(), 1);
    assert_eq!(runs.expire_due(now).await.unwrap(), 0);
    runs.forget_ended_elsewhere().await.unwrap();
    assert_eq!(
        runs.attach(&alice, &later).await.unwrap(),
        Attachment::Refused
    );
    let ended = runs.get(&later).await.unwrap().unwrap();
    assert_eq!(
        ended.calls, 1,
        "the call counted here before the other ended it is kept"
    );
    assert_eq!(
        events(&other, "run_finish").await.len(),
        2,
        "one event per run, both chains"
    );
}
on_both!(a_run_past_its_deadline_fails_as_timed_out);

/// The open `dlp_critical` alerts, once what was raised is stored.
async fn dlp_critical(runs: &Runs) -> Vec<crate::alerts::AlertView> {
    runs.alerts.store_raised().await.unwrap();
    let query = crate::alerts::ListQuery {
        status: Some(crate::alerts::Status::Open),
        kind: Some(crate::alerts::Kind::DlpCritical),
        ..Default::default()
    };
    runs.alerts.list(&query).await.unwrap().0
}

async fn what_dlp_flags_is_never_stored(db: TestDb) {
    let (runs, metrics) = db.runs("c1", 3600).await;
    let aws_found = || {
        metrics
            .dlp_findings
            .with_label_values(&["aws_access_key", "critical"])
            .get()
    };
    let alice = identity(Some("t1"), "alice");
    let run_id = runs
        .start_at(&alice, start_body(&format!("use {AWS}")), t0())
        .await
        .unwrap();
    // Judged like arguments: counted, and a critical finding opens dlp_critical for the run's agent.
    assert_eq!(aws_found(), 1);
    let opened = dlp_critical(&runs).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].agent_id.as_deref(), Some("alice"));
    assert_eq!(opened[0].tenant_id.as_deref(), Some("t1"));
    assert!(
        opened[0].detail.contains("objective or plan")
            && opened[0].detail.contains("aws_access_key"),
        "{}",
        opened[0].detail
    );
    runs.alerts
        .change(&opened[0].id, crate::alerts::Status::Acknowledged, "admin")
        .await
        .unwrap();
    let row = runs.owned(&alice, &run_id).await.unwrap();
    runs.finish_at(
        row,
        finish_body(json!({ "status": "failed", "error": format!("denied for {AWS}"), "artifacts": { "key": AWS } })),
        t0() + Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(aws_found(), 3);
    let opened = dlp_critical(&runs).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(
        opened[0]
            .detail
            .contains(&format!("artifacts or error of run {run_id}")),
        "{}",
        opened[0].detail
    );
    assert!(!format!("{opened:?}").contains(AWS));
    let stored = runs.store.run(&run_id).await.unwrap().unwrap();
    let text = format!("{stored:?}");
    assert!(!text.contains(AWS), "{text}");
    assert_eq!(stored.objective, "use [REDACTED:aws_access_key]");
    let view = runs.get(&run_id).await.unwrap().unwrap();
    let paths: Vec<&str> = view
        .dlp_findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/objective", "/artifacts/key", "/error"]);
    for event in [
        events(&runs, "run_start").await,
        events(&runs, "run_finish").await,
    ]
    .concat()
    {
        assert!(!event.to_string().contains(AWS), "{event}");
    }
    let finished = events(&runs, "run_finish").await;
    assert_eq!(finished[0]["extra"]["dlp_findings_count"], 3);
    assert_eq!(finished[0]["error"], "denied for [REDACTED:aws_access_key]");
}
on_both!(what_dlp_flags_is_never_stored);

async fn the_listing_filters_and_pages(db: TestDb) {
    let (runs, _) = db.runs("c1", 3600).await;
    let (alice, bob) = (identity(None, "alice"), identity(None, "bob"));
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        ids.push(
            runs.start_at(who, start_body("o"), t0() + Duration::from_secs(i))
                .await
                .unwrap(),
        );
    }
    let row = runs.owned(&alice, &ids[0]).await.unwrap();
    runs.finish_at(
        row,
        finish_body(json!({ "status": "canceled" })),
        t0() + Duration::from_secs(9),
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = runs
            .list(&ListQuery {
                limit: Some(2),
                cursor: cursor.clone(),
                ..ListQuery::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|r| r.run_id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (alices, _) = runs
        .list(&ListQuery {
            agent_id: Some("alice".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alices.len(), 3);
    let (canceled, _) = runs
        .list(&ListQuery {
            status: Some("canceled".into()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        canceled.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
        [&ids[0]]
    );
    assert!(matches!(
        runs.list(&ListQuery {
            cursor: Some("garbage".into()),
            ..ListQuery::default()
        })
        .await,
        Err(RunError::BadCursor)
    ));
}
on_both!(the_listing_filters_and_pages);

async fn an_agent_runs_at_most_its_cap_at_once(db: TestDb) {
    // The test instances allow 3 running runs per agent.
    let (runs, _) = db.runs("c1", 3600).await;
    let (alice, bob) = (identity(Some("t1"), "alice"), identity(Some("t1"), "bob"));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(runs.start_at(&alice, start_body("o"), t0()).await.unwrap());
    }
    assert!(matches!(
        runs.start_at(&alice, start_body("o"), t0()).await,
        Err(RunError::TooManyOfAgent(3))
    ));
    // Another agent has its own cap; an ended run frees a place.
    runs.start_at(&bob, start_body("o"), t0()).await.unwrap();
    let row = runs.owned(&alice, &ids[0]).await.unwrap();
    runs.finish_at(row, finish_body(json!({ "status": "succeeded" })), t0())
        .await
        .unwrap();
    runs.start_at(&alice, start_body("o"), t0()).await.unwrap();
    assert_eq!(
        events(&runs, "run_start").await.len(),
        5,
        "a refused start leaves no event"
    );
}
on_both!(an_agent_runs_at_most_its_cap_at_once);

#[test]
fn run_ids_are_never_taken_for_secrets() {
    // A run id is the `workflow_id` of every event of its run: redacting it would cut the run's events loose.
    for _ in 0..5000 {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        assert!(is_run_id(&id), "{id}");
        assert_eq!(crate::redaction::stored_text(id.clone()), id);
    }
    assert!(!is_run_id("run_0123"));
    assert!(!is_run_id(
        &uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
    ));
    assert!(!is_run_id(&uuid::Uuid::now_v7().hyphenated().to_string()));
}

#[test]
fn a_request_names_its_run_by_header_or_meta_and_never_both_differently() {
    let h = hyper::header::HeaderValue::from_static("run_a");
    let meta = |id: serde_json::Value| json!({ "_meta": { META_KEY: id } });
    assert_eq!(presented(None, None), Ok(None));
    assert_eq!(presented(Some(&h), None), Ok(Some("run_a")));
    assert_eq!(
        presented(None, Some(&meta(json!("run_b")))),
        Ok(Some("run_b"))
    );
    assert_eq!(
        presented(Some(&h), Some(&meta(json!("run_a")))),
        Ok(Some("run_a"))
    );
    assert_eq!(
        presented(Some(&h), Some(&meta(json!("run_b")))),
        Err(BadRunId)
    );
    assert_eq!(presented(None, Some(&meta(json!(7)))), Err(BadRunId));
}
