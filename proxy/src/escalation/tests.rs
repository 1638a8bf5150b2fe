//! Escalations against real databases: SQLite in a temporary folder always, PostgreSQL when
//! `TOOLGATE_TEST_POSTGRES_URL` is set (each test in its own schema, dropped afterwards). "Two instances" are
//! two [`Escalations`] over two connection pools to one database, as two toolgate processes would be.

use std::future::Future;
use std::time::Instant;

use super::*;
use crate::audit::test_db::{on_both, run, Kind, TestDb};
use crate::audit::{AuditMetrics, AuditSettings, EventFilter};

impl TestDb {
    /// One instance: its own pool, `max_pending` and `timeout_seconds`.
    async fn instance(&self, max_pending: usize, timeout_seconds: u64) -> (Escalations, IntGauge) {
        let gauge = IntGauge::new("g", "g").unwrap();
        let settings = EscalationSettings {
            max_pending_per_agent: max_pending,
            timeout_seconds,
            ..EscalationSettings::default()
        };
        let escalations = Escalations::load(self.store().await, gauge.clone(), &settings)
            .await
            .unwrap();
        (escalations, gauge)
    }

    /// [`TestDb::instance`] with its keeper running, writing to its own audit chain.
    async fn running(&self, chain: &str, timeout_seconds: u64) -> (Escalations, AuditLog) {
        let (escalations, _) = self.instance(16, timeout_seconds).await;
        let settings = AuditSettings {
            database_url: self.url.clone(),
            chain_id: Some(chain.to_owned()),
            signing_key_file: Some(self.dir.path().join(format!("{chain}.key"))),
            ..AuditSettings::default()
        };
        let audit = AuditLog::open(&settings, AuditMetrics::unregistered())
            .await
            .unwrap();
        escalations.start(audit.clone(), None);
        (escalations, audit)
    }
}

fn agent(tenant: &str, sub: &str) -> AgentKey {
    AgentKey {
        tenant_id: Some(tenant.into()),
        agent_id: sub.into(),
    }
}

fn a() -> AgentKey {
    agent("t1", "a")
}

fn new_of(id: &str, who: &AgentKey) -> NewEscalation {
    NewEscalation {
        id: id.into(),
        agent: who.clone(),
        tool_name: "write_file".into(),
        mcp_server: "demo".into(),
        action: "write".into(),
        target: Some("/workspace/a.txt".into()),
        policy_id: "p".into(),
        reason: "r".into(),
    }
}

fn new(id: &str) -> NewEscalation {
    new_of(id, &a())
}

/// The fingerprint of `who`'s call with arguments hashing to `[n; 32]`.
fn fp_of(who: &AgentKey, n: u8) -> Fingerprint {
    Fingerprint::of(who, "demo", "tools/call", Some("write_file"), &[n; 32])
}

fn fp(n: u8) -> Fingerprint {
    fp_of(&a(), n)
}

/// Polls `ready` until it holds (at most 10 s): for a spawned call to reach its wait.
async fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "not ready within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `f` until it returns `Some` (at most 10 s).
async fn eventually<T, Fut: Future<Output = Option<T>>>(mut f: impl FnMut() -> Fut) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const TTL: Duration = Duration::from_secs(3600);

async fn all(e: &Escalations, status: Option<Status>) -> Vec<Escalation> {
    let query = ListQuery {
        status,
        tenant_id: None,
        limit: ListQuery::MAX_LIMIT,
        cursor: None,
    };
    e.list(&query).await.unwrap().escalations
}

async fn one(e: &Escalations, id: &str) -> Escalation {
    e.get(id).await.unwrap().unwrap()
}

on_both!(a_decision_here_releases_the_held_call_at_once);
async fn a_decision_here_releases_the_held_call_at_once(db: TestDb) {
    let (e, gauge) = db.instance(16, 1800).await;
    e.open(new("e1"), fp(1)).await.unwrap();
    assert_eq!(gauge.get(), 1);
    let e = Arc::new(e);
    let held = tokio::spawn({
        let e = e.clone();
        // No keeper runs: only the in-memory flag can wake this call before its hour is up.
        async move { e.hold("e1", Duration::from_secs(3600)).await }
    });
    wait_until(|| e.shared.held().contains_key("e1")).await;
    let decided = e.decide("e1", Review::Approved, "admin").await.unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("admin"));
    assert_eq!(held.await.unwrap(), Held::Answered(Answer::Approved));
    assert_eq!(gauge.get(), 0);
    assert!(
        e.shared.held().is_empty(),
        "nothing is left behind in memory"
    );
    assert!(matches!(
        e.decide("e1", Review::Denied, "admin").await,
        Err(EscalationError::AlreadyDecided(_))
    ));
    assert!(matches!(
        e.decide("nope", Review::Denied, "admin").await,
        Err(EscalationError::NotFound(_))
    ));
    assert_eq!(one(&e, "e1").await.delivered, Some(true));
    // The held call took the answer: an identical retry opens a new escalation.
    assert_eq!(e.lookup(&a(), &fp(1), TTL).await.unwrap(), Lookup::None);
}

