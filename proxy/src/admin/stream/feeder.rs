//! The task behind one feed connection. It replays the audit log after the client's cursor, then follows the
//! committed events, and writes SSE frames into the response body's bounded channel; hyper takes them from
//! there as fast as the client reads.
//!
//! This instance's own chain arrives live from the writer's broadcast; the chains of other instances sharing
//! the database are read from the store about once a second. Every event moves the cursor of its chain, sent or
//! refused by the filters, so each `id:` says exactly what the client has had.
//!
//! The writer never waits for a feed: the broadcast drops what a receiver has not taken. A client that falls
//! too far behind is told so (`system_notification`, `slow_consumer`, with the id to resume from) and
//! disconnected, before its receiver could lose an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use toolgate_engine::chain::AuditEvent;

use super::cursor::FeedCursor;
use super::frame;
use crate::audit::store::FeedFilter;
use crate::audit::{AuditError, AuditLog};

/// Frames the response body's channel holds beyond those hyper has taken.
pub(super) const BUFFER: usize = 64;
/// Most events one store read returns.
const PAGE: u32 = 256;
/// Most seqs of one chain one store read scans: with narrow filters, a page may need a long stretch of a
/// chain, and reading it in windows keeps each query short and the keep-alives flowing.
const SCAN_WINDOW: i64 = 10_000;
/// Committed events a live client may have waiting behind a full channel before it is dropped as too slow
/// (the writer's broadcast keeps 4096 for each receiver; this stays well inside it).
const MAX_BEHIND: usize = 1024;
/// How long a full channel may stay full before the client is dropped as too slow, however few events wait.
const SLOW_GRACE: Duration = Duration::from_secs(30);
/// How often a feed waiting on a full channel checks how far behind it has fallen.
const BLOCKED_CHECK: Duration = Duration::from_millis(100);
/// How often the chains of other instances are read from the store.
const FOREIGN_POLL: Duration = Duration::from_secs(1);

/// The notices' messages: what happened, and how to go on without a gap.
const SLOW_CONSUMER: &str = "this client fell too far behind the audit log and is disconnected; \
    reconnect with Last-Event-ID set to resume_with to continue without a gap";
const AUDIT_UNAVAILABLE: &str =
    "the audit log could not be read; reconnect with Last-Event-ID set \
    to resume_with to continue without a gap";

/// Why a feed stopped.
enum Stop {
    /// The client went away (the body was dropped).
    Gone,
    /// The client did not keep up.
    Slow,
    /// The audit log could not be read.
    Store(AuditError),
}

/// One client's feed: what it asked for and how far it has got.
pub(super) struct Feed {
    pub audit: AuditLog,
    pub filter: FeedFilter,
    /// For every chain, the seq through which every event was sent or refused by the filters.
    pub cursor: FeedCursor,
    /// The `id:` of the last frame put in the channel: what a client that reads everything it was sent may
    /// resume from.
    pub delivered: String,
    pub out: mpsc::Sender<Bytes>,
    /// The writer's broadcast: subscribed by the handler for a new feed, after the replay for a resumed one.
    pub live: Option<broadcast::Receiver<Arc<AuditEvent>>>,
    pub keepalive_every: Duration,
    pub last_keepalive: Instant,
}

impl Feed {
    /// Feeds until the client goes away or must be dropped; `notice` is a place kept free in the channel for
    /// the last frame, so a full channel still gets it.
    pub async fn run(mut self, notice: mpsc::OwnedPermit<Bytes>) {
        let (kind, message) = match self.feed().await {
            Ok(()) | Err(Stop::Gone) => return,
            Err(Stop::Slow) => {
                tracing::warn!("live feed: a consumer too slow to keep up was disconnected");
                ("slow_consumer", SLOW_CONSUMER)
            }
            Err(Stop::Store(e)) => {
                tracing::warn!(error = %e, "live feed: the audit log could not be read");
                ("audit_unavailable", AUDIT_UNAVAILABLE)
            }
        };
        notice.send(frame::notice_frame(kind, message, &self.delivered));
    }

