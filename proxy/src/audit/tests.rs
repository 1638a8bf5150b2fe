//! Tests of the audit log against real databases: SQLite in a temporary folder always, PostgreSQL when
//! `TOOLGATE_TEST_POSTGRES_URL` is set (each test in its own schema, dropped afterwards).

use std::collections::BTreeSet;

use serde_json::json;
use toolgate_engine::chain::{verify, AuditEvent, ChainHead, EventDraft};

use super::test_db::{on_both, run, Kind, TestDb};
use super::*;

impl TestDb {
    fn key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.key")
    }
}

fn settings(db: &TestDb, chain_id: &str) -> AuditSettings {
    AuditSettings {
        signing_key_file: Some(db.key_file()),
        checkpoint_dir: Some(db.dir.path().join("checkpoints")),
        database_url: db.url.clone(),
        chain_id: Some(chain_id.to_owned()),
        batch_max: 64,
        queue_capacity: 1024,
        durability: Durability::Full,
        ..AuditSettings::default()
    }
}

fn draft(agent: &str, tool: &str, result: &str) -> EventDraft {
    EventDraft {
        event_type: "tool_call".to_owned(),
        agent_id: Some(agent.to_owned()),
        tool_name: Some(tool.to_owned()),
        policy_result: Some(result.to_owned()),
        dlp_findings: json!([{"type": "email", "severity": "low", "path": "/to", "count": 1}]),
        extra: json!({"note": "unicode é ✓", "n": 3}),
        ..EventDraft::default()
    }
}

fn timed(second: u32) -> EventDraft {
    EventDraft {
        timestamp: format!("2026-01-01T00:00:{second:02}.000000Z"),
        ..draft("a1", "read_file", "allow")
    }
}

/// Polls `done` until it holds, failing with `what` after 10 s: for what the writer does in the background.
async fn until<Fut: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> Fut) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `days` events dated one a day from 2020-01-01: long past any retention.
fn long_past(days: u32) -> Vec<EventDraft> {
    (1..=days)
        .map(|day| EventDraft {
            timestamp: format!("2020-01-{day:02}T12:00:00.000000Z"),
            ..draft("a1", "old", "allow")
        })
        .collect()
}

async fn open(db: &TestDb, chain_id: &str) -> AuditLog {
    AuditLog::open(&settings(db, chain_id), AuditMetrics::unregistered())
        .await
        .unwrap()
}

async fn append_all(log: &AuditLog, drafts: impl IntoIterator<Item = EventDraft>) -> Vec<Durable> {
    let mut acks = Vec::new();
    for d in drafts {
        acks.push(log.append(d).await.unwrap());
    }
    acks
}

async fn all_events(store: &AuditStore) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    store
        .export(ExportFormat::Ndjson, None, None, &mut out)
        .await
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

on_both!(concurrent_appends_are_gap_free);
async fn concurrent_appends_are_gap_free(db: TestDb) {
    let metrics = AuditMetrics::unregistered();
    let log = AuditLog::open(&settings(&db, "c1"), metrics.clone())
        .await
        .unwrap();
    let mut feed = log.subscribe();
    let mut tasks = Vec::new();
    for t in 0..20 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..25 {
                acks.push(
                    log.append(draft(&format!("agent{t}"), &format!("tool{i}"), "allow"))
                        .await
                        .unwrap(),
                );
            }
            acks
        }));
    }
    let mut seqs = BTreeSet::new();
    for task in tasks {
        for ack in task.await.unwrap() {
            assert_eq!(ack.event_hash().len(), 64);
            assert!(
                seqs.insert(ack.seq()),
                "seq {} acknowledged twice",
                ack.seq()
            );
        }
    }
    assert_eq!(seqs, (1..=500).collect::<BTreeSet<i64>>());
    // Group commit: concurrent appends share transactions.
    assert!(metrics.write_duration.get_sample_count() < 500);

    // The live feed sees every committed event once, in chain order.
    for expected in 1..=500 {
        assert_eq!(feed.recv().await.unwrap().seq, expected);
    }

    let result = log.store().verify(None, None).await.unwrap();
    assert_eq!(result.events_verified, 500);
    assert!(result.chain_intact, "{result:?}");
    assert_eq!(result.first_bad_row, None);
    log.close().await;
}

