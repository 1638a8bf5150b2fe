//! The bus against a real PostgreSQL (skipped without `TOOLGATE_TEST_POSTGRES_URL`): a change committed through
//! one instance's pool (or announced by it) reaches another instance's bus, named by kind and key; another
//! schema's changes do not;
//! a lost listening connection comes back and says so ([`Change::Resync`]).

use std::time::Duration;

use super::*;
use crate::audit::store::{AgentDelta, AgentText, SessionRow, ToolDefinitionRow};
use crate::audit::test_db::{run, Kind, TestDb};

/// The next change on `sub` within a second (the contract's bound), skipping `Resync`s from other tests'
/// listener restarts.
async fn heard(sub: &mut Subscription) -> Change {
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match sub.next().await.expect("bus open") {
                Change::Resync => continue,
                change => return change,
            }
        }
    })
    .await
    .expect("a change within a second")
}

async fn listening(db: &TestDb) -> (Bus, Subscription) {
    let bus = Bus::new();
    bus.listen(&db.store().await).await.unwrap();
    assert!(bus.is_listening());
    let sub = bus.subscribe();
    (bus, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_committed_on_one_instance_reach_the_others_bus() {
    run(Kind::Postgres, |db: TestDb| async move {
        let (_bus, mut sub) = listening(&db).await;
        let other = db.store().await;

        let row = SessionRow {
            upstream: "web".into(),
            id_hash: "ab".repeat(32),
            agent_hash: "cd".repeat(32),
            tenant_id: "t1".into(),
            agent_id: "alice".into(),
            protocol_version: None,
            started_at: "2026-01-01T00:00:00.000000Z".into(),
            last_used_ms: 1,
            opened_by: "a".into(),
        };
        other.open_session(&row, 8).await.unwrap();
        other
            .end_session("web", &row.id_hash, &row.agent_hash)
            .await
            .unwrap();
        assert_eq!(
            heard(&mut sub).await,
            Change::SessionEnded(row.id_hash.clone())
        );

        let at = "2026-01-01T00:00:00.000000Z".to_owned();
        other
            .add_agent_counts(&[AgentDelta {
                tenant_id: "t1".into(),
                agent_id: "alice".into(),
                calls: 1,
                denials: 0,
                escalations: 0,
                first_seen: at.clone(),
                last_seen: at.clone(),
            }])
            .await
            .unwrap();
        other
            .set_agent_disabled("t1", "alice", true, Some(&at), Some("admin"))
            .await
            .unwrap();
        // Counts moving say nothing; the switch does.
        assert_eq!(heard(&mut sub).await, Change::Agents);

        other
            .insert_tool_definition(&ToolDefinitionRow {
                upstream: "web".into(),
                name: "echo".into(),
                status: "new".into(),
                pinned_hash: None,
                current_hash: "00".repeat(32),
                poisoning: "[]".into(),
                first_seen: at.clone(),
                last_seen: at.clone(),
                approved_at: None,
            })
            .await
            .unwrap();
        assert_eq!(heard(&mut sub).await, Change::Tools);

        other
            .pin_prompts(
                &[AgentText {
                    tenant_id: "t1".into(),
                    agent_id: "alice".into(),
                    text: "11".repeat(32),
                }],
                &at,
            )
            .await
            .unwrap();
        assert_eq!(heard(&mut sub).await, Change::PromptPins);
        other.unpin_prompt("alice", Some("t1")).await.unwrap();
        assert_eq!(heard(&mut sub).await, Change::PromptPins);

        // No table changes on a policy reload: the instance that reloaded announces it, naming its chain.
        other.announce("policy_reload", "replica 2").await.unwrap();
        assert_eq!(
            heard(&mut sub).await,
            Change::PolicyReload("replica 2".into())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_schemas_changes_are_not_heard() {
    run(Kind::Postgres, |db: TestDb| async move {
        let (_bus, mut sub) = listening(&db).await;
        run(Kind::Postgres, |elsewhere: TestDb| async move {
            let other = elsewhere.store().await;
            let row = SessionRow {
                upstream: "web".into(),
                id_hash: "ef".repeat(32),
                agent_hash: "cd".repeat(32),
                tenant_id: String::new(),
                agent_id: "bob".into(),
                protocol_version: None,
                started_at: "2026-01-01T00:00:00.000000Z".into(),
                last_used_ms: 1,
                opened_by: "b".into(),
            };
            other.open_session(&row, 8).await.unwrap();
            other.sweep_sessions(i64::MAX).await.unwrap();
        })
        .await;
        let got = tokio::time::timeout(Duration::from_millis(500), heard(&mut sub)).await;
        assert!(got.is_err(), "heard another schema's change: {got:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_comes_back_and_asks_for_a_resync() {
    run(Kind::Postgres, |db: TestDb| async move {
        let (_bus, mut sub) = listening(&db).await;
        let admin = db.store().await;
        // Every listener of the database is cut (other tests' too: they resync, which is harmless).
        admin
            .execute_raw(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        let resync = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if sub.next().await == Some(Change::Resync) {
                    return;
                }
            }
        })
        .await;
        assert!(resync.is_ok(), "no resync after the connection was cut");
        // And it listens again.
        let row = SessionRow {
            upstream: "web".into(),
            id_hash: "12".repeat(32),
            agent_hash: "cd".repeat(32),
            tenant_id: String::new(),
            agent_id: "carol".into(),
            protocol_version: None,
            started_at: "2026-01-01T00:00:00.000000Z".into(),
            last_used_ms: 1,
            opened_by: "a".into(),
        };
        admin.open_session(&row, 8).await.unwrap();
        admin.sweep_sessions(i64::MAX).await.unwrap();
        assert_eq!(heard(&mut sub).await, Change::SessionEnded(row.id_hash));
    })
    .await;
}
