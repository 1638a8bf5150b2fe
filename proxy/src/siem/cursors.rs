//! One committer for every sink's cursor moves. Each sink acknowledges a few batches a second; committed one
//! by one, six sinks made ~30 commits a second on the writer's connection, each an `fsync` that an audit
//! commit (a tool call waiting to be forwarded) had to queue behind. The keeper gathers the moves that arrive
//! together (sinks fed by the same commits finish at nearly the same time) and makes them in one transaction.
//!
//! A move still waits for its own commit: a sink learns whether its cursor moved (it may have lost the lease)
//! before it reads the next batch, so nothing about at-least-once delivery changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::store::CursorMove;
use crate::audit::{AuditError, AuditStore};

/// A cursor move owned by its request (the sink and chain names outlive the sink's borrow).
struct Move {
    sink: Arc<str>,
    chain: String,
    from: i64,
    to: i64,
    sent: i64,
    moved: oneshot::Sender<Result<bool, Arc<AuditError>>>,
}

/// The handle the delivery tasks share; the committing task ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct CursorKeeper {
    moves: mpsc::UnboundedSender<Move>,
    /// Transactions committed so far: what the gathering saves, read by the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl CursorKeeper {
    /// Starts the committing task for `sinks` delivery tasks of `holder`: once a move arrives it waits at most
    /// `gather` for the other sinks' before committing (at once when every sink has one pending).
    pub(super) fn start(
        store: AuditStore,
        holder: String,
        sinks: usize,
        gather: Duration,
    ) -> (CursorKeeper, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(commit_moves(
            rx,
            store,
            holder,
            (sinks.max(1), gather),
            commits.clone(),
        ));
        (CursorKeeper { moves: tx, commits }, task)
    }

    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Makes `m` together with the moves of other sinks that come with it; `false` as
    /// [`AuditStore::siem_advance`] answers it.
    pub(super) async fn advance(&self, m: &CursorMove<'_>) -> Result<bool, Arc<AuditError>> {
        let (moved, answer) = oneshot::channel();
        let request = Move {
            sink: Arc::from(m.sink),
            chain: m.chain.to_owned(),
            from: m.from,
            to: m.to,
            sent: m.sent,
            moved,
        };
        if self.moves.send(request).is_err() {
            return Err(Arc::new(AuditError::Closed));
        }
        answer.await.unwrap_or(Err(Arc::new(AuditError::Closed)))
    }
}

async fn commit_moves(
    mut rx: mpsc::UnboundedReceiver<Move>,
    store: AuditStore,
    holder: String,
    (sinks, gather): (usize, Duration),
    commits: Arc<AtomicU64>,
) {
    let mut pending: Vec<Move> = Vec::with_capacity(sinks);
    while let Some(first) = rx.recv().await {
        pending.push(first);
        let deadline = tokio::time::Instant::now() + gather;
        while pending.len() < sinks {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => pending.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            pending.push(m);
        }
        let moves: Vec<CursorMove<'_>> = pending
            .iter()
            .map(|m| CursorMove {
                sink: &m.sink,
                chain: &m.chain,
                from: m.from,
                to: m.to,
                sent: m.sent,
            })
            .collect();
        let outcome = store.siem_advance_all(&moves, &holder).await;
        drop(moves);
        commits.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(moved) => {
                for (m, moved) in pending.drain(..).zip(moved) {
                    let _ = m.moved.send(Ok(moved));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for m in pending.drain(..) {
                    let _ = m.moved.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CursorKeeper;
    use crate::audit::store::CursorMove;
    use crate::audit::test_db::{on_both, run, Kind, TestDb};

    fn first(sink: &str) -> CursorMove<'_> {
        CursorMove {
            sink,
            chain: "c",
            from: 0,
            to: 10,
            sent: 10,
        }
    }

    /// Six sinks acknowledging together cost one commit; each learns its own outcome (a sink whose lease
    /// another instance holds does not move), and the moves are in the database afterwards.
    async fn moves_arriving_together_are_one_commit(db: TestDb) {
        let store = db.store().await;
        let sinks = ["s0", "s1", "s2", "s3", "s4", "s5"];
        for sink in &sinks[..5] {
            assert!(store
                .siem_take_lease(sink, "me", 0, i64::MAX / 2)
                .await
                .unwrap());
        }
        assert!(store
            .siem_take_lease("s5", "other", 0, i64::MAX / 2)
            .await
            .unwrap());
        let (keeper, task) = CursorKeeper::start(
            store.clone(),
            "me".into(),
            sinks.len(),
            Duration::from_secs(5),
        );
        let started = std::time::Instant::now();
        let moved = futures_util::future::join_all(sinks.iter().map(|s| {
            let keeper = keeper.clone();
            async move { keeper.advance(&first(s)).await.unwrap() }
        }))
        .await;
        // Every sink had its move in: the keeper did not wait out its gathering time.
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(moved, [true, true, true, true, true, false]);
        assert_eq!(keeper.commits(), 1);
        for sink in &sinks[..5] {
            let cursors = store.siem_cursors(sink).await.unwrap();
            assert_eq!((cursors[0].delivered_seq, cursors[0].delivered), (10, 10));
        }
        assert!(store.siem_cursors("s5").await.unwrap().is_empty());
        // The steady state (cursors that exist) is one statement for all: each move still only from where its
        // cursor stands.
        let moved = futures_util::future::join_all(sinks.iter().map(|s| {
            let keeper = keeper.clone();
            let from = if *s == "s4" { 5 } else { 10 };
            async move {
                let m = CursorMove {
                    from,
                    to: 20,
                    sent: 10,
                    ..first(s)
                };
                keeper.advance(&m).await.unwrap()
            }
        }))
        .await;
        assert_eq!(moved, [true, true, true, true, false, false]);
        assert_eq!(keeper.commits(), 2);
        for (sink, want) in [("s0", (20, 20)), ("s3", (20, 20)), ("s4", (10, 10))] {
            let cursors = store.siem_cursors(sink).await.unwrap();
            assert_eq!(
                (cursors[0].delivered_seq, cursors[0].delivered),
                want,
                "{sink}"
            );
        }
        // The task ends with the last handle.
        drop(keeper);
        task.await.unwrap();
        // A lone move waits at most the gathering time, then goes alone; a stale `from` moves nothing.
        let (keeper, _task) =
            CursorKeeper::start(store.clone(), "me".into(), 6, Duration::from_millis(10));
        let next = CursorMove {
            from: 20,
            to: 30,
            ..first("s0")
        };
        assert!(keeper.advance(&next).await.unwrap());
        assert!(!keeper.advance(&next).await.unwrap());
        assert_eq!(keeper.commits(), 2);
    }

    on_both!(moves_arriving_together_are_one_commit);
}