on_both!(writer_stamps_id_and_timestamp);
async fn writer_stamps_id_and_timestamp(db: TestDb) {
    let log = open(&db, "stamp").await;
    let ack = log.append(draft("a1", "echo", "allow")).await.unwrap();
    let given = log
        .append(EventDraft {
            id: "given-id".to_owned(),
            timestamp: "2026-11-22T20:15:00.123456Z".to_owned(),
            ..draft("a1", "echo", "allow")
        })
        .await
        .unwrap();
    assert_eq!(given.id(), "given-id");

    let events = all_events(log.store()).await;
    let stamped = &events[0];
    assert_eq!(stamped.id, ack.id());
    assert_eq!(
        uuid::Uuid::parse_str(&stamped.id)
            .unwrap()
            .get_version_num(),
        7
    );
    let ts = &stamped.timestamp;
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok()
    );
    assert!(ts.ends_with('Z'));
    assert_eq!(events[1].timestamp, "2026-11-22T20:15:00.123456Z");
    // JSON columns come back as JSON values, exactly as hashed.
    assert_eq!(stamped.extra, json!({"note": "unicode é ✓", "n": 3}));
    assert_eq!(stamped.dlp_findings[0]["type"], "email");
    log.close().await;
}

on_both!(restart_continues_the_chain);
async fn restart_continues_the_chain(db: TestDb) {
    let log = open(&db, "r1").await;
    append_all(&log, (0..3).map(|_| draft("a1", "echo", "allow"))).await;
    log.close().await;
    assert!(matches!(
        log.append(draft("a1", "echo", "allow")).await,
        Err(AuditError::Closed)
    ));

    let log = open(&db, "r1").await;
    let ack = log.append(draft("a1", "echo", "allow")).await.unwrap();
    assert_eq!(ack.seq(), 4);
    // A second chain in the same database starts at its own genesis.
    let other = open(&db, "r2").await;
    assert_eq!(
        other
            .append(draft("a1", "echo", "allow"))
            .await
            .unwrap()
            .seq(),
        1
    );

    let result = log.store().verify(None, None).await.unwrap();
    assert_eq!(result.events_verified, 5);
    assert!(result.chain_intact, "{result:?}");
    log.close().await;
    other.close().await;
}

on_both!(close_commits_what_is_queued);
async fn close_commits_what_is_queued(db: TestDb) {
    let log = open(&db, "q1").await;
    let pending: Vec<_> = (0..50)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move { log.append(draft("a1", "echo", "allow")).await })
        })
        .collect();
    // Let the appends reach the queue before closing.
    tokio::task::yield_now().await;
    log.close().await;
    let mut committed = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => committed += 1,
            Err(AuditError::Closed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Whatever was acknowledged is stored, and nothing else.
    assert_eq!(all_events(log.store()).await.len(), committed);
}

/// Five events, then `tamper`, then verify must report `expect_seq` (and, when given, that row's id).
async fn tamper_case(
    db: &TestDb,
    chain: &str,
    tamper: &[&str],
    expect_seq: i64,
    expect_id_of_seq: Option<i64>,
) {
    let log = open(db, chain).await;
    let acks = append_all(
        &log,
        (0..5).map(|i| draft("a1", &format!("tool{i}"), "allow")),
    )
    .await;
    let intact = log.store().verify(None, None).await.unwrap();
    assert!(intact.chain_intact);
    for sql in tamper {
        log.store().execute_raw(sql).await.unwrap();
    }
    let result = log.store().verify(None, None).await.unwrap();
    assert!(!result.chain_intact, "tampering went unnoticed: {tamper:?}");
    let bad = result.first_bad_row.expect("a bad row");
    assert_eq!(bad.seq, expect_seq, "{bad:?}");
    assert_eq!(bad.chain_id, chain);
    assert!(!bad.reason.is_empty());
    if let Some(seq) = expect_id_of_seq {
        assert_eq!(bad.id, acks[(seq - 1) as usize].id(), "{bad:?}");
    }
    log.close().await;
}

