//! `decision-profile [N [POLICY_DIR]]`: N decisions of the shipped policy (or the policies in POLICY_DIR) for
//! the typical call, one after another, and nothing else: a steady target for `valgrind --tool=callgrind` or
//! `perf record` when working on the policy path, or for timing a variant of the policies with `time`
//! (`toolgate-bench` reports the percentiles).

use toolgate_bench::fixtures::{policy_dir, TypicalCall};
use toolgate_engine::policy::PolicySet;

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(100_000), |s| s.parse())?;
    let dir = std::env::args().nth(2).map_or_else(policy_dir, Into::into);
    let set = PolicySet::load(&dir)?;
    let mut evaluator = set.evaluator();
    let call = TypicalCall::new();
    let first = evaluator.decide(call.input())?;
    for _ in 1..n {
        std::hint::black_box(evaluator.decide(call.input())?);
    }
    println!(
        "{n} decisions: {} {}",
        first.verdict().as_str(),
        first.policy_id()
    );
    Ok(())
}
