//! SQLite's lookup by hash, filled behind the writer (`store::hash_lookup`): events are found whether their keys
//! are in `audit_hash_lookup` yet or not, the writer catches up once commits stop, and retention drops entries.

use super::*;

/// Covered events are found through `audit_hash_lookup` (without it they are not: no lookup scans the log), the
/// events past a chain's cursor by reading them directly; a near miss is never found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_found_through_the_lookup_and_past_its_cursor() {
    run(Kind::Sqlite, |db| async move {
        let log = open(&db, "lookup").await;
        let acks = append_all(&log, (0..3).map(|_| draft("a1", "echo", "allow"))).await;
        let store = log.store();
        let found = |hash: String| {
            let store = store.clone();
            async move { store.public_verify(&hash).await.unwrap().found }
        };
        store.index_hashes().await.unwrap();
        assert_eq!(store.unindexed_hashes("lookup").await, 0);
        for ack in &acks {
            assert!(found(ack.event_hash().to_owned()).await, "{}", ack.seq());
        }
        let stored = acks[0].event_hash();
        let near = format!(
            "{}{}",
            &stored[..63],
            if stored.ends_with('0') { '1' } else { '0' }
        );
        assert!(!found(near).await);

        // Covered, but without its entries: the lookup does not fall back to scanning the log.
        store
            .execute_raw("DELETE FROM audit_hash_lookup")
            .await
            .unwrap();
        assert!(!found(acks[1].event_hash().to_owned()).await);
        // Past the cursor: read directly.
        store
            .execute_raw("UPDATE audit_hash_cursor SET covered = 1")
            .await
            .unwrap();
        assert!(!found(acks[0].event_hash().to_owned()).await);
        assert!(found(acks[1].event_hash().to_owned()).await);
        assert!(found(acks[2].event_hash().to_owned()).await);
        log.close().await;
    })
    .await;
}

/// The writer copies the keys of what it committed once commits stop, without being asked; a log reopened after
/// a crash covers what the last run left first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_covers_its_events_once_commits_stop() {
    run(Kind::Sqlite, |db| async move {
        let log = open(&db, "behind").await;
        let acks = append_all(&log, (0..5).map(|_| draft("a1", "echo", "allow"))).await;
        until("never covered", || async {
            log.store().unindexed_hashes("behind").await == 0
        })
        .await;
        // As if the process had died before covering its last events.
        log.store()
            .execute_raw("UPDATE audit_hash_cursor SET covered = 2")
            .await
            .unwrap();
        log.store()
            .execute_raw("DELETE FROM audit_hash_lookup WHERE seq > 2")
            .await
            .unwrap();
        log.close().await;
        let reopened = open(&db, "behind").await;
        let store = reopened.store();
        // Nothing is committed, so no rest comes: only the reopened writer's first catch-up covers seqs 3 to 5.
        until("not covered at reopening", || async {
            store.unindexed_hashes("behind").await == 0
        })
        .await;
        let more = append_all(&reopened, [draft("a1", "echo", "allow")]).await;
        for ack in acks.iter().chain(&more) {
            assert!(
                store.public_verify(ack.event_hash()).await.unwrap().found,
                "{}",
                ack.seq()
            );
        }
        reopened.close().await;
    })
    .await;
}

/// Retention drops the entries of every epoch before the oldest event any chain keeps; what it keeps is still
/// found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_the_entries_of_pruned_epochs() {
    run(Kind::Sqlite, |db| async move {
        let log = open(&db, "old").await;
        append_all(&log, long_past(3)).await;
        let recent = append_all(&log, (0..2).map(|_| draft("a1", "new", "allow"))).await;
        log.close().await;
        // As if 131 072 events had come first: the old events sit in epoch 2 and the lookup holds entries of
        // epochs 0 and 1 (of events already gone).
        let store = db.store().await;
        for sql in [
            "UPDATE audit_events SET seq = seq + 131072",
            "UPDATE audit_chains SET head_seq = head_seq + 131072",
            "DELETE FROM audit_hash_lookup",
            "DELETE FROM audit_hash_cursor",
            "INSERT INTO audit_hash_lookup (epoch, prefix, seq) VALUES (0, 'aaaaaaaa', 7), (1, 'bbbbbbbb', 65537)",
        ] {
            store.execute_raw(sql).await.unwrap();
        }
        let log = open(&db, "old").await;
        assert_eq!(log.prune().await.unwrap(), Some(131_075));
        assert_eq!(log.store().hash_lookup_epochs().await, [2]);
        for ack in &recent {
            assert!(log.store().public_verify(ack.event_hash()).await.unwrap().found);
        }
        log.close().await;
    })
    .await;
}

/// A log of the previous version (the lookup an index on `audit_events`; here even without stored chain heads)
/// is converted at its first start: every stored event is covered and found, and the log goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_previous_version_is_converted() {
    run(Kind::Sqlite, |db| async move {
        let log = open(&db, "conv").await;
        let acks = append_all(&log, (0..4).map(|_| draft("a1", "echo", "allow"))).await;
        log.close().await;
        let store = db.store().await;
        for sql in [
            "DROP TABLE audit_hash_lookup",
            "DROP TABLE audit_hash_cursor",
            "CREATE INDEX audit_events_hash_lookup ON audit_events (seq / 65536, substr(event_hash, 1, 8))",
            "DELETE FROM audit_chains",
            "DELETE FROM _sqlx_migrations WHERE version = 12",
        ] {
            store.execute_raw(sql).await.unwrap();
        }
        let store = db.store().await;
        assert_eq!(store.unindexed_hashes("conv").await, 0);
        for ack in &acks {
            assert!(store.public_verify(ack.event_hash()).await.unwrap().found);
        }
        let log = open(&db, "conv").await;
        let more = append_all(&log, [draft("a1", "echo", "allow")]).await;
        assert_eq!(more[0].seq(), 5);
        assert!(log.store().public_verify(more[0].event_hash()).await.unwrap().found);
        log.close().await;
    })
    .await;
}