on_both!(tamper_update_is_detected);
async fn tamper_update_is_detected(db: TestDb) {
    tamper_case(
        &db,
        "t",
        &["UPDATE audit_events SET tool_name = 'rm' WHERE seq = 3"],
        3,
        Some(3),
    )
    .await;
}

on_both!(tamper_json_update_is_detected);
async fn tamper_json_update_is_detected(db: TestDb) {
    let sql = match db.kind {
        Kind::Sqlite => "UPDATE audit_events SET dlp_findings = 'not json' WHERE seq = 2",
        Kind::Postgres => "UPDATE audit_events SET dlp_findings = '[]'::jsonb WHERE seq = 2",
    };
    tamper_case(&db, "t", &[sql], 2, Some(2)).await;
}

on_both!(tamper_delete_is_detected);
async fn tamper_delete_is_detected(db: TestDb) {
    // The row after the hole no longer follows its predecessor.
    tamper_case(
        &db,
        "t",
        &["DELETE FROM audit_events WHERE seq = 3"],
        4,
        Some(4),
    )
    .await;
}

on_both!(tamper_delete_first_is_detected);
async fn tamper_delete_first_is_detected(db: TestDb) {
    tamper_case(
        &db,
        "t",
        &["DELETE FROM audit_events WHERE seq = 1"],
        2,
        Some(2),
    )
    .await;
}

on_both!(tamper_insert_is_detected);
async fn tamper_insert_is_detected(db: TestDb) {
    // PostgreSQL also has the partition key `ts`.
    let ts = if db.kind == Kind::Postgres {
        ", ts"
    } else {
        ""
    };
    let forge = |id: &str, chain: &str| {
        format!("INSERT INTO audit_events (id, chain_id, seq, \"timestamp\", event_type, agent_id, session_id, \
        tenant_id, workflow_id, requester_id, tool_name, mcp_server, action, target, input_hash, policy_result, \
        policy_id, policy_reason, behavioral_score, dlp_findings, dlp_action, response_code, latency_us, error, \
        trace_id, extra, previous_hash, event_hash{ts}) \
        SELECT '{id}', chain_id, 6, \"timestamp\", event_type, agent_id, session_id, tenant_id, workflow_id, \
        requester_id, 'run_shell', mcp_server, action, target, input_hash, policy_result, policy_id, \
        policy_reason, behavioral_score, dlp_findings, dlp_action, response_code, latency_us, error, trace_id, \
        extra, previous_hash, event_hash{ts} FROM audit_events WHERE chain_id = '{chain}' AND seq = 5")
    };
    if db.kind == Kind::Sqlite {
        // The SQLite triggers refuse a row that does not extend the chain; an attacker with write access to
        // the file drops them first. verify must still catch the row.
        let refused = log_with_rows(&db, "t0", 5).await;
        let err = refused.store().execute_raw(&forge("forged0", "t0")).await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.to_string().contains("does not extend")),
            "{err:?}"
        );
        refused.close().await;
        tamper_case(
            &db,
            "t",
            &[
                "DROP TRIGGER audit_events_extend_chain",
                "DROP TRIGGER audit_events_move_head",
                &forge("forged", "t"),
            ],
            6,
            None,
        )
        .await;
    } else {
        tamper_case(&db, "t", &[&forge("forged", "t")], 6, None).await;
    }
}

async fn log_with_rows(db: &TestDb, chain: &str, n: usize) -> AuditLog {
    let log = open(db, chain).await;
    append_all(
        &log,
        (0..n).map(|i| draft("a1", &format!("tool{i}"), "allow")),
    )
    .await;
    log
}

