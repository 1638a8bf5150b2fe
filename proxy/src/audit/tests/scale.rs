//! Tests of checkpoints, retention, several chains, public verify, stats and export manifests, on SQLite and
//! (when configured) PostgreSQL.

use super::*;
use crate::audit::checkpoint::{read_file, CheckpointKind};

on_both!(cut_tail_is_caught_by_the_newest_checkpoint);
async fn cut_tail_is_caught_by_the_newest_checkpoint(db: TestDb) {
    let log = open(&db, "tail").await;
    let acks = append_all(&log, (0..5).map(|i| draft("a1", &format!("t{i}"), "allow"))).await;
    log.checkpoint().await.unwrap();
    let checkpoint = log
        .store()
        .newest_checkpoint("tail", CheckpointKind::Head)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!((checkpoint.seq, checkpoint.count), (5, 5));
    assert_eq!(checkpoint.head_hash, acks[4].event_hash());
    // The folder sink holds the same checkpoint.
    let external = read_file(&db.dir.path().join("checkpoints/tail-latest.json")).unwrap();
    assert_eq!(external.checkpoint, checkpoint);
    assert!(log.store().verify(None, None).await.unwrap().chain_intact);

    // Cutting the tail leaves a valid, shorter chain: only the checkpoint shows it.
    log.store()
        .execute_raw("DELETE FROM audit_events WHERE chain_id = 'tail' AND seq >= 4")
        .await
        .unwrap();
    let result = log.store().verify(None, None).await.unwrap();
    assert!(!result.chain_intact);
    let bad = result.first_bad_row.unwrap();
    assert_eq!((bad.chain_id.as_str(), bad.seq), ("tail", 5));
    assert!(bad.reason.contains("rows deleted from the tail"), "{bad:?}");
    assert_eq!(bad.id, acks[2].id());
    // A tenant's admin (these rows are of no tenant) is told the same of the chain, without the last row's id.
    let seen = log
        .store()
        .verify_for_tenant(None, None, "t1")
        .await
        .unwrap();
    assert_eq!((seen.chain_intact, seen.events_verified), (false, 0));
    let masked = seen.first_bad_row.unwrap();
    assert_eq!((masked.chain_id.as_str(), masked.seq), ("tail", 5));
    assert_eq!(
        (masked.id.as_str(), masked.reason.as_str()),
        ("", bad.reason.as_str())
    );

    // An attacker who also deletes the checkpoints in the database is caught by the copy kept outside it.
    log.store()
        .execute_raw("DELETE FROM audit_checkpoints")
        .await
        .unwrap();
    assert!(log.store().verify(None, None).await.unwrap().chain_intact);
    let result = log
        .store()
        .verify_against(None, None, std::slice::from_ref(&external))
        .await
        .unwrap();
    assert!(!result.chain_intact);
    assert_eq!(result.first_bad_row.unwrap().seq, 5);

    // A forged checkpoint (signed by another key) is refused, not trusted.
    let forged = checkpoint::Signer::from_seed([9; 32]).sign(external.checkpoint.clone());
    assert!(matches!(
        log.store().verify_against(None, None, &[forged]).await,
        Err(AuditError::Checkpoint(_))
    ));
    log.close().await;
}

on_both!(rewritten_head_differs_from_the_checkpoint);
async fn rewritten_head_differs_from_the_checkpoint(db: TestDb) {
    let log = open(&db, "rw").await;
    append_all(&log, (0..3).map(|_| draft("a1", "echo", "allow"))).await;
    log.close().await;
    // Delete the last row and reseal a different one in its place: the chain itself is valid again.
    log.store()
        .execute_raw("DELETE FROM audit_events WHERE seq = 3")
        .await
        .unwrap();
    let log = open(&db, "rw").await;
    let ack = log.append(draft("a1", "other", "deny")).await.unwrap();
    assert_eq!(ack.seq(), 3);
    let result = log.store().verify(None, None).await.unwrap();
    assert!(!result.chain_intact);
    let bad = result.first_bad_row.unwrap();
    assert_eq!(bad.seq, 3);
    assert!(bad.reason.contains("chain was rewritten"), "{bad:?}");
    log.close().await;
}

