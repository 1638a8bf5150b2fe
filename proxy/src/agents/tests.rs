//! The agents table and the kill switch against real databases: SQLite in a temporary folder always,
//! PostgreSQL when `TOOLGATE_TEST_POSTGRES_URL` is set (each test in its own schema, dropped afterwards). Two
//! `Agents` over one database stand for two instances.

use super::*;
use crate::audit::test_db::{on_both, run, Kind, TestDb};

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

impl TestDb {
    async fn agents(&self, config_disabled: &[&str]) -> Agents {
        let store = self.store().await;
        let config: Vec<String> = config_disabled.iter().map(|s| s.to_string()).collect();
        Agents::load(store, &config).await.unwrap()
    }
}

fn identity(tenant: Option<&str>, sub: &str) -> AgentIdentity {
    AgentIdentity {
        id: sub.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        roles: vec![],
        claims: serde_json::Value::Null,
        expires_at: 0,
    }
}

fn key(tenant: &str, agent: &str) -> StoredKey {
    StoredKey {
        tenant_id: tenant.to_owned(),
        agent_id: agent.to_owned(),
    }
}

async fn all(agents: &Agents) -> Vec<AgentView> {
    agents.list(&ListQuery::default()).await.unwrap().0
}

fn find<'a>(list: &'a [AgentView], tenant: Option<&str>, agent: &str) -> &'a AgentView {
    list.iter()
        .find(|a| a.tenant_id.as_deref() == tenant && a.agent_id == agent)
        .unwrap_or_else(|| panic!("{tenant:?}/{agent} not listed: {list:?}"))
}

on_both!(counts_from_two_instances_add_up);
async fn counts_from_two_instances_add_up(db: TestDb) {
    let one = db.agents(&[]).await;
    let two = db.agents(&[]).await;
    let alice = identity(Some("t1"), "alice");
    for (instance, verdicts) in [
        (&one, vec![Verdict::Allow, Verdict::Deny, Verdict::Escalate]),
        (&two, vec![Verdict::Allow, Verdict::Allow, Verdict::Deny]),
    ] {
        assert!(instance.admit(&alice));
        for v in verdicts {
            instance.count(&alice, v);
        }
        instance.flush().await.unwrap();
    }
    assert!(two.admit(&identity(None, "bob")));
    let listed = all(&two).await;
    let a = find(&listed, Some("t1"), "alice");
    assert_eq!((a.calls, a.denials, a.escalations), (6, 2, 1));
    assert!(!a.disabled);
    let (first, last) = (a.first_seen.clone().unwrap(), a.last_seen.clone().unwrap());
    assert_eq!(first.len(), "2026-11-22T20:15:00.123456Z".len(), "{first}");
    assert!(last >= first);
    let bob = find(&listed, None, "bob");
    assert_eq!((bob.calls, bob.denials, bob.escalations), (0, 0, 0));
    assert_eq!(listed[0].agent_id, "bob", "newest last_seen first");

    // Nothing new: a flush adds nothing twice.
    one.flush().await.unwrap();
    two.flush().await.unwrap();
    assert_eq!(find(&all(&one).await, Some("t1"), "alice").calls, 6);
}

on_both!(a_disable_reaches_the_other_instance_and_survives_a_reload);
async fn a_disable_reaches_the_other_instance_and_survives_a_reload(db: TestDb) {
    let one = db.agents(&[]).await;
    let two = db.agents(&[]).await;
    let alice = identity(Some("t1"), "alice");
    assert!(one.admit(&alice));
    assert!(two.admit(&alice));

    let changed = one
        .set_disabled("alice", None, true, "admin")
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].disabled);
    assert_eq!(changed[0].disabled_by.as_deref(), Some("admin"));
    assert!(changed[0].disabled_at.is_some());
    assert!(!one.admit(&alice), "refused at once where it was disabled");
    assert!(
        two.admit(&alice),
        "the other instance has not refreshed yet"
    );
    let newly = two.refresh().await.unwrap();
    assert_eq!(newly, HashSet::from([key("t1", "alice")]));
    assert!(!two.admit(&alice));
    assert!(two.refresh().await.unwrap().is_empty(), "only news is news");

    assert!(matches!(
        two.set_disabled("alice", None, true, "admin").await,
        Err(ChangeError::AlreadyDisabled(_))
    ));
    let three = db.agents(&[]).await;
    assert!(!three.admit(&alice), "loaded disabled at start");

    two.set_disabled("alice", None, false, "admin")
        .await
        .unwrap();
    assert!(two.admit(&alice));
    one.refresh().await.unwrap();
    assert!(one.admit(&alice));
    let listed = all(&one).await;
    let a = find(&listed, Some("t1"), "alice");
    assert!(!a.disabled);
    assert_eq!(
        (a.disabled_at.as_deref(), a.disabled_by.as_deref()),
        (None, None)
    );
    assert!(matches!(
        one.set_disabled("alice", None, false, "admin").await,
        Err(ChangeError::AlreadyEnabled(_))
    ));
    assert!(matches!(
        one.set_disabled("nobody", None, true, "admin").await,
        Err(ChangeError::NotFound(_))
    ));
}