on_both!(a_batch_larger_than_one_statement_is_stored_whole);
async fn a_batch_larger_than_one_statement_is_stored_whole(db: TestDb) {
    // SQLite holds at most 1 024 rows in one padded statement, so 1 500 take two statements in a
    // transaction; PostgreSQL splits them by its own parameter limit.
    let store = AuditStore::connect(&db.url).await.unwrap();
    let mut head = ChainHead::genesis("big");
    store.init_chain(&head).await.unwrap();
    let events: Vec<AuditEvent> = (0..1500)
        .map(|i| {
            head.seal(EventDraft {
                id: uuid::Uuid::now_v7().to_string(),
                timestamp: format!("2026-01-01T00:00:00.{i:06}Z"),
                ..draft("a1", &format!("tool{i}"), "allow")
            })
        })
        .collect();
    store
        .insert_batch(&events, &ChainHead::genesis("big"))
        .await
        .unwrap();
    let result = store.verify(None, None).await.unwrap();
    assert!(result.chain_intact, "{result:?}");
    assert_eq!(result.events_verified, 1500);
    let (stored, _) = store.load_head("big").await.unwrap();
    assert_eq!(stored.seq, 1500);
    assert_eq!(stored.hash, head.hash);
}

on_both!(tamper_swap_is_detected);
async fn tamper_swap_is_detected(db: TestDb) {
    // Through a spare seq, since (chain_id, seq) is unique. Position 2 now holds the old third event.
    tamper_case(
        &db,
        "t",
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = -1",
        ],
        2,
        Some(3),
    )
    .await;
}

on_both!(verify_a_range);
async fn verify_a_range(db: TestDb) {
    let log = open(&db, "range").await;
    append_all(&log, (1..=10).map(timed)).await;
    let store = log.store();

    let part = store
        .verify(Some("2026-01-01T00:00:03Z"), Some("2026-01-01T00:00:06Z"))
        .await
        .unwrap();
    assert_eq!(
        (part.events_verified, part.chain_intact),
        (4, true),
        "{part:?}"
    );
    let open_end = store
        .verify(Some("2026-01-01T00:00:08Z"), None)
        .await
        .unwrap();
    assert_eq!((open_end.events_verified, open_end.chain_intact), (3, true));

    // Damage before the range: the range still verifies against its anchor, the whole log does not.
    store
        .execute_raw("UPDATE audit_events SET agent_id = 'x' WHERE seq = 1")
        .await
        .unwrap();
    let part = store
        .verify(Some("2026-01-01T00:00:03Z"), Some("2026-01-01T00:00:06Z"))
        .await
        .unwrap();
    assert!(part.chain_intact, "{part:?}");
    assert_eq!(
        store
            .verify(None, None)
            .await
            .unwrap()
            .first_bad_row
            .unwrap()
            .seq,
        1
    );

    // Deleting the range's first row leaves a gap against the anchor.
    store
        .execute_raw("DELETE FROM audit_events WHERE seq = 3")
        .await
        .unwrap();
    let part = store
        .verify(Some("2026-01-01T00:00:03Z"), Some("2026-01-01T00:00:06Z"))
        .await
        .unwrap();
    assert!(!part.chain_intact);
    assert_eq!(part.first_bad_row.unwrap().seq, 4);

    assert!(matches!(
        store.verify(Some("not a time"), None).await,
        Err(AuditError::BadRange(_))
    ));
    log.close().await;
}

on_both!(exports_reverify);
async fn exports_reverify(db: TestDb) {
    let log = open(&db, "x").await;
    append_all(
        &log,
        (0..7).map(|i| draft("a1", &format!("tool{i}"), "allow")),
    )
    .await;
    let store = log.store();

    let mut ndjson = Vec::new();
    assert_eq!(
        store
            .export(ExportFormat::Ndjson, None, None, &mut ndjson)
            .await
            .unwrap(),
        7
    );
    let text = String::from_utf8(ndjson).unwrap();
    let events: Vec<AuditEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 7);
    let report = verify(&events);
    assert!(
        report.chain_intact && report.events_verified == 7,
        "{report:?}"
    );
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(line["previous_hash"].is_string() && line["event_hash"].is_string());

    let mut array = Vec::new();
    store
        .export(ExportFormat::Json, None, None, &mut array)
        .await
        .unwrap();
    let array: Vec<AuditEvent> = serde_json::from_slice(&array).unwrap();
    assert_eq!(array, events);

    let mut empty = Vec::new();
    let n = store
        .export(
            ExportFormat::Json,
            Some("2000-01-01T00:00:00Z"),
            Some("2000-01-02T00:00:00Z"),
            &mut empty,
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        serde_json::from_slice::<Vec<AuditEvent>>(&empty).unwrap(),
        vec![]
    );
    log.close().await;
}