on_both!(shutdown_signs_a_checkpoint_once);
async fn shutdown_signs_a_checkpoint_once(db: TestDb) {
    let log = open(&db, "sd").await;
    append_all(&log, (0..2).map(|_| draft("a1", "echo", "allow"))).await;
    log.close().await;
    let store = log.store();
    let cp = store
        .newest_checkpoint("sd", CheckpointKind::Head)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.seq, 2);
    let files = || -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(db.dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    };
    let before = files();
    assert!(
        before.contains(&"sd-head-00000000000000000002.json".to_owned()),
        "{before:?}"
    );
    assert!(before.contains(&"sd-latest.json".to_owned()), "{before:?}");
    // Reopening without new events signs nothing new.
    let log = open(&db, "sd").await;
    log.close().await;
    assert_eq!(files(), before);
}

on_both!(two_instances_share_one_database);
async fn two_instances_share_one_database(db: TestDb) {
    let a = open(&db, "inst-a").await;
    let b = open(&db, "inst-b").await;
    let mut tasks = Vec::new();
    for log in [a.clone(), b.clone()] {
        for t in 0..4 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    log.append(draft(&format!("agent{t}"), &format!("tool{i}"), "allow"))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    a.close().await;
    b.close().await;
    let result = a.store().verify(None, None).await.unwrap();
    assert_eq!(result.events_verified, 400);
    assert!(result.chain_intact, "{result:?}");
    for chain in ["inst-a", "inst-b"] {
        let cp = a
            .store()
            .newest_checkpoint(chain, CheckpointKind::Head)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cp.seq, 200);
    }
}

on_both!(a_second_writer_on_one_chain_fails_closed);
async fn a_second_writer_on_one_chain_fails_closed(db: TestDb) {
    let first = open(&db, "dup").await;
    first.append(draft("a1", "echo", "allow")).await.unwrap();
    let second = if db.kind == Kind::Postgres {
        // A live writer holds its chain: a second one is refused at start, before it reads the head...
        let refused = AuditLog::open(&settings(&db, "dup"), AuditMetrics::unregistered()).await;
        match refused {
            Err(e @ AuditError::ChainHeld(_)) => {
                assert!(e.to_string().contains("audit.chain_id"), "{e}")
            }
            Err(e) => panic!("expected ChainHeld, got {e}"),
            Ok(_) => panic!("a second writer on a held chain was opened"),
        }
        // ...another chain id is not, and neither is this one in another schema (tested by every other case
        // running at once on its own schema with the same chain ids). The backstop still holds when the lock
        // is lost: another writer's row moves the stored head under the first.
        open(&db, "dup-other").await.close().await;
        let raw = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query(
            "UPDATE audit_chains SET head_seq = head_seq + 1, head_hash = repeat('f', 64) WHERE chain_id = 'dup'",
        )
        .execute(&raw)
        .await
        .unwrap();
        None
    } else {
        let second = open(&db, "dup").await;
        second.append(draft("a1", "echo", "allow")).await.unwrap();
        Some(second)
    };
    // The first writer's head is stale now: it must refuse rather than fork the chain.
    match first.append(draft("a1", "echo", "allow")).await {
        Err(e @ AuditError::Write(_)) => assert!(e.to_string().contains("another writer"), "{e}"),
        other => panic!("expected a write failure, got {other:?}"),
    }
    if let Some(second) = second {
        let result = first.store().verify(None, None).await.unwrap();
        assert!(result.chain_intact, "{result:?}");
        assert_eq!(result.events_verified, 2);
        second.close().await;
    }
    first.close().await;
}

