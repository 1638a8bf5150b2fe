use super::*;

const MIN: i64 = 60_000;

fn params() -> Params {
    Params {
        window_ms: 3_600_000,
        alert_zscore: 3.0,
        deny_window_ms: 300_000,
    }
}

fn call(b: &mut Baseline, now: i64, tool: &str, target: &str) -> Observation {
    b.observe(now, &params(), Some(tool), |t| t.to_owned(), Some(target))
}

#[test]
fn a_steady_agent_then_a_burst_gives_a_rising_zscore() {
    let p = params();
    let mut b = Baseline::new(0, &p);
    // Five calls a minute for ten minutes.
    for minute in 0..10 {
        for i in 0..5 {
            let o = call(&mut b, minute * MIN + i * 1000, "read_file", "/workspace/a");
            assert!(o.info.zscore < 1.5, "steady: {o:?}");
        }
    }
    // Then a burst in the eleventh minute: the z-score rises with each call.
    let mut last = f64::MIN;
    let mut z = Vec::new();
    for i in 0..40 {
        let o = call(&mut b, 10 * MIN + i * 100, "read_file", "/workspace/a");
        assert!(
            o.info.zscore >= last,
            "rising: {last} then {}",
            o.info.zscore
        );
        last = o.info.zscore;
        z.push(o.info.zscore);
    }
    assert!(last > 3.0 * 4.0, "40 calls against a mean of 5: z = {last}");
    let quiet = call(&mut b, 10 * MIN, "read_file", "/workspace/a");
    assert!(
        quiet.info.score > 0.3,
        "the burst shows in the score: {quiet:?}"
    );
}

#[test]
fn the_rate_counts_only_once_the_window_has_data() {
    let p = params();
    let mut b = Baseline::new(0, &p);
    for i in 0..50 {
        let o = call(&mut b, i * 10, "read_file", "/workspace/a");
        assert_eq!(o.info.zscore, 0.0, "no completed buckets yet");
    }
}

#[test]
fn a_new_tool_and_a_familiar_one_score_differently_from_the_first_calls() {
    let p = params();
    let mut b = Baseline::new(0, &p);
    let first = call(&mut b, 0, "read_file", "/workspace/a");
    assert!(first.info.new_tool);
    assert!(
        (first.info.score - (W_MIX + W_TARGET)).abs() < 1e-9,
        "{first:?}"
    );
    let again = call(&mut b, 1000, "read_file", "/workspace/a");
    assert!(!again.info.new_tool);
    assert!(
        again.info.score < first.info.score,
        "{again:?} vs {first:?}"
    );
    // A deny counts at once: the next call carries it.
    b.judged(1500, &p, true);
    let after_deny = call(&mut b, 2000, "read_file", "/workspace/a");
    assert!(after_deny.info.score > again.info.score, "{after_deny:?}");
    // Once the mix has data, a rarely used tool scores above the usual one.
    for i in 0..20 {
        call(&mut b, 3000 + i, "read_file", "/workspace/a");
    }
    call(&mut b, 4000, "write_file", "/workspace/a");
    let usual = call(&mut b, 5000, "read_file", "/workspace/a");
    let rare = call(&mut b, 5001, "write_file", "/workspace/a");
    assert!(rare.info.score > usual.info.score, "{rare:?} vs {usual:?}");
    assert!(!rare.info.new_tool);
    // A new target adds its part.
    let elsewhere = call(&mut b, 5002, "read_file", "/workspace/b");
    assert!(elsewhere.info.score > usual.info.score);
}

#[test]
fn the_deny_window_slides() {
    let p = params();
    let mut b = Baseline::new(0, &p);
    for i in 0..15 {
        let w = b.judged(i * 4000, &p, true);
        assert_eq!(
            w,
            DenyWindow {
                calls: i as u32 + 1,
                denied: i as u32 + 1
            }
        );
    }
    // Six minutes later the denials have left the five-minute window.
    let w = b.judged(6 * MIN, &p, false);
    assert_eq!(
        w,
        DenyWindow {
            calls: 1,
            denied: 0
        }
    );
}

#[test]
fn a_snapshot_restores_the_same_baseline_and_keeps_no_target() {
    let p = params();
    let mut b = Baseline::new(0, &p);
    for i in 0..30 {
        b.observe(
            i * 20_000,
            &p,
            Some("send AKIAIOSFODNN7EXAMPLE"),
            |_| "send [REDACTED:aws_access_key]".to_owned(),
            Some("s3://bucket/AKIAIOSFODNN7EXAMPLE"),
        );
        b.judged(i * 20_000, &p, i % 3 == 0);
    }
    let snap = b.snapshot();
    let text = serde_json::to_string(&snap).unwrap();
    assert!(!text.contains("AKIA"), "{text}");
    let back: Snapshot = serde_json::from_str(&text).unwrap();
    let mut restored = Baseline::restore(back, 600_000, &p);
    let again = restored.snapshot();
    assert_eq!(
        (
            &again.rate,
            again.rate_bucket,
            &again.deny,
            again.calls,
            &again.targets
        ),
        (
            &snap.rate,
            snap.rate_bucket,
            &snap.deny,
            snap.calls,
            &snap.targets
        )
    );
    assert_eq!(again.tools.len(), 1);
    assert!((again.total - snap.total).abs() < 1e-9);
    // The restored baseline knows the target (by its hash) and the tool (by its stored name).
    let o = restored.observe(
        600_001,
        &p,
        Some("send [REDACTED:aws_access_key]"),
        |t| t.to_owned(),
        Some("s3://bucket/AKIAIOSFODNN7EXAMPLE"),
    );
    assert!(!o.info.new_tool);
    assert_eq!(o.calls, 31);
}