    async fn feed(&mut self) -> Result<(), Stop> {
        if self.live.is_none() {
            // Resuming: read the log in rounds until a round finds little new, and only then subscribe, so a
            // long replay never runs with a broadcast receiver filling up behind it. The round after the
            // subscription reads what was committed before it; the broadcast has everything after it, and
            // what both carry is dropped by seq.
            while self.catch_up(false).await? >= u64::from(PAGE) {}
            self.live = Some(self.audit.subscribe());
            self.catch_up(false).await?;
        }
        self.follow().await
    }

    /// Live: this instance's chain from the broadcast, the others from the store, keep-alives in between.
    async fn follow(&mut self) -> Result<(), Stop> {
        let every = self.keepalive_every;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(FOREIGN_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Some(live) = self.live.as_mut() else {
                return Ok(());
            };
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) => self.follow_own(&event).await?,
                    // The receiver lost events: the client could not take them as fast as they came.
                    Err(RecvError::Lagged(_)) => return Err(Stop::Slow),
                    // The audit log is closed: the server is stopping.
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = poll.tick() => {
                    self.catch_up(true).await?;
                }
                _ = keepalive.tick() => self.keepalive(),
                _ = self.out.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// One event of this instance's chain from the broadcast.
    async fn follow_own(&mut self, event: &AuditEvent) -> Result<(), Stop> {
        let chain = event.chain_id.as_str();
        let position = self.cursor.position(chain);
        if event.seq <= position {
            // Already replayed from the store.
            return Ok(());
        }
        if event.seq > position + 1 {
            // The broadcast carries every commit in seq order after the subscription, and the replay read
            // everything before it, so this does not happen; if it did, the store has the missing events.
            self.catch_up_chain(chain, event.seq - 1).await?;
        }
        self.cursor.advance(chain, event.seq);
        if self.filter.matches(event) {
            self.send_event(event).await?;
        }
        Ok(())
    }

    /// Reads every chain (but this instance's when `skip_own`) from its cursor up to its stored head; returns
    /// how many seqs the cursor moved.
    async fn catch_up(&mut self, skip_own: bool) -> Result<u64, Stop> {
        let heads = self
            .audit
            .store()
            .chain_heads()
            .await
            .map_err(Stop::Store)?;
        let mut moved = 0;
        for (chain, head) in heads {
            if skip_own && chain == self.audit.chain_id() {
                continue;
            }
            moved += self.catch_up_chain(&chain, head).await?;
        }
        Ok(moved)
    }

    /// Sends the events of `chain` after its cursor through `head` that pass the filters, page by page.
    async fn catch_up_chain(&mut self, chain: &str, head: i64) -> Result<u64, Stop> {
        let start = self.cursor.position(chain);
        loop {
            let after = self.cursor.position(chain);
            if after >= head {
                break;
            }
            let through = head.min(after.saturating_add(SCAN_WINDOW));
            let events = self
                .audit
                .store()
                .chain_events(chain, after, through, &self.filter, PAGE)
                .await
                .map_err(Stop::Store)?;
            let whole_window = events.len() < PAGE as usize;
            for event in &events {
                self.cursor.advance(chain, event.seq);
                self.send_event(event).await?;
            }
            if whole_window {
                // Fewer than a page: nothing else in the window passes the filters.
                self.cursor.advance(chain, through);
            }
            if self.last_keepalive.elapsed() >= self.keepalive_every {
                self.keepalive();
            }
        }
        Ok(u64::try_from(self.cursor.position(chain) - start).unwrap_or(0))
    }

    /// Puts one event in the channel with the cursor as it stands after it.
    async fn send_event(&mut self, event: &AuditEvent) -> Result<(), Stop> {
        let id = self.cursor.encode();
        let frame = frame::event_frame(&id, event);
        let permit = reserve(&self.out, self.live.as_ref()).await?;
        permit.send(frame);
        self.delivered = id;
        Ok(())
    }

    /// A keep-alive comment, unless the channel is full (the client has data waiting anyway).
    fn keepalive(&mut self) {
        self.last_keepalive = Instant::now();
        let _ = self.out.try_send(Bytes::from_static(frame::KEEPALIVE));
    }
}

/// A place in the channel, waiting while the client reads; [`Stop::Slow`] when it falls more than
/// [`MAX_BEHIND`] committed events behind or the channel stays full for [`SLOW_GRACE`].
async fn reserve<'a>(
    out: &'a mpsc::Sender<Bytes>,
    live: Option<&broadcast::Receiver<Arc<AuditEvent>>>,
) -> Result<mpsc::Permit<'a, Bytes>, Stop> {
    match out.try_reserve() {
        Ok(permit) => return Ok(permit),
        Err(mpsc::error::TrySendError::Closed(())) => return Err(Stop::Gone),
        Err(mpsc::error::TrySendError::Full(())) => {}
    }
    let blocked = Instant::now();
    let mut check = tokio::time::interval(BLOCKED_CHECK);
    let place = out.reserve();
    tokio::pin!(place);
    loop {
        tokio::select! {
            permit = &mut place => return permit.map_err(|_| Stop::Gone),
            _ = check.tick() => {
                let behind = live.map_or(0, |l| l.len());
                if behind > MAX_BEHIND || blocked.elapsed() > SLOW_GRACE {
                    return Err(Stop::Slow);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditSettings;
    use toolgate_engine::chain::EventDraft;

    async fn log(dir: &tempfile::TempDir) -> AuditLog {
        let settings = AuditSettings {
            database_url: format!("sqlite://{}", dir.path().join("audit.db").display()),
            signing_key_file: Some(dir.path().join("key")),
            retention_days: 0,
            ..Default::default()
        };
        AuditLog::open(&settings, crate::audit::AuditMetrics::unregistered())
            .await
            .unwrap()
    }

    async fn append(log: &AuditLog, n: usize) {
        for _ in 0..n {
            let draft = EventDraft {
                event_type: "tool_call".into(),
                ..Default::default()
            };
            log.append(draft).await.unwrap();
        }
    }

    /// Runs a feed from `cursor` as the handler does; the channel's receiving end.
    fn start(
        log: &AuditLog,
        cursor: FeedCursor,
        live: Option<broadcast::Receiver<Arc<AuditEvent>>>,
    ) -> mpsc::Receiver<Bytes> {
        let (out, body) = mpsc::channel(BUFFER + 1);
        let notice = out.clone().try_reserve_owned().unwrap();
        let feed = Feed {
            audit: log.clone(),
            filter: FeedFilter::default(),
            delivered: cursor.encode(),
            cursor,
            out,
            live,
            keepalive_every: Duration::from_secs(60),
            last_keepalive: Instant::now(),
        };
        tokio::spawn(feed.run(notice));
        body
    }

    /// The seqs of the next `n` events in the channel.
    async fn seqs(body: &mut mpsc::Receiver<Bytes>, n: usize) -> Vec<i64> {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.recv())
                .await
                .expect("a frame within 10 s")
                .expect("the feed goes on");
            let text = String::from_utf8(frame.to_vec()).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let event: serde_json::Value = serde_json::from_str(data).unwrap();
            seqs.push(event["seq"].as_i64().unwrap());
        }
        seqs
    }

    #[tokio::test]
    async fn a_broadcast_event_the_cursor_covers_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(&dir).await;
        // Subscribed before these commits, the receiver holds them; the cursor taken after covers them.
        let live = log.subscribe();
        append(&log, 3).await;
        let heads = log.store().chain_heads().await.unwrap();
        let mut body = start(&log, FeedCursor::at(&heads), Some(live));
        append(&log, 2).await;
        assert_eq!(seqs(&mut body, 2).await, [4, 5]);
        log.close().await;
    }

    #[tokio::test]
    async fn a_gap_before_a_broadcast_event_is_filled_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(&dir).await;
        append(&log, 3).await;
        let live = log.subscribe();
        let mut cursor = FeedCursor::default();
        cursor.advance(log.chain_id(), 1);
        let mut body = start(&log, cursor, Some(live));
        append(&log, 1).await;
        assert_eq!(seqs(&mut body, 3).await, [2, 3, 4]);
        log.close().await;
    }
}