/// The lock is released when its writer closes (and when its process dies: the connection goes with it, see
/// `proxy/tests/chain_lock.rs`), so a restart with the same chain id continues the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_writer_releases_its_chain() {
    run(Kind::Postgres, |db: TestDb| async move {
        let first = open(&db, "restart").await;
        first.append(draft("a1", "echo", "allow")).await.unwrap();
        first.close().await;
        let again = open(&db, "restart").await;
        let ack = again.append(draft("a1", "echo", "allow")).await.unwrap();
        assert_eq!(ack.seq(), 2);
        again.close().await;
    })
    .await;
}

on_both!(retention_prunes_behind_a_signed_checkpoint);
async fn retention_prunes_behind_a_signed_checkpoint(db: TestDb) {
    let log = open(&db, "ret").await;
    append_all(&log, long_past(3)).await;
    let recent = append_all(&log, (0..2).map(|_| draft("a1", "new", "allow"))).await;
    assert_eq!(log.prune().await.unwrap(), Some(3));
    // Nothing more to prune.
    assert_eq!(log.prune().await.unwrap(), None);

    let events = all_events(log.store()).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    let pruned = log
        .store()
        .newest_checkpoint("ret", CheckpointKind::Pruned)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pruned.seq, 3);
    assert!(db
        .dir
        .path()
        .join("checkpoints/ret-pruned-00000000000000000003.json")
        .exists());
    let result = log.store().verify(None, None).await.unwrap();
    assert!(result.chain_intact, "{result:?}");
    assert_eq!(result.events_verified, 2);
    if db.kind == Kind::Postgres {
        let gone: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('audit_events_20200101')::text")
                .fetch_one(&sqlx::PgPool::connect(&db.url).await.unwrap())
                .await
                .unwrap();
        assert_eq!(gone, None, "the old day's partition is dropped");
    }
    // The chain continues after pruning, and the first kept row is still anchored.
    let next = log.append(draft("a1", "new", "allow")).await.unwrap();
    assert_eq!(next.seq(), 6);
    log.store()
        .execute_raw(&format!(
            "UPDATE audit_events SET previous_hash = '{}' WHERE seq = 4",
            recent[1].event_hash()
        ))
        .await
        .unwrap();
    let result = log.store().verify(None, None).await.unwrap();
    assert!(!result.chain_intact);
    assert_eq!(result.first_bad_row.unwrap().seq, 4);
    log.close().await;
}

on_both!(retention_by_tenant_keeps_each_tenant_its_days_and_prunes_by_prefix);
/// `audit.retention_days_by_tenant`: an event is kept while its tenant's retention says so, and pruning never
/// cuts a chain past such an event, so what is left still verifies.
async fn retention_by_tenant_keeps_each_tenant_its_days_and_prunes_by_prefix(db: TestDb) {
    let settings = AuditSettings {
        retention_days: 90,
        retention_days_by_tenant: [("short".to_owned(), 1), ("long".to_owned(), 3650)].into(),
        ..settings(&db, "tret")
    };
    let log = AuditLog::open(&settings, AuditMetrics::unregistered())
        .await
        .unwrap();
    let ago = |days: i64| {
        crate::audit::timestamp::format(
            time::OffsetDateTime::now_utc() - time::Duration::days(days),
        )
    };
    let event = |tenant: Option<&str>, stamped: String| EventDraft {
        tenant_id: tenant.map(str::to_owned),
        timestamp: stamped,
        ..draft("a1", "echo", "allow")
    };
    append_all(
        &log,
        [
            // Past its tenant's day, and past the default for no tenant: both go.
            event(Some("short"), "2020-01-01T12:00:00.000000Z".to_owned()),
            event(None, "2020-01-02T12:00:00.000000Z".to_owned()),
            // Within ten years: kept, and with it everything after it.
            event(Some("long"), ago(400)),
            // Past "short"'s day but after a kept event: kept until that one goes.
            event(Some("short"), ago(20)),
            event(Some("short"), ago(0)),
        ],
    )
    .await;
    assert_eq!(log.prune().await.unwrap(), Some(2));
    assert_eq!(log.prune().await.unwrap(), None);
    let events = all_events(log.store()).await;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let result = log.store().verify(None, None).await.unwrap();
    assert!(result.chain_intact, "{result:?}");
    log.close().await;

    // The same chain under a retention that no longer keeps "long" that long: the prefix moves on, and the
    // events of a tenant without a retention of its own follow the default.
    let settings = AuditSettings {
        retention_days: 10,
        retention_days_by_tenant: [("short".to_owned(), 0)].into(),
        ..settings
    };
    let log = AuditLog::open(&settings, AuditMetrics::unregistered())
        .await
        .unwrap();
    // "short" now keeps forever: seq 4 (20 days old) stays, and the prefix stops before it.
    assert_eq!(log.prune().await.unwrap(), Some(3));
    let events = all_events(log.store()).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert!(log.store().verify(None, None).await.unwrap().chain_intact);
    log.close().await;
}

