//! The pinning state machine against real databases: SQLite in a temporary folder always, PostgreSQL when
//! `TOOLGATE_TEST_POSTGRES_URL` is set (each test in its own schema, dropped afterwards).

use super::*;
use crate::audit::test_db::{on_both, run, Kind, TestDb};

const GITHUB_TOKEN: &str = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s0Q";

fn gauge() -> prometheus::IntGaugeVec {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new("toolgate_tool_definitions", "test"),
        &["status"],
    )
    .unwrap()
}

/// The gauge as (pinned, changed, new).
fn counts(gauge: &prometheus::IntGaugeVec) -> (i64, i64, i64) {
    let get = |s: &str| gauge.with_label_values(&[s]).get();
    (get("pinned"), get("changed"), get("new"))
}

fn hash(n: u8) -> String {
    sha256_hex(&[n])
}

async fn observe(
    pins: &ToolPins,
    name: &str,
    n: u8,
) -> (DefinitionStatus, Option<Transition>, Option<String>) {
    let (info, transition) = pins.observe("fs", name, &hash(n), &[]).await.unwrap();
    (info.status, transition, info.hash)
}

on_both!(tofu_pins_the_first_definition_and_flags_changes);
async fn tofu_pins_the_first_definition_and_flags_changes(db: TestDb) {
    use DefinitionStatus::{Changed, New, Pinned};
    let g = gauge();
    let pins = ToolPins::load(db.store().await, Pinning::Tofu, g.clone())
        .await
        .unwrap();
    assert_eq!(pins.info("fs", "read_file").status, New);
    assert_eq!(pins.info("fs", "read_file").hash, None);

    let steps = [
        (1, Pinned, Some(Transition::New)),
        (1, Pinned, None),
        (2, Changed, Some(Transition::Changed)),
        // Reported once per distinct hash, not on every list.
        (2, Changed, None),
        (3, Changed, Some(Transition::Changed)),
        // Back to the pinned definition: pinned again, nothing to report.
        (1, Pinned, None),
        (2, Changed, Some(Transition::Changed)),
    ];
    for (i, (n, status, transition)) in steps.into_iter().enumerate() {
        assert_eq!(
            observe(&pins, "read_file", n).await,
            (status, transition, Some(hash(n))),
            "step {i}"
        );
        assert_eq!(pins.info("fs", "read_file").status, status, "step {i}");
    }
    let record = &pins.list(None)[0];
    assert_eq!(record.pinned_hash, Some(hash(1)));
    assert_eq!(record.current_hash, hash(2));
    assert_eq!(record.approved_at, None);
    assert_eq!(counts(&g), (0, 1, 0));

    observe(&pins, "write_file", 7).await;
    assert_eq!(counts(&g), (1, 1, 0));
}

on_both!(approve_waits_for_an_admin);
async fn approve_waits_for_an_admin(db: TestDb) {
    use DefinitionStatus::{Changed, New, Pinned};
    let g = gauge();
    let pins = ToolPins::load(db.store().await, Pinning::Approve, g.clone())
        .await
        .unwrap();
    assert_eq!(
        observe(&pins, "exec", 1).await,
        (New, Some(Transition::New), Some(hash(1)))
    );
    assert_eq!(observe(&pins, "exec", 1).await, (New, None, Some(hash(1))));
    // A new version of a definition nobody approved yet is reported like the first one.
    assert_eq!(
        observe(&pins, "exec", 2).await,
        (New, Some(Transition::New), Some(hash(2)))
    );
    assert_eq!(pins.list(None)[0].pinned_hash, None);
    assert_eq!(counts(&g), (0, 0, 1));

    let approved = pins.approve("fs", "exec").await.unwrap();
    assert_eq!(approved.status, Pinned);
    assert_eq!(
        approved.pinned_hash,
        Some(hash(2)),
        "the current definition is pinned"
    );
    assert!(approved.approved_at.is_some());
    assert_eq!(pins.info("fs", "exec").status, Pinned);
    assert_eq!(counts(&g), (1, 0, 0));
    assert!(matches!(
        pins.approve("fs", "exec").await,
        Err(ApproveError::AlreadyPinned { .. })
    ));
    assert!(matches!(
        pins.approve("fs", "never_listed").await,
        Err(ApproveError::NotFound { .. })
    ));
    assert!(matches!(
        pins.approve("other", "exec").await,
        Err(ApproveError::NotFound { .. })
    ));

    assert_eq!(
        observe(&pins, "exec", 3).await,
        (Changed, Some(Transition::Changed), Some(hash(3)))
    );
    let approved = pins.approve("fs", "exec").await.unwrap();
    assert_eq!(approved.pinned_hash, Some(hash(3)));
    assert_eq!(
        observe(&pins, "exec", 3).await,
        (Pinned, None, Some(hash(3)))
    );
    assert_eq!(
        observe(&pins, "exec", 2).await,
        (Changed, Some(Transition::Changed), Some(hash(2))),
        "the definition approved before is not the pinned one any more"
    );
}