on_both!(an_answer_no_held_call_took_serves_the_next_identical_call_once);
async fn an_answer_no_held_call_took_serves_the_next_identical_call_once(db: TestDb) {
    let (e, _) = db.instance(16, 1800).await;
    for (n, id, review, answer) in [
        (1, "ap", Review::Approved, Answer::Approved),
        (2, "de", Review::Denied, Answer::Denied),
    ] {
        e.open(new(id), fp(n)).await.unwrap();
        assert_eq!(e.lookup(&a(), &fp(99), TTL).await.unwrap(), Lookup::None);
        assert_eq!(
            e.lookup(&a(), &fp(n), TTL).await.unwrap(),
            Lookup::Pending { id: id.into() },
            "a retry joins the pending escalation"
        );
        e.decide(id, review, "admin").await.unwrap();
        assert_eq!(one(&e, id).await.delivered, Some(false));
        assert_eq!(
            e.lookup(&a(), &fp(n), Duration::ZERO).await.unwrap(),
            Lookup::None,
            "an answer older than the ttl is not given out"
        );
        assert_eq!(e.lookup(&a(), &fp(99), TTL).await.unwrap(), Lookup::None);
        assert_eq!(
            e.lookup(&a(), &fp(n), TTL).await.unwrap(),
            Lookup::Answered {
                id: id.into(),
                answer
            }
        );
        assert_eq!(one(&e, id).await.delivered, Some(true));
        assert_eq!(
            e.lookup(&a(), &fp(n), TTL).await.unwrap(),
            Lookup::None,
            "one answer serves one call"
        );
    }
}

on_both!(another_tenants_agent_of_the_same_name_never_takes_an_answer);
async fn another_tenants_agent_of_the_same_name_never_takes_an_answer(db: TestDb) {
    let t1 = agent("t1", "alice");
    let t2 = agent("t2", "alice");
    assert_ne!(fp_of(&t1, 7), fp_of(&t2, 7));
    let none = AgentKey {
        tenant_id: None,
        agent_id: "alice".into(),
    };
    assert_ne!(
        fp_of(&none, 7),
        fp_of(&agent("", "alice"), 7),
        "no tenant is not the empty tenant"
    );
    assert_ne!(agent_key(&none), agent_key(&agent("", "alice")));
    let (e, _) = db.instance(16, 1800).await;
    e.open(new_of("x", &t1), fp_of(&t1, 7)).await.unwrap();
    e.decide("x", Review::Approved, "admin").await.unwrap();
    // Even presenting t1's fingerprint, t2's alice finds nothing: the agent is compared too.
    assert_eq!(
        e.lookup(&t2, &fp_of(&t1, 7), TTL).await.unwrap(),
        Lookup::None
    );
    assert_eq!(
        e.lookup(&t2, &fp_of(&t2, 7), TTL).await.unwrap(),
        Lookup::None
    );
    assert!(matches!(
        e.lookup(&t1, &fp_of(&t1, 7), TTL).await.unwrap(),
        Lookup::Answered { .. }
    ));
    let listed = all(&e, None).await;
    assert_eq!(listed[0].tenant_id.as_deref(), Some("t1"));
}

#[test]
fn fingerprint_parts_cannot_be_shifted_into_each_other() {
    let key = agent("t", "ab");
    let shifted = agent("t", "a");
    assert_ne!(
        Fingerprint::of(&key, "c", "m", None, &[0; 32]),
        Fingerprint::of(&shifted, "bc", "m", None, &[0; 32])
    );
    assert_ne!(
        Fingerprint::of(&key, "c", "m", None, &[0; 32]),
        Fingerprint::of(&key, "c", "m", Some(""), &[0; 32])
    );
}

on_both!(an_agent_has_at_most_its_cap_pending_across_instances);
async fn an_agent_has_at_most_its_cap_pending_across_instances(db: TestDb) {
    let (first, gauge) = db.instance(3, 1800).await;
    let (second, _) = db.instance(3, 1800).await;
    let (first, second) = (Arc::new(first), Arc::new(second));
    // Twenty opens at once, half on each instance: exactly the cap gets in.
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let e = if i % 2 == 0 { &first } else { &second }.clone();
        tasks.push(tokio::spawn(async move {
            e.open(new(&format!("a{i}")), fp(i)).await
        }));
    }
    let mut opened = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => opened += 1,
            Err(EscalationError::TooManyPending(3)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(opened, 3);
    assert!(!first.has_room(&a()).await.unwrap());
    let b = agent("t1", "b");
    assert!(second.has_room(&b).await.unwrap(), "others are unaffected");
    second.open(new_of("b0", &b), fp_of(&b, 0)).await.unwrap();
    // A decision frees a slot.
    let some = all(&first, Some(Status::Pending)).await;
    let mine = some.iter().find(|x| x.agent_id == "a").unwrap();
    first
        .decide(&mine.id, Review::Denied, "admin")
        .await
        .unwrap();
    assert!(first.has_room(&a()).await.unwrap());
    first.open(new("a-next"), fp(200)).await.unwrap();
    assert_eq!(all(&second, Some(Status::Pending)).await.len(), 4);
    assert_eq!(gauge.get(), 4);
}