on_both!(public_verify_says_found_and_intact_only);
async fn public_verify_says_found_and_intact_only(db: TestDb) {
    let log = open(&db, "pub").await;
    let acks = append_all(&log, (0..6).map(|_| draft("a1", "echo", "allow"))).await;
    log.checkpoint().await.unwrap();
    let verdict = log
        .store()
        .public_verify(acks[2].event_hash())
        .await
        .unwrap();
    assert!(verdict.found && verdict.chain_intact, "{verdict:?}");
    assert_eq!(verdict.timestamp.as_ref().map(String::len), Some(27));
    let json = serde_json::to_value(&verdict).unwrap();
    assert_eq!(
        json.as_object().unwrap().len(),
        3,
        "no event content: {json}"
    );

    let missing = log.store().public_verify(&"f".repeat(64)).await.unwrap();
    assert!(!missing.found && !missing.chain_intact);

    log.store()
        .execute_raw("UPDATE audit_events SET tool_name = 'rm' WHERE seq = 3")
        .await
        .unwrap();
    let verdict = log
        .store()
        .public_verify(acks[2].event_hash())
        .await
        .unwrap();
    assert!(verdict.found && !verdict.chain_intact, "{verdict:?}");
    log.close().await;
}

on_both!(public_verify_finds_a_hash_in_any_epoch);
async fn public_verify_finds_a_hash_in_any_epoch(db: TestDb) {
    // SQLite looks a hash up one epoch of 65 536 seqs at a time (migration 0012): one chain's events sit in
    // epoch 0, another's straddle epochs 1 and 2.
    let first = open(&db, "first").await;
    let early = append_all(&first, (0..2).map(|_| draft("a1", "echo", "allow"))).await;
    first.close().await;
    let late = open(&db, "late").await;
    let lifted = append_all(&late, (0..2).map(|_| draft("a1", "echo", "allow"))).await;
    late.close().await;
    // As if 131 069 events had come before them (the reopened log resumes after the highest stored seq).
    db.store()
        .await
        .execute_raw("UPDATE audit_events SET seq = seq + 131069 WHERE chain_id = 'late'")
        .await
        .unwrap();
    let late = open(&db, "late").await;
    let after = append_all(&late, (0..2).map(|_| draft("a1", "echo", "allow"))).await;
    assert_eq!(after[0].seq(), 131_072, "the first seq of epoch 2");
    for ack in early.iter().chain(&lifted).chain(&after) {
        let verdict = late.store().public_verify(ack.event_hash()).await.unwrap();
        assert!(
            verdict.found && verdict.timestamp.is_some(),
            "{} {verdict:?}",
            ack.seq()
        );
    }
    // A hash that shares its first 8 digits (the indexed prefix) with a stored one but not the rest is not found.
    let stored = after[1].event_hash();
    let near = format!(
        "{}{}",
        &stored[..63],
        if stored.ends_with('0') { '1' } else { '0' }
    );
    let verdict = late.store().public_verify(&near).await.unwrap();
    assert!(!verdict.found && verdict.timestamp.is_none(), "{verdict:?}");
    late.close().await;
}