on_both!(a_restart_keeps_every_pin);
async fn a_restart_keeps_every_pin(db: TestDb) {
    use DefinitionStatus::{Changed, New, Pinned};
    let pins = ToolPins::load(db.store().await, Pinning::Approve, gauge())
        .await
        .unwrap();
    observe(&pins, "a_pinned", 1).await;
    pins.approve("fs", "a_pinned").await.unwrap();
    observe(&pins, "b_changed", 1).await;
    pins.approve("fs", "b_changed").await.unwrap();
    observe(&pins, "b_changed", 2).await;
    let poisoning = vec!["hidden_instruction".to_owned()];
    pins.observe("fs", "c_new", &hash(5), &poisoning)
        .await
        .unwrap();
    let before = pins.list(None);
    drop(pins);

    let g = gauge();
    let pins = ToolPins::load(db.store().await, Pinning::Approve, g.clone())
        .await
        .unwrap();
    assert_eq!(pins.list(None), before);
    assert_eq!(counts(&g), (1, 1, 1));
    assert_eq!(pins.info("fs", "b_changed").status, Changed);
    assert_eq!(pins.info("fs", "c_new").poisoning, poisoning);
    // Already reported before the restart: not again.
    assert_eq!(
        observe(&pins, "b_changed", 2).await,
        (Changed, None, Some(hash(2)))
    );
    assert_eq!(
        observe(&pins, "a_pinned", 1).await,
        (Pinned, None, Some(hash(1)))
    );
    assert_eq!(observe(&pins, "c_new", 5).await, (New, None, Some(hash(5))));
}

on_both!(a_second_instance_keeps_the_first_pin);
async fn a_second_instance_keeps_the_first_pin(db: TestDb) {
    let store = db.store().await;
    let first = ToolPins::load(store.clone(), Pinning::Tofu, gauge())
        .await
        .unwrap();
    let second = ToolPins::load(store, Pinning::Tofu, gauge()).await.unwrap();
    observe(&first, "read_file", 1).await;
    // The second instance never saw the tool, but the database holds the first one's pin.
    assert_eq!(
        observe(&second, "read_file", 2).await,
        (
            DefinitionStatus::Changed,
            Some(Transition::Changed),
            Some(hash(2))
        )
    );
    assert_eq!(second.list(None)[0].pinned_hash, Some(hash(1)));
}

on_both!(names_holding_secrets_are_never_stored);
async fn names_holding_secrets_are_never_stored(db: TestDb) {
    let store = db.store().await;
    let pins = ToolPins::load(store.clone(), Pinning::Tofu, gauge())
        .await
        .unwrap();
    let long = "é".repeat(300);
    for name in [GITHUB_TOKEN, long.as_str()] {
        let (info, transition) = pins.observe("fs", name, &hash(1), &[]).await.unwrap();
        assert_eq!(transition, Some(Transition::New));
        assert_eq!(info.status, DefinitionStatus::Pinned);
        // Looked up by the name as the upstream gives it, and by its stored form.
        assert_eq!(pins.info("fs", name).status, DefinitionStatus::Pinned);
        let stored = pins.stored_name(name);
        assert_eq!(pins.info("fs", &stored).status, DefinitionStatus::Pinned);
        assert_eq!(
            pins.stored_name(&stored),
            stored,
            "a stored name is its own stored form"
        );
        assert_eq!(observe(&pins, name, 2).await.1, Some(Transition::Changed));
    }
    let names: Vec<String> = store
        .tool_definitions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 2);
    let digest = &sha256_hex(GITHUB_TOKEN.as_bytes())[..16];
    assert!(names.contains(&format!("[REDACTED]#{digest}")), "{names:?}");
    let capped = names.iter().find(|n| n.starts_with('é')).unwrap();
    assert!(capped.len() <= MAX_NAME_BYTES, "{}", capped.len());
    assert!(capped.ends_with(&format!("#{}", &sha256_hex(long.as_bytes())[..16])));
    assert!(!names.iter().any(|n| n.contains("ghp_")));
    // Approved by the name as the upstream gives it, then by its stored form as the API shows it.
    let approved = pins.approve("fs", GITHUB_TOKEN).await.unwrap();
    assert_eq!(approved.name, format!("[REDACTED]#{digest}"));
    assert!(matches!(
        pins.approve("fs", &approved.name).await,
        Err(ApproveError::AlreadyPinned { .. })
    ));
}