on_both!(the_same_sub_in_two_tenants_is_two_switches);
async fn the_same_sub_in_two_tenants_is_two_switches(db: TestDb) {
    let agents = db.agents(&[]).await;
    let t1 = identity(Some("t1"), "alice");
    let t2 = identity(Some("t2"), "alice");
    let none = identity(None, "alice");
    for who in [&t1, &t2, &none] {
        assert!(agents.admit(who));
    }
    let changed = agents
        .set_disabled("alice", Some("t2"), true, "admin")
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].tenant_id.as_deref(), Some("t2"));
    assert!(agents.admit(&t1) && agents.admit(&none) && !agents.admit(&t2));
    assert!(matches!(
        agents
            .set_disabled("alice", Some("t3"), true, "admin")
            .await,
        Err(ChangeError::NotFound(_))
    ));
    // `''` is the agent of no tenant.
    let changed = agents
        .set_disabled("alice", Some(""), true, "admin")
        .await
        .unwrap();
    assert_eq!(changed[0].tenant_id, None);
    assert!(!agents.admit(&none) && agents.admit(&t1));
    // Without a tenant: every tenant's alice not disabled yet.
    let changed = agents
        .set_disabled("alice", None, true, "admin")
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].tenant_id.as_deref(), Some("t1"));
    let enabled = agents
        .set_disabled("alice", None, false, "admin")
        .await
        .unwrap();
    assert_eq!(enabled.len(), 3);

    let disabled_only = ListQuery {
        disabled: Some(true),
        ..ListQuery::default()
    };
    assert!(agents.list(&disabled_only).await.unwrap().0.is_empty());
}

on_both!(a_secret_sub_is_stored_and_shown_redacted);
async fn a_secret_sub_is_stored_and_shown_redacted(db: TestDb) {
    let agents = db.agents(&[]).await;
    let secret = identity(Some(&format!("tenant-{AWS}")), &format!("agent-{AWS}"));
    assert!(agents.admit(&secret));
    agents.count(&secret, Verdict::Deny);
    agents.flush().await.unwrap();
    let page = AgentPage {
        limit: 100,
        ..AgentPage::default()
    };
    let rows = agents.store.agents_page(&page).await.unwrap();
    assert_eq!(rows.len(), 1);
    let stored = format!("{rows:?}");
    assert!(!stored.contains("AKIA"), "{stored}");
    assert_eq!(rows[0].agent_id, "agent-[REDACTED:aws_access_key]");
    assert_eq!(rows[0].tenant_id, "tenant-[REDACTED:aws_access_key]");
    // The switch works on the stored form, and matches the agent whose raw id redacts to it.
    agents
        .set_disabled("agent-[REDACTED:aws_access_key]", None, true, "admin")
        .await
        .unwrap();
    assert!(!agents.admit(&secret));
}

on_both!(the_configuration_disables_in_every_tenant_and_only_it_enables);
async fn the_configuration_disables_in_every_tenant_and_only_it_enables(db: TestDb) {
    let agents = db.agents(&["mallory", "ghost"]).await;
    let mallory = identity(Some("t1"), "mallory");
    assert!(!agents.admit(&mallory));
    assert!(!agents.admit(&identity(None, "mallory")));
    assert!(agents.admit(&identity(Some("t1"), "alice")));
    let listed = all(&agents).await;
    let ghost = find(&listed, None, "ghost");
    assert!(ghost.disabled && ghost.last_seen.is_none());
    assert_eq!(ghost.disabled_by.as_deref(), Some("config"));
    let seen = find(&listed, Some("t1"), "mallory");
    assert!(
        seen.disabled && seen.last_seen.is_some(),
        "a refused agent is still seen"
    );
    for id in ["mallory", "ghost"] {
        assert!(matches!(
            agents.set_disabled(id, None, false, "admin").await,
            Err(ChangeError::DisabledByConfig(_))
        ));
        assert!(matches!(
            agents.set_disabled(id, None, true, "admin").await,
            Err(ChangeError::AlreadyDisabled(_))
        ));
    }
    let disabled = ListQuery {
        disabled: Some(true),
        ..ListQuery::default()
    };
    let names: Vec<String> = agents
        .list(&disabled)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!names.contains(&"alice".to_owned()));
    let enabled = ListQuery {
        disabled: Some(false),
        ..ListQuery::default()
    };
    let names: Vec<String> = agents
        .list(&enabled)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(names, ["alice"]);
}

on_both!(the_listing_pages_with_a_cursor);
async fn the_listing_pages_with_a_cursor(db: TestDb) {
    let agents = db.agents(&[]).await;
    for i in 0..5 {
        assert!(agents.admit(&identity(Some("t"), &format!("agent-{i}"))));
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let query = ListQuery {
            cursor: cursor.clone(),
            limit: Some(2),
            ..ListQuery::default()
        };
        let (page, next) = agents.list(&query).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|a| a.agent_id));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["agent-0", "agent-1", "agent-2", "agent-3", "agent-4"]
    );
    let bad = ListQuery {
        cursor: Some("not-a-cursor".into()),
        ..ListQuery::default()
    };
    assert!(matches!(agents.list(&bad).await, Err(ListError::BadCursor)));
}

#[test]
fn stored_keys_are_the_audit_logs_spelling() {
    assert_eq!(StoredKey::of(None, "alice"), key("", "alice"));
    let long = "a".repeat(5000);
    let stored = StoredKey::of(Some("t"), &long);
    assert_eq!(stored.agent_id, stored_text(long));
    assert!(stored.agent_id.len() <= crate::redaction::FIELD_LIMIT);
}