on_both!(stats_count_by_result_agent_and_tool);
async fn stats_count_by_result_agent_and_tool(db: TestDb) {
    let log = open(&db, "st").await;
    let at = |minute: u32, agent: &str, tool: &str, result: &str| EventDraft {
        timestamp: format!("2026-03-01T10:{minute:02}:00.000000Z"),
        ..draft(agent, tool, result)
    };
    append_all(
        &log,
        [
            at(1, "a1", "read_file", "allow"),
            at(2, "a1", "read_file", "allow"),
            at(3, "a2", "delete", "deny"),
            at(59, "a2", "read_file", "allow"),
            // The outcome of the first call repeats its decision: an event, not another decision.
            EventDraft {
                event_type: "tool_result".to_owned(),
                ..at(1, "a1", "read_file", "allow")
            },
            EventDraft {
                event_type: "session_start".to_owned(),
                tool_name: None,
                policy_result: None,
                ..at(1, "a1", "read_file", "allow")
            },
        ],
    )
    .await;
    let hour = stats::stats(
        log.store(),
        Some("2026-03-01T00:00:00Z"),
        Some("2026-03-01T23:59:59Z"),
        stats::BucketWidth::Hour,
        None,
    )
    .await
    .unwrap();
    assert_eq!(hour.buckets.len(), 1);
    let b = &hour.buckets[0];
    assert_eq!(b.start, "2026-03-01T10:00:00Z");
    assert_eq!((b.total, b.decisions), (6, 4));
    assert_eq!(
        b.by_result,
        [("allow".to_owned(), 3), ("deny".to_owned(), 1)].into()
    );
    assert_eq!(
        b.by_agent,
        [("a1".to_owned(), 2), ("a2".to_owned(), 2)].into()
    );
    assert_eq!(
        b.by_tool,
        [("delete".to_owned(), 1), ("read_file".to_owned(), 3)].into()
    );
    let minute = stats::stats(
        log.store(),
        Some("2026-03-01T00:00:00Z"),
        None,
        stats::BucketWidth::Minute,
        None,
    )
    .await
    .unwrap();
    assert_eq!(minute.buckets.len(), 4);
    assert!(matches!(
        "week".parse::<stats::BucketWidth>(),
        Err(AuditError::BadBucket)
    ));
    log.close().await;
}

on_both!(export_manifest_is_reverified_offline);
async fn export_manifest_is_reverified_offline(db: TestDb) {
    let log = open(&db, "exp").await;
    append_all(
        &log,
        (0..20).map(|i| draft("a1", &format!("t{i}"), "allow")),
    )
    .await;
    log.close().await;
    let mut bytes = Vec::new();
    log.store()
        .export(ExportFormat::Ndjson, None, None, &mut bytes)
        .await
        .unwrap();
    let manifest = export::Manifest::compute(log.store(), ExportFormat::Ndjson, None, None)
        .await
        .unwrap();
    assert_eq!(manifest.events, 20);
    assert_eq!(
        manifest.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    let cp = &manifest.checkpoints[0];
    log.store().trusted_keys().verify(cp).unwrap();
    assert_eq!(cp.checkpoint.seq, 20);

    let file = db.dir.path().join("export.ndjson");
    std::fs::write(&file, &bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/verify-audit.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events_verified"], 20);
    assert_eq!(report["chain_intact"], true);
    // The offline verifier reaches the checkpoint's head.
    let last: AuditEvent =
        serde_json::from_str(String::from_utf8_lossy(&bytes).lines().last().unwrap()).unwrap();
    assert_eq!(last.event_hash, cp.checkpoint.head_hash);
}