on_both!(csv_export_guards_formulas);
async fn csv_export_guards_formulas(db: TestDb) {
    let log = open(&db, "csv").await;
    log.append(EventDraft {
        target: Some("=HYPERLINK(\"http://evil\",\"x\")".to_owned()),
        error: Some("@SUM(1+1)".to_owned()),
        ..draft("a1", "read_file", "allow")
    })
    .await
    .unwrap();
    let mut out = Vec::new();
    log.store()
        .export(ExportFormat::Csv, None, None, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.split("\r\n");
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("id,chain_id,seq,timestamp,event_type,agent_id,"),
        "{header}"
    );
    assert!(
        header.ends_with(",extra,previous_hash,event_hash"),
        "{header}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\","),
        "{row}"
    );
    assert!(row.contains(",'@SUM(1+1),"), "{row}");
    assert!(!row.contains(",=") && !row.contains(",@"), "{row}");
    log.close().await;
}

on_both!(query_filters_and_pages);
async fn query_filters_and_pages(db: TestDb) {
    let log = open(&db, "q").await;
    let mut drafts = Vec::new();
    for i in 0..7 {
        let agent = if i % 2 == 0 { "a1" } else { "a2" };
        let result = if i % 3 == 0 { "deny" } else { "allow" };
        drafts.push(draft(
            agent,
            if i < 4 { "read_file" } else { "send_email" },
            result,
        ));
    }
    append_all(&log, drafts).await;
    let store = log.store();

    let all = store.query(&EventFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![7, 6, 5, 4, 3, 2, 1]
    );

    let a1 = EventFilter {
        agent_id: Some("a1".to_owned()),
        limit: Some(3),
        ..EventFilter::default()
    };
    let page1 = store.query(&a1).await.unwrap();
    assert_eq!(
        page1.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![7, 5, 3]
    );
    let page2 = store
        .query(&EventFilter {
            cursor: Some(cursor_after(page1.last().unwrap())),
            ..a1.clone()
        })
        .await
        .unwrap();
    assert_eq!(page2.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);

    let denied = EventFilter {
        policy_result: Some("deny".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(
        store
            .query(&denied)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![7, 4, 1]
    );
    let mail = EventFilter {
        tool_name: Some("send_email".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(store.query(&mail).await.unwrap().len(), 3);

    let later = EventFilter {
        start: Some(all[2].timestamp.clone()),
        ..EventFilter::default()
    };
    assert!(store
        .query(&later)
        .await
        .unwrap()
        .iter()
        .all(|e| e.timestamp >= all[2].timestamp));
    let none = EventFilter {
        end: Some("2000-01-01T00:00:00Z".to_owned()),
        ..EventFilter::default()
    };
    assert!(store.query(&none).await.unwrap().is_empty());

    let bad = EventFilter {
        cursor: Some("!!".to_owned()),
        ..EventFilter::default()
    };
    assert!(matches!(
        store.query(&bad).await,
        Err(AuditError::BadCursor)
    ));
    assert_eq!(
        EventFilter {
            limit: Some(5000),
            ..EventFilter::default()
        }
        .effective_limit(),
        1000
    );
    assert!(store.ping().await);
    log.close().await;
}

on_both!(failed_commit_fails_closed_and_the_chain_continues);
async fn failed_commit_fails_closed_and_the_chain_continues(db: TestDb) {
    let metrics = AuditMetrics::unregistered();
    let log = AuditLog::open(&settings(&db, "f"), metrics.clone())
        .await
        .unwrap();
    append_all(&log, (0..2).map(|_| draft("a1", "echo", "allow"))).await;

    let (block, unblock): (&[&str], &[&str]) = match db.kind {
        Kind::Sqlite => (
            &["CREATE TRIGGER audit_block BEFORE INSERT ON audit_events \
               BEGIN SELECT RAISE(ABORT, 'audit blocked'); END"],
            &["DROP TRIGGER audit_block"],
        ),
        Kind::Postgres => (
            &[
                "CREATE FUNCTION audit_block() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit blocked'; END $$",
                "CREATE TRIGGER audit_block BEFORE INSERT ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION audit_block()",
            ],
            &["DROP TRIGGER audit_block ON audit_events"],
        ),
    };
    for sql in block {
        log.store().execute_raw(sql).await.unwrap();
    }
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move { log.append(draft("a1", "echo", "allow")).await })
        })
        .collect();
    for w in waiters {
        match w.await.unwrap() {
            Err(e @ AuditError::Write(_)) => {
                assert!(e.to_string().starts_with("audit write failed"))
            }
            other => panic!("expected a write failure, got {other:?}"),
        }
    }
    assert_eq!(metrics.write_failures.get(), 5);

    for sql in unblock {
        log.store().execute_raw(sql).await.unwrap();
    }
    let next = log.append(draft("a1", "echo", "allow")).await.unwrap();
    assert_eq!(next.seq(), 3, "the failed batch must not use up seqs");
    let result = log.store().verify(None, None).await.unwrap();
    assert_eq!(
        (result.events_verified, result.chain_intact),
        (3, true),
        "{result:?}"
    );
    assert!(metrics.write_duration.get_sample_count() >= 3);
    log.close().await;
}

#[tokio::test]
async fn verify_result_serialises_to_the_contract() {
    let result = VerifyResult {
        events_verified: 3,
        chain_intact: true,
        first_bad_row: None,
        duration_ms: 1,
    };
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"events_verified": 3, "chain_intact": true, "first_bad_row": null, "duration_ms": 1})
    );
}

