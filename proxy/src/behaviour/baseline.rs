//! One agent's baseline and the score of each of its calls: pure arithmetic over a time the caller passes
//! (unix milliseconds), so tests drive it with a hand-moved clock and nothing here sleeps, locks or writes.
//!
//! What it keeps, over `behavior.window_seconds` (W):
//! - **call rate**: calls per rate bucket (W / 60, at least one second), a ring of 60 buckets. The z-score of a
//!   call is `(current − mean) / σ` where `current` is the calls in the current bucket (this one included), and
//!   `mean` and the standard deviation are over the completed buckets since the agent's first call (at most 59);
//!   `σ = max(sd, √mean, 1)`, so a perfectly steady agent's first extra call is not infinitely surprising. With
//!   fewer than [`MIN_HISTORY`] completed buckets the z-score is 0.
//! - **tool mix**: a count per tool, decayed by `e^(−Δt/W)`, and the total of those counts.
//! - **deny rate**: denied calls decayed the same way, over the same total; and a ring of ten buckets over
//!   `behavior.deny_spike_window_seconds` for the `deny_spike` rule.
//! - **distinct targets**: a 64-bit FNV-1a hash of each target seen (never the target), at most
//!   [`MAX_TARGETS`]; a full set starts over.
//!
//! The score (0..1) of a call: `0.35·rate + 0.25·mix + 0.25·deny + 0.15·target`, where `rate =
//! clamp(z / (2·alert_zscore), 0, 1)`, `mix` is 1 for a tool never called and otherwise `1 − share of this tool`
//! once the decayed total reaches [`MIX_MIN_CALLS`] (0 before), `deny` is the decayed deny rate before this call,
//! and `target` is 1 for a target not seen before. docs/behaviour.md states the same.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use toolgate_engine::input::BehaviorInfo;

/// Rate buckets per window.
pub const RATE_BUCKETS: usize = 60;
/// Deny buckets per deny-spike window.
pub const DENY_BUCKETS: usize = 10;
/// Completed rate buckets needed before the rate counts.
pub const MIN_HISTORY: i64 = 3;
/// Decayed calls needed before the tool mix counts.
pub const MIX_MIN_CALLS: f64 = 5.0;
/// Distinct tools one baseline remembers.
pub const MAX_TOOLS: usize = 1024;
/// Distinct target hashes one baseline remembers.
pub const MAX_TARGETS: usize = 4096;

const W_RATE: f64 = 0.35;
const W_MIX: f64 = 0.25;
const W_DENY: f64 = 0.25;
const W_TARGET: f64 = 0.15;

/// The knobs of the arithmetic, from `[behavior]`.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub window_ms: i64,
    pub alert_zscore: f64,
    pub deny_window_ms: i64,
}

impl Params {
    pub fn of(settings: &crate::config::BehaviorSettings) -> Params {
        Params {
            window_ms: settings.window_seconds as i64 * 1000,
            alert_zscore: settings.alert_zscore,
            deny_window_ms: settings.deny_spike_window_seconds as i64 * 1000,
        }
    }

    fn rate_bucket_ms(&self) -> i64 {
        (self.window_ms / RATE_BUCKETS as i64).max(1000)
    }

    fn deny_bucket_ms(&self) -> i64 {
        (self.deny_window_ms / DENY_BUCKETS as i64).max(1000)
    }
}

/// What one call did to its agent's baseline, and how unusual it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub info: BehaviorInfo,
    /// Calls in the current rate bucket, this one included.
    pub current_rate: u32,
    /// Calls this baseline has seen, this one included.
    pub calls: u64,
}

/// Calls and denials over the deny-spike window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenyWindow {
    pub calls: u32,
    pub denied: u32,
}

/// A remembered tool: its name as stored (redacted), and its decayed count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolCount {
    stored: String,
    weight: f64,
    at_ms: i64,
}

/// One agent's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    rate: Vec<u32>,
    rate_bucket: i64,
    first_bucket: i64,
    deny: Vec<(u32, u32)>,
    deny_bucket: i64,
    calls: u64,
    /// Decayed calls and denials, both as of `at_ms`.
    total: f64,
    denied: f64,
    at_ms: i64,
    /// Keyed by the name as the agent sent it (kept in memory only); `stored` is what a snapshot writes.
    tools: HashMap<String, ToolCount>,
    targets: HashSet<u64>,
}

/// A baseline as the database keeps it: tool names as stored (redacted), targets as hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub rate: Vec<u32>,
    pub rate_bucket: i64,
    pub first_bucket: i64,
    pub deny: Vec<(u32, u32)>,
    pub deny_bucket: i64,
    pub calls: u64,
    pub total: f64,
    pub denied: f64,
    pub at_ms: i64,
    /// `[stored name, decayed count, at_ms]`.
    pub tools: Vec<(String, f64, i64)>,
    /// Target hashes, 16 hex digits each.
    pub targets: Vec<String>,
}