on_both!(two_instances_taking_one_approval_let_one_call_through);
async fn two_instances_taking_one_approval_let_one_call_through(db: TestDb) {
    let (first, _) = db.instance(16, 1800).await;
    let (second, _) = db.instance(16, 1800).await;
    for round in 0..3u8 {
        let id = format!("r{round}");
        first.open(new(&id), fp(round)).await.unwrap();
        second.decide(&id, Review::Approved, "admin").await.unwrap();
        let (first_arc, second_arc) = (&first, &second);
        let takes = (0..8).map(|i| async move {
            let e = if i % 2 == 0 { first_arc } else { second_arc };
            e.lookup(&a(), &fp(round), TTL).await.unwrap()
        });
        let results = futures_util::future::join_all(takes).await;
        let answered = results
            .iter()
            .filter(|r| matches!(r, Lookup::Answered { .. }))
            .count();
        assert_eq!(answered, 1, "round {round}: {results:?}");
        assert!(results
            .iter()
            .all(|r| matches!(r, Lookup::Answered { .. } | Lookup::None)));
    }
}

on_both!(a_held_call_is_answered_by_a_decision_on_another_instance);
async fn a_held_call_is_answered_by_a_decision_on_another_instance(db: TestDb) {
    let (here, audit) = db.running("here", 1800).await;
    let (elsewhere, _) = db.instance(16, 1800).await;
    here.open(new("x"), fp(1)).await.unwrap();
    let here = Arc::new(here);
    let held = tokio::spawn({
        let here = here.clone();
        async move {
            let started = Instant::now();
            (here.hold("x", Duration::from_secs(30)).await, started)
        }
    });
    wait_until(|| here.shared.held().contains_key("x")).await;
    elsewhere
        .decide("x", Review::Denied, "admin")
        .await
        .unwrap();
    let decided = Instant::now();
    let (answer, _) = held.await.unwrap();
    assert_eq!(answer, Held::Answered(Answer::Denied));
    // The keeper looks every 250 ms; a hold of 30 s ending in a few seconds was woken by it.
    assert!(
        decided.elapsed() < Duration::from_secs(5),
        "{:?}",
        decided.elapsed()
    );
    audit.close().await;
}