/// The readers' page cache is small (their caches grew through a long SIEM outage and stayed), the writer's is
/// SQLite's default: each connection is set as its own pool says, not one for all.
#[tokio::test]
async fn sqlite_readers_keep_a_smaller_page_cache_than_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cache.db").display());
    let store = AuditStore::connect(&url).await.unwrap();
    assert_eq!(store.sqlite_cache_sizes().await, Some((-512, -2048)));
}

#[tokio::test]
async fn unknown_url_scheme_is_rejected() {
    assert!(matches!(
        AuditStore::connect("mysql://127.0.0.1/x").await,
        Err(AuditError::UnsupportedUrl)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_and_export() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let db = TestDb {
        kind: Kind::Sqlite,
        url: url.clone(),
        dir: dir.clone(),
    };
    let log = open(&db, "cli").await;
    append_all(&log, (0..3).map(|_| draft("a1", "echo", "allow"))).await;
    log.close().await;

    let settings = settings(&db, "cli");
    assert!(cli::verify_command(&settings, None, None, None)
        .await
        .unwrap());
    let file = dir.path().join("out.ndjson");
    let manifest = dir.path().join("out.manifest.json");
    cli::export_command(
        &settings,
        ExportFormat::Ndjson,
        None,
        None,
        Some(&file),
        Some(&manifest),
    )
    .await
    .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(String::from_utf8_lossy(&bytes).lines().count(), 3);
    let manifest: export::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(manifest.events, 3);
    assert_eq!(
        manifest.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    // The shutdown checkpoint of the chain, signed by the configured key.
    assert_eq!(manifest.checkpoints.len(), 1);
    assert_eq!(manifest.checkpoints[0].checkpoint.seq, 3);
    let url = &url;

    AuditStore::connect(url)
        .await
        .unwrap()
        .execute_raw("UPDATE audit_events SET target = '/etc/passwd' WHERE seq = 2")
        .await
        .unwrap();
    assert!(!cli::verify_command(&settings, None, None, None)
        .await
        .unwrap());
}

mod hash_lookup;
mod hold;
mod scale;
mod stored;
mod write_lane;