on_both!(the_list_puts_changes_first);
async fn the_list_puts_changes_first(db: TestDb) {
    let pins = ToolPins::load(db.store().await, Pinning::Approve, gauge())
        .await
        .unwrap();
    observe(&pins, "z_pinned", 1).await;
    pins.approve("fs", "z_pinned").await.unwrap();
    observe(&pins, "y_changed", 1).await;
    pins.approve("fs", "y_changed").await.unwrap();
    observe(&pins, "y_changed", 2).await;
    observe(&pins, "x_new", 1).await;
    let names = |status| -> Vec<String> { pins.list(status).into_iter().map(|r| r.name).collect() };
    assert_eq!(names(None), ["y_changed", "x_new", "z_pinned"]);
    assert_eq!(names(Some(DefinitionStatus::Changed)), ["y_changed"]);
    assert_eq!(names(Some(DefinitionStatus::New)), ["x_new"]);
    assert_eq!(names(Some(DefinitionStatus::Pinned)), ["z_pinned"]);
}

on_both!(switching_to_tofu_pins_what_waited);
async fn switching_to_tofu_pins_what_waited(db: TestDb) {
    let store = db.store().await;
    let pins = ToolPins::load(store.clone(), Pinning::Approve, gauge())
        .await
        .unwrap();
    observe(&pins, "exec", 1).await;
    drop(pins);
    let pins = ToolPins::load(store, Pinning::Tofu, gauge()).await.unwrap();
    assert_eq!(
        observe(&pins, "exec", 1).await,
        (DefinitionStatus::Pinned, None, Some(hash(1)))
    );
    assert_eq!(pins.list(None)[0].pinned_hash, Some(hash(1)));
}

on_both!(an_unchanged_listing_costs_no_write);
async fn an_unchanged_listing_costs_no_write(db: TestDb) {
    let store = db.store().await;
    let pins = ToolPins::load(store.clone(), Pinning::Tofu, gauge())
        .await
        .unwrap();
    observe(&pins, "read_file", 1).await;
    let stored = store.tool_definitions().await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(observe(&pins, "read_file", 1).await.1, None);
    let listed = pins.list(None).remove(0);
    assert!(
        listed.last_seen > stored.last_seen,
        "last_seen moves in memory"
    );
    assert_eq!(
        store.tool_definitions().await.unwrap().remove(0),
        stored,
        "but the row is not written again within a minute"
    );
    // A change is written at once, with the newest last_seen.
    observe(&pins, "read_file", 2).await;
    let changed = store.tool_definitions().await.unwrap().remove(0);
    assert_eq!(changed.status, "changed");
    assert_eq!(changed.last_seen, pins.list(None)[0].last_seen);
}

#[test]
fn a_changed_row_without_a_pin_stays_changed() {
    let record = ToolRecord {
        upstream: "fs".into(),
        name: "t".into(),
        status: DefinitionStatus::Changed,
        pinned_hash: None,
        current_hash: hash(1),
        poisoning: Vec::new(),
        first_seen: "2026-01-01T00:00:00.000000Z".into(),
        last_seen: "2026-01-01T00:00:00.000000Z".into(),
        approved_at: None,
    };
    let Step::Next { record, transition } = step_from(
        &record,
        Pinning::Tofu,
        &hash(2),
        &[],
        "2026-01-02T00:00:00.000000Z",
    ) else {
        panic!("a new hash is a change");
    };
    assert_eq!(record.status, DefinitionStatus::Changed);
    assert_eq!(transition, Some(Transition::Changed));
    assert_eq!(record.last_seen, "2026-01-02T00:00:00.000000Z");
}

on_both!(a_list_changed_notification_leaves_definitions_unverified_until_listed_again);
async fn a_list_changed_notification_leaves_definitions_unverified_until_listed_again(db: TestDb) {
    use DefinitionStatus::{Changed, Pinned};
    let pins = ToolPins::load(db.store().await, Pinning::Tofu, gauge())
        .await
        .unwrap();
    observe(&pins, "read_file", 1).await;
    observe(&pins, "write_file", 2).await;
    assert_eq!(pins.list_changed("other-upstream"), 0);
    assert_eq!(pins.list_changed("fs"), 2);
    // Unverified: judged as changed, with the hash last seen, though nothing was listed yet.
    let info = pins.info("fs", "read_file");
    assert_eq!((info.status, info.hash), (Changed, Some(hash(1))));
    // Listed again unchanged (the cached fast path): verified, pinned.
    assert_eq!(observe(&pins, "read_file", 1).await.0, Pinned);
    assert_eq!(pins.info("fs", "read_file").status, Pinned);
    // Not listed again: still unverified.
    assert_eq!(pins.info("fs", "write_file").status, Changed);
}
