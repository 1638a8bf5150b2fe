use super::*;

fn agent(tenant: &str, sub: &str) -> AgentKey {
    AgentKey {
        tenant_id: (!tenant.is_empty()).then(|| tenant.to_owned()),
        agent_id: sub.into(),
    }
}

fn session(id: &str, upstream: &str, who: &AgentKey) -> Session {
    Session::new(id.into(), upstream.into(), who.clone(), None)
}

fn store() -> SessionStore {
    SessionStore::new(2, 64, Duration::from_secs(60))
}

#[tokio::test]
async fn a_session_belongs_to_its_agent_and_upstream() {
    let s = store();
    let alice = agent("t1", "alice");
    let mallory = agent("t1", "mallory");
    s.open(session("s1", "fs", &alice)).await.unwrap();
    assert_eq!(s.get("fs", "s1", &alice).await.unwrap().agent, alice);
    assert_eq!(
        s.get("fs", "s1", &mallory).await.unwrap_err(),
        SessionError::Foreign
    );
    assert_eq!(
        s.get("other", "s1", &alice).await.unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(
        s.get("fs", "nope", &alice).await.unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(
        s.remove("fs", "s1", &mallory).await.unwrap_err(),
        SessionError::Foreign
    );
    assert!(s.remove("fs", "s1", &alice).await.is_ok());
    assert_eq!(
        s.get("fs", "s1", &alice).await.unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(s.count_of(&alice), 0);
}

#[tokio::test]
async fn the_same_sub_in_another_tenant_is_another_agent() {
    let s = store();
    let t1 = agent("t1", "alice");
    let t2 = agent("t2", "alice");
    let none = agent("", "alice");
    s.open(session("s1", "fs", &t1)).await.unwrap();
    for other in [&t2, &none] {
        assert_eq!(
            s.get("fs", "s1", other).await.unwrap_err(),
            SessionError::Foreign
        );
        assert_eq!(
            s.remove("fs", "s1", other).await.unwrap_err(),
            SessionError::Foreign
        );
        assert_eq!(
            s.open(session("s1", "fs", other)).await.unwrap_err(),
            SessionError::Taken
        );
    }
    assert!(s.get("fs", "s1", &t1).await.is_ok());
}

#[tokio::test]
async fn another_agents_session_reads_as_unknown() {
    assert_eq!(
        SessionError::Foreign.to_string(),
        SessionError::NotFound.to_string()
    );
}

#[tokio::test]
async fn a_binding_never_moves_to_another_agent() {
    let s = store();
    let alice = agent("t1", "alice");
    let mallory = agent("t1", "mallory");
    s.open(session("s1", "fs", &alice)).await.unwrap();
    let err = s.open(session("s1", "fs", &mallory)).await.unwrap_err();
    assert_eq!(err, SessionError::Taken);
    assert_eq!(s.get("fs", "s1", &alice).await.unwrap().agent, alice);
    assert_eq!(
        s.get("fs", "s1", &mallory).await.unwrap_err(),
        SessionError::Foreign
    );
}

#[tokio::test]
async fn an_agent_at_its_cap_loses_its_own_longest_idle_session_never_anothers() {
    let s = SessionStore::new(10, 3, Duration::from_secs(60));
    let a = agent("t1", "a");
    let b = agent("t1", "b");
    s.open(session("b1", "fs", &b)).await.unwrap();
    for id in ["a1", "a2", "a3"] {
        assert!(s
            .open(session(id, "fs", &a))
            .await
            .unwrap()
            .evicted
            .is_empty());
        std::thread::sleep(Duration::from_millis(2));
    }
    // a1 is used again: a2 is now the longest idle.
    s.get("fs", "a1", &a).await.unwrap();
    let opened = s.open(session("a4", "fs", &a)).await.unwrap();
    assert_eq!(opened.evicted[0].id.as_deref(), Some("a2"));
    assert_eq!(s.count_of(&a), 3);
    assert_eq!(
        s.get("fs", "a2", &a).await.unwrap_err(),
        SessionError::NotFound
    );
    for _ in 0..20 {
        let id = new_session_id();
        s.open(session(&id, "fs", &a)).await.unwrap();
    }
    assert_eq!(s.count_of(&a), 3);
    assert!(
        s.get("fs", "b1", &b).await.is_ok(),
        "b's session is untouched"
    );
    assert_eq!(s.len(), 4);
    // Re-binding the same id for the same agent takes no new slot and ends nothing.
    let again = s.open(session("b1", "fs", &b)).await.unwrap();
    assert!(again.evicted.is_empty());
    assert_eq!(s.count_of(&b), 1);
}

#[tokio::test]
async fn the_store_is_bounded_and_idle_sessions_expire() {
    let s = store();
    let x = agent("", "x");
    s.open(session("a", "fs", &x)).await.unwrap();
    s.open(session("b", "fs", &x)).await.unwrap();
    assert_eq!(
        s.open(session("c", "fs", &agent("", "y")))
            .await
            .unwrap_err(),
        SessionError::Full
    );
    let zero = SessionStore::new(10, 64, Duration::ZERO);
    zero.open(session("a", "fs", &x)).await.unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(
        zero.get("fs", "a", &x).await.unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(zero.sweep_idle().await.len(), 1);
    assert!(zero.is_empty());
    assert_eq!(zero.count_of(&x), 0);
}

#[tokio::test]
async fn ending_an_agents_sessions_leaves_the_others_and_the_same_sub_elsewhere() {
    let s = SessionStore::new(10, 64, Duration::from_secs(60));
    let alice = agent("t1", "alice");
    let alice_t2 = agent("t2", "alice");
    s.open(session("a1", "fs", &alice)).await.unwrap();
    s.open(session("a2", "web", &alice)).await.unwrap();
    s.open(session("b1", "fs", &alice_t2)).await.unwrap();
    assert_eq!((s.count_of(&alice), s.count_of(&alice_t2)), (2, 1));
    let is_alice = |a: &AgentKey| a == &alice;
    let mut ended: Vec<String> = s
        .end_agents(is_alice)
        .await
        .into_iter()
        .filter_map(|s| s.id.clone())
        .collect();
    ended.sort();
    assert_eq!(ended, ["a1", "a2"]);
    assert_eq!(
        s.get("fs", "a1", &alice).await.unwrap_err(),
        SessionError::NotFound
    );
    assert_eq!(s.count_of(&alice), 0);
    assert!(s.get("fs", "b1", &alice_t2).await.is_ok());
    assert!(s.end_agents(is_alice).await.is_empty());
    assert_eq!((s.count_of(&alice), s.count_of(&alice_t2)), (0, 1));
}

#[tokio::test]
async fn exactly_one_readable_session_header_is_accepted() {
    let mut headers = hyper::HeaderMap::new();
    assert_eq!(presented(&headers), Ok(None));
    headers.insert("mcp-session-id", "s1".parse().unwrap());
    assert_eq!(presented(&headers), Ok(Some("s1")));
    headers.append("mcp-session-id", "s2".parse().unwrap());
    assert_eq!(presented(&headers), Err(SessionError::BadHeader));
    let mut opaque = hyper::HeaderMap::new();
    opaque.insert(
        "mcp-session-id",
        hyper::header::HeaderValue::from_bytes(b"s\xff1").unwrap(),
    );
    assert_eq!(presented(&opaque), Err(SessionError::BadHeader));
}

#[tokio::test]
async fn session_ids_are_unique_and_long() {
    let a = new_session_id();
    assert_eq!(a.len(), 32);
    assert_ne!(a, new_session_id());
}

/// Shared sessions: "instances" are session stores over their own connection pools to one database (SQLite here
/// stands in for PostgreSQL's statements; the notifications are tested in `crate::shared_state`).
mod shared_store {
    use super::*;
    use crate::audit::test_db::{on_both, run, Kind, TestDb};

    async fn instance(db: &TestDb, name: &str, per_agent: usize) -> SessionStore {
        let idle = Duration::from_secs(60);
        SessionStore::shared(
            100,
            per_agent,
            idle,
            shared::Bindings::new(db.store().await, name.to_owned(), idle),
        )
    }

    async fn a_session_opened_on_one_instance_is_served_by_another(db: TestDb) {
        let (a, b, c) = (
            instance(&db, "a", 8).await,
            instance(&db, "b", 8).await,
            instance(&db, "c", 8).await,
        );
        let alice = agent("t1", "alice");
        let mallory = agent("t1", "mallory");
        a.open(session("s1", "web", &alice)).await.unwrap();
        // A knows it: served from memory, the database is never asked.
        for _ in 0..100 {
            a.get("web", "s1", &alice).await.unwrap();
        }
        assert_eq!(a.store_lookups(), 0, "a cache hit does no I/O");
        // B does not: one read, then memory.
        let on_b = b.get("web", "s1", &alice).await.unwrap();
        assert_eq!(on_b.agent, alice);
        for _ in 0..100 {
            b.get("web", "s1", &alice).await.unwrap();
        }
        assert_eq!(
            b.store_lookups(),
            1,
            "one read per session an instance did not know"
        );
        // Another agent presenting it reads as unknown, on an instance that knows it or not.
        assert_eq!(
            b.get("web", "s1", &mallory).await.unwrap_err(),
            SessionError::Foreign
        );
        assert_eq!(
            c.get("web", "s1", &mallory).await.unwrap_err(),
            SessionError::Foreign
        );
        assert_eq!(
            c.remove("web", "s1", &mallory).await.unwrap_err(),
            SessionError::Foreign
        );
        // Ended on C, which never served it: exactly once.
        let ended = c.remove("web", "s1", &alice).await.unwrap();
        assert_eq!(ended.id.as_deref(), Some("s1"));
        assert_eq!(
            a.remove("web", "s1", &alice).await.unwrap_err(),
            SessionError::NotFound
        );
        // What the bus tells A and B (the end's id hash) makes them forget it.
        for other in [&a, &b] {
            other.forget(Some(&id_hash("s1")));
            assert_eq!(
                other.get("web", "s1", &alice).await.unwrap_err(),
                SessionError::NotFound
            );
        }
        // An id an upstream reissues to another agent stays with its first.
        b.open(session("s2", "web", &alice)).await.unwrap();
        assert_eq!(
            a.open(session("s2", "web", &mallory)).await.unwrap_err(),
            SessionError::Taken
        );
    }
    on_both!(a_session_opened_on_one_instance_is_served_by_another);

    async fn the_cap_and_the_kill_switch_count_every_instances_sessions(db: TestDb) {
        let (a, b) = (instance(&db, "a", 2).await, instance(&db, "b", 2).await);
        let alice = agent("t1", "alice");
        let bob = agent("t1", "bob");
        a.open(session("a1", "web", &alice)).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        b.open(session("a2", "web", &alice)).await.unwrap();
        b.open(session("b1", "web", &bob)).await.unwrap();
        // A third session of alice, on B: her longest-idle one (opened on A) ends, never bob's.
        let opened = b.open(session("a3", "web", &alice)).await.unwrap();
        let evicted: Vec<&str> = opened.evicted.iter().map(|s| s.id_hash.as_str()).collect();
        assert_eq!(evicted, [id_hash("a1")]);
        a.forget(Some(&id_hash("a1")));
        assert_eq!(
            a.get("web", "a1", &alice).await.unwrap_err(),
            SessionError::NotFound
        );
        // The kill switch: each instance ends the sessions of alice it holds, once; bob's stay.
        a.get("web", "a2", &alice).await.unwrap();
        let ended = b.end_agents(|k| k == &alice).await;
        assert_eq!(ended.len(), 2);
        assert!(
            a.end_agents(|k| k == &alice).await.is_empty(),
            "ended by B already"
        );
        assert_eq!(
            a.get("web", "a2", &alice).await.unwrap_err(),
            SessionError::NotFound
        );
        assert!(a.get("web", "b1", &bob).await.is_ok());
    }
    on_both!(the_cap_and_the_kill_switch_count_every_instances_sessions);

    async fn a_session_busy_elsewhere_is_not_swept(db: TestDb) {
        let idle = Duration::from_millis(400);
        let db = &db;
        let store = |name: &str| {
            let name = name.to_owned();
            async move {
                SessionStore::shared(
                    100,
                    8,
                    idle,
                    shared::Bindings::new(db.store().await, name, idle),
                )
            }
        };
        let (a, b) = (store("a").await, store("b").await);
        let alice = agent("", "alice");
        a.open(session("s1", "web", &alice)).await.unwrap();
        // Used on B every 100 ms for a while: idle on A, busy everywhere.
        for _ in 0..8 {
            b.get("web", "s1", &alice).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(a.sweep_idle().await.is_empty(), "used on B: not idle");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let swept = b.sweep_idle().await;
        assert_eq!(swept.len(), 1);
        assert_eq!(
            swept[0].id.as_deref(),
            Some("s1"),
            "ended by one that knows its id"
        );
        assert!(a.sweep_idle().await.is_empty(), "ended once");
    }
    on_both!(a_session_busy_elsewhere_is_not_swept);
}

/// What a cache hit costs against the in-memory store's lookup: `cargo test -p toolgate --release --lib
/// session_lookup_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a measurement, not a test"]
async fn session_lookup_cost() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = crate::audit::AuditStore::connect(&url).await.unwrap();
    let idle = Duration::from_secs(3600);
    // One agent holding them all: the cap out of the way.
    let memory = SessionStore::new(100_000, 100_000, idle);
    let shared = SessionStore::shared(
        100_000,
        100_000,
        idle,
        shared::Bindings::new(store, "bench".into(), idle),
    );
    let who = agent("t1", "alice");
    let ids: Vec<String> = (0..10_000).map(|_| new_session_id()).collect();
    for id in &ids {
        memory.open(session(id, "web", &who)).await.unwrap();
        shared.open(session(id, "web", &who)).await.unwrap();
    }
    const N: usize = 1_000_000;
    for (name, s) in [("in-memory", &memory), ("shared, cached", &shared)] {
        for _ in 0..2 {
            let started = std::time::Instant::now();
            for i in 0..N {
                let got = s.get("web", &ids[i % ids.len()], &who).await.unwrap();
                std::hint::black_box(got);
            }
            let ns = started.elapsed().as_nanos() as f64 / N as f64;
            println!("{name}: {ns:.0} ns per lookup");
        }
    }
    assert_eq!(shared.store_lookups(), 0);
}