on_both!(a_pending_escalation_expires_to_deny_once_across_instances);
async fn a_pending_escalation_expires_to_deny_once_across_instances(db: TestDb) {
    let (here, audit) = db.running("here", 1).await;
    let (elsewhere, audit_elsewhere) = db.running("elsewhere", 1).await;
    here.open(new("held"), fp(1)).await.unwrap();
    elsewhere.open(new("retried"), fp(2)).await.unwrap();
    let opened = Instant::now();
    // A held call still waiting gets the deny.
    assert_eq!(
        here.hold("held", Duration::from_secs(30)).await,
        Held::Answered(Answer::Expired)
    );
    // Due after 1 s, looked for every 250 ms: well before the 30 s hold would end.
    assert!(
        opened.elapsed() < Duration::from_secs(5),
        "{:?}",
        opened.elapsed()
    );
    let expired = eventually(|| async {
        let events = audit.store().query(&EventFilter::default()).await.unwrap();
        let expired: Vec<_> = events
            .into_iter()
            .filter(|e| e.event_type == "escalation_expired")
            .collect();
        (expired.len() == 2).then_some(expired)
    })
    .await;
    let mut ids: Vec<_> = expired
        .iter()
        .map(|e| e.extra["escalation_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["held", "retried"], "each expiry recorded once");
    assert_eq!(expired[0].agent_id.as_deref(), Some("a"));
    assert_eq!(expired[0].tool_name.as_deref(), Some("write_file"));
    assert_eq!(expired[0].extra["timeout_seconds"], 1);
    // The agent's retry of the other one is denied, once; deciding it now is refused.
    assert_eq!(
        here.lookup(&a(), &fp(2), TTL).await.unwrap(),
        Lookup::Answered {
            id: "retried".into(),
            answer: Answer::Expired
        }
    );
    assert!(matches!(
        elsewhere.decide("retried", Review::Approved, "admin").await,
        Err(EscalationError::Expired(_))
    ));
    assert_eq!(one(&here, "held").await.status, Status::Expired);
    // The other instance may have expired "retried": this one's gauge follows the stored count at its keeper's
    // next pass (every 250 ms), not at once.
    eventually(|| async { (here.shared.gauge.get() == 0).then_some(()) }).await;
    audit.close().await;
    audit_elsewhere.close().await;
}

on_both!(a_restart_keeps_the_pending_escalations_and_the_gauge);
async fn a_restart_keeps_the_pending_escalations_and_the_gauge(db: TestDb) {
    let (e, _) = db.instance(16, 1800).await;
    for i in 0..3u8 {
        e.open(new(&format!("p{i}")), fp(i)).await.unwrap();
    }
    e.decide("p0", Review::Approved, "admin").await.unwrap();
    drop(e);
    let (e, gauge) = db.instance(16, 1800).await;
    assert_eq!(gauge.get(), 2, "set from the store at start");
    assert_eq!(
        e.lookup(&a(), &fp(0), TTL).await.unwrap(),
        Lookup::Answered {
            id: "p0".into(),
            answer: Answer::Approved
        }
    );
    e.decide("p1", Review::Approved, "admin").await.unwrap();
    assert_eq!(gauge.get(), 1);
}

on_both!(the_listing_pages_pending_first_then_newest_first);
async fn the_listing_pages_pending_first_then_newest_first(db: TestDb) {
    let (e, _) = db.instance(16, 1800).await;
    for i in 0..5u8 {
        e.open(new(&format!("l{i}")), fp(i)).await.unwrap();
    }
    e.decide("l4", Review::Denied, "admin").await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = e
            .list(&ListQuery {
                status: None,
                tenant_id: None,
                limit: 2,
                cursor,
            })
            .await
            .unwrap();
        seen.extend(page.escalations.iter().map(|x| x.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["l3", "l2", "l1", "l0", "l4"]);
    let denied = all(&e, Some(Status::Denied)).await;
    assert_eq!(denied.len(), 1);
    assert!(matches!(
        e.list(&ListQuery {
            cursor: Some("not-a-cursor".into()),
            limit: 10,
            status: None,
            tenant_id: None,
        })
        .await,
        Err(EscalationError::BadCursor)
    ));
}

on_both!(stored_fields_are_redacted_and_bounded_and_hold_no_arguments);
async fn stored_fields_are_redacted_and_bounded_and_hold_no_arguments(db: TestDb) {
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let (e, _) = db.instance(16, 1800).await;
    let huge = "/workspace/".to_owned() + &"é".repeat(100 * 1024);
    let mut escalation = new("big");
    escalation.target = Some(format!("/workspace/{KEY}/{huge}"));
    escalation.tool_name = huge.clone();
    escalation.reason = format!("writing {KEY}");
    e.open(escalation, fp(1)).await.unwrap();
    let row = db.store().await.escalation("big").await.unwrap().unwrap();
    let texts = [
        &row.id,
        &row.agent_key,
        &row.fingerprint,
        &row.agent_id,
        &row.tool_name,
        &row.mcp_server,
        &row.action,
        &row.policy_id,
        &row.reason,
        row.target.as_ref().unwrap(),
    ];
    for text in texts {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.len() <= MAX_FIELD_BYTES, "{} bytes", text.len());
    }
    assert!(row.reason.contains("[REDACTED:"), "{}", row.reason);
    assert!(row.target.unwrap().starts_with("/workspace/[REDACTED:"));
    assert_eq!(row.fingerprint.len(), 64);
}

on_both!(settled_escalations_are_deleted_after_retention_and_pending_ones_never);
async fn settled_escalations_are_deleted_after_retention_and_pending_ones_never(db: TestDb) {
    let (e, _) = db.instance(16, 1800).await;
    for (id, n) in [("approved", 1), ("denied", 2), ("pending", 3)] {
        e.open(new(id), fp(n)).await.unwrap();
    }
    e.decide("approved", Review::Approved, "admin")
        .await
        .unwrap();
    e.decide("denied", Review::Denied, "admin").await.unwrap();
    // Kept for an hour: everything was settled just now, nothing goes.
    keeper::prune(&e.shared, Duration::from_secs(3600)).await;
    assert_eq!(all(&e, None).await.len(), 3);
    // Kept for no time: the settled ones go, the pending one stays whatever its age.
    tokio::time::sleep(Duration::from_millis(5)).await;
    keeper::prune(&e.shared, Duration::ZERO).await;
    let left: Vec<String> = all(&e, None).await.into_iter().map(|x| x.id).collect();
    assert_eq!(left, ["pending"]);
    assert!(e.get("approved").await.unwrap().is_none());
    assert_eq!(one(&e, "pending").await.status, Status::Pending);
}
