//! The events this instance committed to its own chain, as the audit writer broadcast them, kept by a sink's
//! delivery task so that a sink keeping up takes its next batch from memory instead of reading it back from the
//! database (six sinks used to read and decode every event six times, on the same connection pool the tool
//! calls write through).
//!
//! The database stays the truth: a batch is taken from here only when the events kept start exactly after the
//! sink's persisted cursor and run without a gap, so it holds what the database read would have held. Anything
//! else (another chain, a sink behind, a receiver that lagged and lost broadcasts, a restart) reads the database.

use std::collections::VecDeque;
use std::sync::Arc;

use toolgate_engine::chain::AuditEvent;

use crate::audit::store::FeedFilter;

pub(super) struct Recent {
    chain: Arc<str>,
    /// Consecutive seqs of `chain`, oldest first.
    events: VecDeque<Arc<AuditEvent>>,
    /// Most events kept: a sink further behind reads the database.
    cap: usize,
}

impl Recent {
    pub(super) fn new(chain: &str, cap: usize) -> Recent {
        Recent {
            chain: Arc::from(chain),
            events: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Keeps a committed event of this instance's chain; one that does not follow the last kept starts over.
    pub(super) fn remember(&mut self, event: Arc<AuditEvent>) {
        if *event.chain_id != *self.chain {
            return;
        }
        if self
            .events
            .back()
            .is_some_and(|last| last.seq + 1 != event.seq)
        {
            self.events.clear();
        }
        self.events.push_back(event);
        if self.events.len() > self.cap {
            self.events.pop_front();
        }
    }

    /// The seq of the newest event kept: this instance's chain is committed at least that far.
    pub(super) fn last_seq(&self) -> Option<i64> {
        self.events.back().map(|e| e.seq)
    }

    /// Broadcasts were lost (the receiver lagged): nothing kept can be trusted to be gap-free any more.
    pub(super) fn forget(&mut self) {
        self.events.clear();
    }

    /// The events of `chain` after `from` through `head` that pass `filter`, at most `max`, and the seq the
    /// cursor may move to once they are delivered (the last event looked at, so events the filter skipped are
    /// passed too); `None` when the events kept do not start right after `from`.
    pub(super) fn batch(
        &mut self,
        chain: &str,
        from: i64,
        head: i64,
        filter: &FeedFilter,
        max: usize,
    ) -> Option<(Vec<Arc<AuditEvent>>, i64)> {
        if chain != &*self.chain {
            return None;
        }
        while self.events.front().is_some_and(|e| e.seq <= from) {
            self.events.pop_front();
        }
        if self.events.front()?.seq != from + 1 {
            return None;
        }
        let mut batch = Vec::new();
        let mut to = from;
        for event in self.events.iter().take_while(|e| e.seq <= head) {
            to = event.seq;
            if filter.matches(event) {
                batch.push(event.clone());
                if batch.len() >= max {
                    break;
                }
            }
        }
        (to > from).then_some((batch, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(chain: &str, seq: i64, event_type: &str) -> Arc<AuditEvent> {
        let mut head = toolgate_engine::chain::ChainHead::genesis(chain);
        let mut event = head.seal(toolgate_engine::chain::EventDraft {
            event_type: event_type.to_owned(),
            ..Default::default()
        });
        event.seq = seq;
        Arc::new(event)
    }

    fn seqs(batch: &[Arc<AuditEvent>]) -> Vec<i64> {
        batch.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_batch_starts_right_after_the_cursor_and_stops_at_the_head_or_the_limit() {
        let mut recent = Recent::new("c", 100);
        for seq in 1..=10 {
            recent.remember(event("c", seq, "tool_call"));
        }
        let all = FeedFilter::default();
        let (batch, to) = recent.batch("c", 3, 8, &all, 100).unwrap();
        assert_eq!((seqs(&batch), to), (vec![4, 5, 6, 7, 8], 8));
        let (batch, to) = recent.batch("c", 3, 10, &all, 2).unwrap();
        assert_eq!((seqs(&batch), to), (vec![4, 5], 5));
        // Delivered through 5: what is kept before it goes.
        let (batch, _) = recent.batch("c", 5, 10, &all, 100).unwrap();
        assert_eq!(seqs(&batch), vec![6, 7, 8, 9, 10]);
        // Nothing past the cursor, another chain, or a cursor the kept events do not reach: the database.
        assert!(recent.batch("c", 10, 10, &all, 100).is_none());
        assert!(recent.batch("other", 5, 10, &all, 100).is_none());
        assert!(recent.batch("c", 2, 10, &all, 100).is_none());
    }

    #[test]
    fn the_filter_skips_events_and_the_cursor_passes_them() {
        let mut recent = Recent::new("c", 100);
        for (seq, kind) in [(1, "tool_call"), (2, "session_start"), (3, "session_start")] {
            recent.remember(event("c", seq, kind));
        }
        let calls = FeedFilter {
            event_types: vec!["tool_call".to_owned()],
            ..FeedFilter::default()
        };
        let (batch, to) = recent.batch("c", 0, 3, &calls, 100).unwrap();
        assert_eq!((seqs(&batch), to), (vec![1], 3));
    }

    #[test]
    fn a_gap_lost_broadcasts_or_the_cap_send_the_sink_back_to_the_database() {
        let all = FeedFilter::default();
        let mut recent = Recent::new("c", 100);
        recent.remember(event("c", 1, "tool_call"));
        recent.remember(event("c", 3, "tool_call"));
        assert!(
            recent.batch("c", 0, 3, &all, 100).is_none(),
            "seq 2 was never seen"
        );
        assert_eq!(
            seqs(&recent.batch("c", 2, 3, &all, 100).unwrap().0),
            vec![3]
        );
        recent.forget();
        assert!(recent.batch("c", 2, 3, &all, 100).is_none());

        let mut small = Recent::new("c", 3);
        for seq in 1..=5 {
            small.remember(event("c", seq, "tool_call"));
        }
        assert!(
            small.batch("c", 0, 5, &all, 100).is_none(),
            "1 and 2 fell out"
        );
        assert_eq!(
            seqs(&small.batch("c", 2, 5, &all, 100).unwrap().0),
            vec![3, 4, 5]
        );
        // Another chain's events are never kept.
        small.remember(event("d", 6, "tool_call"));
        assert_eq!(
            seqs(&small.batch("c", 2, 6, &all, 100).unwrap().0),
            vec![3, 4, 5]
        );
    }
}