impl Baseline {
    pub fn new(now_ms: i64, params: &Params) -> Baseline {
        Baseline {
            rate: vec![0; RATE_BUCKETS],
            rate_bucket: now_ms.div_euclid(params.rate_bucket_ms()),
            first_bucket: now_ms.div_euclid(params.rate_bucket_ms()),
            deny: vec![(0, 0); DENY_BUCKETS],
            deny_bucket: now_ms.div_euclid(params.deny_bucket_ms()),
            calls: 0,
            total: 0.0,
            denied: 0.0,
            at_ms: now_ms,
            tools: HashMap::new(),
            targets: HashSet::new(),
        }
    }

    /// Scores one call (before the policy) and adds it to the baseline. `stored` names the tool as the snapshot
    /// may write it; it is called once per new tool, not per call.
    pub fn observe(
        &mut self,
        now_ms: i64,
        params: &Params,
        tool: Option<&str>,
        stored: impl FnOnce(&str) -> String,
        target: Option<&str>,
    ) -> Observation {
        self.advance_rate(now_ms, params);
        self.decay_to(now_ms, params);
        // What was known before this call.
        let known_tool = tool.and_then(|t| self.tools.get_mut(t));
        let new_tool = tool.is_some() && known_tool.is_none();
        let mix = match known_tool {
            None if new_tool => 1.0,
            None => 0.0,
            Some(count) => {
                count.weight *= decay(now_ms - count.at_ms, params);
                count.at_ms = now_ms;
                if self.total >= MIX_MIN_CALLS {
                    (1.0 - count.weight / self.total).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
        };
        let deny = if self.total > 0.0 {
            (self.denied / self.total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let target_hash = target.map(fnv1a);
        let new_target = target_hash.is_some_and(|h| !self.targets.contains(&h));

        // This call joins the baseline.
        let slot = self.rate_bucket.rem_euclid(RATE_BUCKETS as i64) as usize;
        self.rate[slot] = self.rate[slot].saturating_add(1);
        self.calls += 1;
        self.total += 1.0;
        if let Some(t) = tool {
            if let Some(count) = self.tools.get_mut(t) {
                count.weight += 1.0;
            } else if self.tools.len() < MAX_TOOLS || self.evict_faded_tools(now_ms, params) {
                self.tools.insert(
                    t.to_owned(),
                    ToolCount {
                        stored: stored(t),
                        weight: 1.0,
                        at_ms: now_ms,
                    },
                );
            }
            // Otherwise full of tools still in use: this one stays "new" until room is made.
        }
        if let Some(h) = target_hash {
            if self.targets.len() >= MAX_TARGETS {
                self.targets.clear();
            }
            self.targets.insert(h);
        }

        let current = self.rate[slot];
        let zscore = self.zscore(current);
        let rate = (zscore / (2.0 * params.alert_zscore)).clamp(0.0, 1.0);
        let score = W_RATE * rate
            + W_MIX * mix
            + W_DENY * deny
            + W_TARGET * if new_target { 1.0 } else { 0.0 };
        Observation {
            info: BehaviorInfo {
                score: score.clamp(0.0, 1.0),
                zscore,
                new_tool,
            },
            current_rate: current,
            calls: self.calls,
        }
    }

    /// Adds a judged call's verdict (known after the policy) and answers the deny-spike window.
    pub fn judged(&mut self, now_ms: i64, params: &Params, denied: bool) -> DenyWindow {
        self.decay_to(now_ms, params);
        if denied {
            self.denied += 1.0;
        }
        let bucket = now_ms.div_euclid(params.deny_bucket_ms());
        let gap = bucket - self.deny_bucket;
        if gap > 0 {
            for i in 1..=gap.min(DENY_BUCKETS as i64) {
                let slot = (self.deny_bucket + i).rem_euclid(DENY_BUCKETS as i64) as usize;
                self.deny[slot] = (0, 0);
            }
            self.deny_bucket = bucket;
        }
        let slot = self.deny_bucket.rem_euclid(DENY_BUCKETS as i64) as usize;
        let (calls, denials) = &mut self.deny[slot];
        *calls = calls.saturating_add(1);
        if denied {
            *denials = denials.saturating_add(1);
        }
        let (calls, denied) = self.deny.iter().fold((0u32, 0u32), |(c, d), (bc, bd)| {
            (c.saturating_add(*bc), d.saturating_add(*bd))
        });
        DenyWindow { calls, denied }
    }

    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// When the agent last called (or a verdict was added), unix milliseconds.
    pub fn last_call_ms(&self) -> i64 {
        self.at_ms
    }

    /// The z-score of `current` calls in this bucket against the completed buckets before it.
    fn zscore(&self, current: u32) -> f64 {
        let history = (self.rate_bucket - self.first_bucket).min(RATE_BUCKETS as i64 - 1);
        if history < MIN_HISTORY {
            return 0.0;
        }
        let (mut sum, mut squares) = (0.0, 0.0);
        for i in 1..=history {
            let slot = (self.rate_bucket - i).rem_euclid(RATE_BUCKETS as i64) as usize;
            let n = f64::from(self.rate[slot]);
            sum += n;
            squares += n * n;
        }
        let n = history as f64;
        let mean = sum / n;
        let sd = (squares / n - mean * mean).max(0.0).sqrt();
        let sigma = sd.max(mean.sqrt()).max(1.0);
        (f64::from(current) - mean) / sigma
    }

    fn advance_rate(&mut self, now_ms: i64, params: &Params) {
        let bucket = now_ms.div_euclid(params.rate_bucket_ms());
        let gap = bucket - self.rate_bucket;
        if gap <= 0 {
            return;
        }
        for i in 1..=gap.min(RATE_BUCKETS as i64) {
            let slot = (self.rate_bucket + i).rem_euclid(RATE_BUCKETS as i64) as usize;
            self.rate[slot] = 0;
        }
        self.rate_bucket = bucket;
    }

    fn decay_to(&mut self, now_ms: i64, params: &Params) {
        if now_ms > self.at_ms {
            let f = decay(now_ms - self.at_ms, params);
            self.total *= f;
            self.denied *= f;
            self.at_ms = now_ms;
        }
    }

    /// Drops the tools whose decayed count has faded below a hundredth of a call; answers whether room was made.
    fn evict_faded_tools(&mut self, now_ms: i64, params: &Params) -> bool {
        let before = self.tools.len();
        self.tools
            .retain(|_, c| c.weight * decay(now_ms - c.at_ms, params) >= 0.01);
        self.tools.len() < before
    }

    /// The baseline as the database keeps it.
    pub fn snapshot(&self) -> Snapshot {
        let mut tools: Vec<(String, f64, i64)> = Vec::with_capacity(self.tools.len());
        for c in self.tools.values() {
            // Two names that redact alike are one stored tool.
            match tools.iter_mut().find(|(s, _, _)| *s == c.stored) {
                Some(t) => {
                    t.1 += c.weight;
                    t.2 = t.2.max(c.at_ms);
                }
                None => tools.push((c.stored.clone(), c.weight, c.at_ms)),
            }
        }
        tools.sort_by(|a, b| a.0.cmp(&b.0));
        let mut targets: Vec<String> = self.targets.iter().map(|h| format!("{h:016x}")).collect();
        targets.sort();
        Snapshot {
            rate: self.rate.clone(),
            rate_bucket: self.rate_bucket,
            first_bucket: self.first_bucket,
            deny: self.deny.clone(),
            deny_bucket: self.deny_bucket,
            calls: self.calls,
            total: self.total,
            denied: self.denied,
            at_ms: self.at_ms,
            tools,
            targets,
        }
    }

    /// A baseline back from its snapshot; rings of another length (another build) start empty.
    pub fn restore(snapshot: Snapshot, now_ms: i64, params: &Params) -> Baseline {
        let mut b = Baseline::new(now_ms, params);
        if snapshot.rate.len() == RATE_BUCKETS {
            b.rate = snapshot.rate;
            b.rate_bucket = snapshot.rate_bucket;
            b.first_bucket = snapshot.first_bucket.min(snapshot.rate_bucket);
        }
        if snapshot.deny.len() == DENY_BUCKETS {
            b.deny = snapshot.deny;
            b.deny_bucket = snapshot.deny_bucket;
        }
        b.calls = snapshot.calls;
        let finite = |x: f64| if x.is_finite() && x >= 0.0 { x } else { 0.0 };
        b.total = finite(snapshot.total);
        b.denied = finite(snapshot.denied).min(b.total);
        b.at_ms = snapshot.at_ms.min(now_ms);
        for (stored, weight, at_ms) in snapshot.tools.into_iter().take(MAX_TOOLS) {
            b.tools.insert(
                stored.clone(),
                ToolCount {
                    stored,
                    weight: finite(weight),
                    at_ms: at_ms.min(now_ms),
                },
            );
        }
        b.targets = snapshot
            .targets
            .iter()
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .take(MAX_TARGETS)
            .collect();
        b
    }
}

/// `e^(−Δt/W)`: what a count is worth `dt_ms` later.
fn decay(dt_ms: i64, params: &Params) -> f64 {
    if dt_ms <= 0 {
        return 1.0;
    }
    (-(dt_ms as f64) / params.window_ms as f64).exp()
}

/// 64-bit FNV-1a: a stable, cheap fingerprint of a target, so the baseline knows it saw one without keeping it.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;
