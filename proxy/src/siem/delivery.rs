//! The delivery task of one sink: hold the sink's lease, read the next batch after the sink's cursor (one
//! chain at a time, in seq order; from this instance's newest committed events kept in memory when they start
//! right after the cursor, see [`super::recent`], else from the database), send it, retry with capped exponential back-off until the sink acknowledged
//! every event, and only then move the cursor. The task reads the audit log; it never waits on, nor is waited
//! on by, a request.
//!
//! At least once: the cursor moves after the acknowledgement, so a crash between the two re-sends that one
//! batch, nothing more. The cursor only moves from where this task read it, and only under the lease, so two
//! instances never both advance a sink; an instance that lost the lease mid-batch drops the batch and the new
//! holder sends it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use toolgate_engine::chain::AuditEvent;

use super::attempt::{Attempt, Why};
use super::cursors::CursorKeeper;
use super::failure::Failures;
use super::recent::Recent;
use super::Sink;
use crate::audit::store::CursorMove;
use crate::audit::{AuditError, AuditLog, AuditStore};
use crate::telemetry::SiemMetrics;

/// The next events owed to the sink: from `chain`, after `from`; the cursor moves to `to` once they are
/// acknowledged (past events the filter skipped, too).
struct Batch {
    chain: String,
    from: i64,
    to: i64,
    events: Vec<Arc<AuditEvent>>,
}

pub(super) struct Delivery {
    sink: Arc<Sink>,
    store: AuditStore,
    audit: AuditLog,
    holder: String,
    metrics: SiemMetrics,
    stop: watch::Receiver<bool>,
    failures: Failures,
    /// The chain served last, so that a busy chain does not starve the others.
    last_chain: Option<String>,
    /// When this task last took or renewed the lease (`None`: it does not hold it).
    renewed: Option<std::time::Instant>,
    /// This instance's newest committed events, for batches that need no database read.
    recent: Recent,
    /// What the audit writer broadcasts as it commits. Read at every wait, whatever the task waits for: a
    /// receiver left unread keeps the writer's last `FEED_CAPACITY` events alive (a sink failing through an
    /// outage, a standby instance's sinks for as long as another instance holds the lease).
    committed: broadcast::Receiver<Arc<AuditEvent>>,
    /// Events past the cursors at the last read, over every chain (the lag gauge's value).
    lag: i64,
    /// Commits this sink's cursor moves together with the other sinks'.
    cursors: CursorKeeper,
    /// What the last database read said, kept up to date by this task's own moves; `None`: read it again.
    known: Option<Known>,
}

/// The chains' heads and the sink's cursors as last read from the database, kept between batches while the
/// task holds the lease: nobody else moves its cursors then (a move is a compare-and-set from where this task
/// put them, so a lease lost unnoticed shows as a failed move, which drops all of this). Before, every pass
/// read both back: two queries per batch per sink on the pool the tool calls also use.
struct Known {
    /// Head seq by chain; this instance's own chain follows the writer's broadcasts in between.
    heads: BTreeMap<String, i64>,
    /// Delivered seq by chain (absent: 0).
    cursors: BTreeMap<String, i64>,
    /// Other instances' chains move without telling: heads are read again after `poll`.
    read_at: Instant,
}

/// What a waiting task does with the events the writer broadcasts meanwhile.
#[derive(Clone, Copy)]
enum Heard {
    /// Keeps them for the next batch (the task keeps up and waits for more).
    Keep,
    /// Drops them, and what was kept: the task will read from the database (it is behind, or not delivering).
    Drop,
}

/// Why the task stopped working on a batch.
enum Interrupted {
    Stopped,
    LeaseLost,
}

impl Delivery {
    pub(super) fn new(
        sink: Arc<Sink>,
        audit: AuditLog,
        holder: String,
        metrics: SiemMetrics,
        stop: watch::Receiver<bool>,
        cursors: CursorKeeper,
    ) -> Delivery {
        // Two batches' worth: a sink that keeps up never falls off the end between two reads.
        let recent = Recent::new(audit.chain_id(), sink.settings.batch_max.saturating_mul(2));
        let committed = audit.subscribe();
        Delivery {
            failures: Failures::new(sink.clone(), audit.clone(), metrics.clone()),
            store: audit.store().clone(),
            sink,
            audit,
            holder,
            metrics,
            stop,
            last_chain: None,
            renewed: None,
            recent,
            committed,
            lag: 0,
            cursors,
            known: None,
        }
    }

    /// Keeps what the writer broadcast, or forgets everything kept when broadcasts were lost.
    fn heard(&mut self, received: Result<Arc<AuditEvent>, broadcast::error::RecvError>) {
        match received {
            Ok(event) => self.recent.remember(event),
            Err(broadcast::error::RecvError::Lagged(_)) => self.recent.forget(),
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    pub(super) async fn run(mut self) {
        // Committed events of this instance wake the task at once; other instances' chains are polled.
        let poll = self.sink.settings.poll();
        loop {
            if *self.stop.borrow() {
                break;
            }
            // Every wake-up queued so far is answered by the read below: take them all (each one an event kept
            // for that read), so a burst of commits does not turn into as many empty reads afterwards.
            loop {
                match self.committed.try_recv() {
                    Ok(event) => self.recent.remember(event),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => self.recent.forget(),
                    Err(_) => break,
                }
            }
            match self.renew_lease().await {
                Ok(true) => {}
                Ok(false) => {
                    self.set_state("standby");
                    if self
                        .sleep(self.sink.settings.lease() / 3, Heard::Drop)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    self.store_failed(&e);
                    if self
                        .sleep(self.sink.settings.backoff_max(), Heard::Drop)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            }
            let batch = match self.next_batch().await {
                Ok(batch) => batch,
                Err(e) => {
                    self.store_failed(&e);
                    if self.sleep(poll, Heard::Drop).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let Some(batch) = batch else {
                self.set_state(if self.failures.failing() {
                    "failing"
                } else {
                    "idle"
                });
                let woken = tokio::select! {
                    received = self.committed.recv() => {
                        self.heard(received);
                        true
                    }
                    _ = tokio::time::sleep(poll) => false,
                    _ = self.stop.changed() => break,
                };
                let linger = self.sink.settings.linger();
                if woken && !linger.is_zero() && self.sleep(linger, Heard::Keep).await.is_err() {
                    break;
                }
                continue;
            };
            // A batch shorter than `batch_max` took everything there was: wait `linger` for more before the next
            // read, so a busy log goes out in batches of a few dozen events (their cursor moves gathered into one
            // commit) instead of a trickle of one-commit batches right behind the writer. Not much longer: a
            // large batch is a burst of CPU that the tool calls' p99 feels (docs/siem.md, `linger_ms`).
            let short = batch.events.len() < self.sink.settings.batch_max;
            match self.deliver(batch).await {
                Ok(()) => {
                    let linger = self.sink.settings.linger();
                    if short && !linger.is_zero() && self.sleep(linger, Heard::Keep).await.is_err()
                    {
                        break;
                    }
                }
                Err(Interrupted::Stopped) => break,
                Err(Interrupted::LeaseLost) => {
                    self.renewed = None;
                    self.known = None;
                    tracing::info!(sink = %self.sink.name(), "SIEM sink lease lost: another instance delivers");
                }
            }
        }
        if let Err(e) = self
            .store
            .siem_release_lease(self.sink.name(), &self.holder)
            .await
        {
            tracing::warn!(sink = %self.sink.name(), error = %e, "SIEM sink lease not released");
        }
    }

    /// Takes or renews the lease for `lease_seconds`. A lease renewed less than a third of its time ago is
    /// still held (nobody may take it before it expires), so the database is not written on every pass: on
    /// SQLite each renewal is a write that waits for the audit writer's lock.
    async fn renew_lease(&mut self) -> Result<bool, AuditError> {
        let fresh = self
            .renewed
            .is_some_and(|at| at.elapsed() < self.sink.settings.lease() / 3);
        if fresh {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let held = take_lease(&self.store, &self.sink, &self.holder).await?;
        if self.renewed.is_none() || !held {
            // Taken afresh (or lost): another instance may have moved the cursors meanwhile.
            self.known = None;
        }
        self.renewed = held.then_some(started);
        Ok(held)
    }

    /// The next batch owed, from the chain after the last one served that has events past the cursor. Also
    /// sets the lag gauge (events past the cursor over every chain).
    async fn next_batch(&mut self) -> Result<Option<Batch>, AuditError> {
        let poll = self.sink.settings.poll();
        if self
            .known
            .as_ref()
            .is_none_or(|k| k.read_at.elapsed() >= poll)
        {
            let read_at = Instant::now();
            let heads = self.store.chain_heads().await?.into_iter().collect();
            let cursors = self
                .store
                .siem_cursors(self.sink.name())
                .await?
                .into_iter()
                .map(|c| (c.chain_id, c.delivered_seq))
                .collect();
            self.known = Some(Known {
                heads,
                cursors,
                read_at,
            });
        }
        let Some(known) = self.known.as_mut() else {
            return Ok(None);
        };
        if let Some(last) = self.recent.last_seq() {
            let head = known
                .heads
                .entry(self.audit.chain_id().to_owned())
                .or_insert(0);
            *head = (*head).max(last);
        }
        let cursor_of = |chain: &str| known.cursors.get(chain).copied().unwrap_or(0);
        let lag: i64 = known
            .heads
            .iter()
            .map(|(chain, head)| (head - cursor_of(chain)).max(0))
            .sum();
        self.lag = lag;
        self.metrics.lag(self.sink.name()).set(lag);
        let owed: Vec<(&String, &i64)> = known
            .heads
            .iter()
            .filter(|(chain, head)| **head > cursor_of(chain))
            .collect();
        // Round robin: the first owed chain after the last one served.
        let next = owed
            .iter()
            .find(|(chain, _)| self.last_chain.as_deref() < Some(chain.as_str()))
            .or_else(|| owed.first());
        let Some((chain, head)) = next.map(|&(c, h)| (c.clone(), *h)) else {
            return Ok(None);
        };
        let from = cursor_of(&chain);
        self.last_chain = Some(chain.clone());
        if let Some((events, to)) = self.recent.batch(
            &chain,
            from,
            head,
            &self.sink.filter,
            self.sink.settings.batch_max,
        ) {
            return Ok(Some(Batch {
                chain,
                from,
                to,
                events,
            }));
        }
        let limit = u32::try_from(self.sink.settings.batch_max).unwrap_or(u32::MAX);
        let events: Vec<Arc<AuditEvent>> = self
            .store
            .chain_events(&chain, from, head, &self.sink.filter, limit)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        // A full batch ends at its last event; a short one holds every matching event up to the head, so the
        // cursor may pass the skipped ones too.
        let to = if events.len() >= self.sink.settings.batch_max {
            events.last().map_or(head, |e| e.seq)
        } else {
            head
        };
        Ok(Some(Batch {
            chain,
            from,
            to,
            events,
        }))
    }

    /// Sends `batch` until every event is acknowledged, then moves the cursor.
    async fn deliver(&mut self, batch: Batch) -> Result<(), Interrupted> {
        let mut pending: Vec<&AuditEvent> = batch.events.iter().map(|e| &**e).collect();
        let mut backoff = self.sink.settings.backoff_initial();
        while !pending.is_empty() {
            self.set_state(if self.failures.failing() {
                "failing"
            } else {
                "delivering"
            });
            // The lease is renewed while the sink takes its time, so a slow answer does not hand the sink to
            // another instance. A stop does not wait for a slow sink: the batch is abandoned and re-sent from
            // the cursor later.
            let sent = {
                let sink = self.sink.clone();
                let send = sink.send(&pending);
                tokio::pin!(send);
                let mut renew = tokio::time::interval(self.sink.settings.lease() / 3);
                renew.tick().await;
                loop {
                    tokio::select! {
                        sent = &mut send => break sent,
                        _ = renew.tick() => {
                            match take_lease(&self.store, &self.sink, &self.holder).await {
                                Ok(false) => return Err(Interrupted::LeaseLost),
                                Ok(true) => self.renewed = Some(std::time::Instant::now()),
                                Err(_) => {}
                            }
                        }
                        _ = self.stop.changed() => return Err(Interrupted::Stopped),
                    }
                }
            };
            let (why, wait) = match sent.attempt {
                Attempt::Ok => break,
                Attempt::Retry(why) => (why, backoff),
                Attempt::DontRetry(why) => (why, self.sink.settings.backoff_max()),
                Attempt::Partial { failed, why, retry } => {
                    pending = failed
                        .iter()
                        .filter_map(|&i| pending.get(i).copied())
                        .collect();
                    let wait = if retry {
                        backoff
                    } else {
                        self.sink.settings.backoff_max()
                    };
                    (why, wait)
                }
            };
            let why = Why::new(why.reason, self.sink.scrub(&why.detail));
            self.failures
                .attempt_failed(&why, sent.reply.as_ref().map(|r| r.status))
                .await;
            tracing::debug!(sink = %self.sink.name(), reason = why.reason, retry_in_ms = wait.as_millis() as u64, "SIEM delivery attempt failed");
            self.pause(wait).await?;
            backoff = (backoff * 2).min(self.sink.settings.backoff_max());
        }
        let sent = batch.events.len();
        match self
            .cursors
            .advance(&CursorMove {
                sink: self.sink.name(),
                chain: &batch.chain,
                from: batch.from,
                to: batch.to,
                sent: i64::try_from(sent).unwrap_or(i64::MAX),
            })
            .await
        {
            Ok(true) => {
                if let Some(known) = self.known.as_mut() {
                    known.cursors.insert(batch.chain.clone(), batch.to);
                }
                self.metrics.delivered(self.sink.name()).inc_by(sent as u64);
                // The gauge follows the cursor at once, not at the next read (which may linger).
                self.lag = (self.lag - (batch.to - batch.from)).max(0);
                self.metrics.lag(self.sink.name()).set(self.lag);
                self.sink.health().last_delivery_at = Some(crate::telemetry::format_rfc3339(
                    time::OffsetDateTime::now_utc(),
                ));
                self.failures.delivered().await;
                Ok(())
            }
            // Someone else moved the cursor or holds the lease now: the batch is theirs to (re)send.
            Ok(false) => {
                self.known = None;
                Err(Interrupted::LeaseLost)
            }
            Err(e) => {
                self.known = None;
                // Delivered but not recorded: the next pass re-sends the batch (receivers de-duplicate by
                // event_hash); nothing is lost.
                self.store_failed(&e);
                self.pause(self.sink.settings.backoff_initial()).await
            }
        }
    }

    /// Waits `wait`, renewing the lease on the way; stops early when the task is stopped or the lease is lost.
    async fn pause(&mut self, wait: Duration) -> Result<(), Interrupted> {
        let step = (self.sink.settings.lease() / 3).max(Duration::from_millis(100));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            // The sink is behind now and reads what was committed meanwhile from the database: nothing is kept
            // for it, so an outage holds the failed batch and nothing more.
            self.sleep(step.min(deadline - now), Heard::Drop).await?;
            if let Ok(false) = self.renew_lease().await {
                return Err(Interrupted::LeaseLost);
            }
        }
    }

    /// Sleeps `wait` unless the task is stopped first, taking what the writer broadcasts meanwhile as `heard`
    /// says.
    async fn sleep(&mut self, wait: Duration, heard: Heard) -> Result<(), Interrupted> {
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return Ok(()),
                _ = self.stop.changed() => return Err(Interrupted::Stopped),
                received = self.committed.recv() => match (received, heard) {
                    // The writer is gone: nothing more will come.
                    (Err(broadcast::error::RecvError::Closed), _) => {
                        tokio::select! {
                            _ = &mut until => return Ok(()),
                            _ = self.stop.changed() => return Err(Interrupted::Stopped),
                        }
                    }
                    (received, Heard::Keep) => self.heard(received),
                    (_, Heard::Drop) => self.recent.forget(),
                },
            }
        }
    }

    fn set_state(&self, state: &'static str) {
        self.sink.health().state = state;
    }

    /// The audit database failed under the task (reading the log, the cursor or the lease).
    fn store_failed(&self, e: &AuditError) {
        tracing::warn!(sink = %self.sink.name(), error = %e, "SIEM delivery cannot read or move its cursor");
        self.sink.health().last_error = Some(serde_json::json!({
            "reason": "audit_database",
            "detail": e.to_string(),
            "at": crate::telemetry::format_rfc3339(time::OffsetDateTime::now_utc()),
        }));
    }
}

/// Takes or renews `sink`'s lease for `holder`, for `lease_seconds` from now. A free function, so that it can
/// run beside a borrow of the task's other fields.
async fn take_lease(store: &AuditStore, sink: &Sink, holder: &str) -> Result<bool, AuditError> {
    let ttl = i64::try_from(sink.settings.lease().as_millis()).unwrap_or(i64::MAX);
    store
        .siem_take_lease(sink.name(), holder, now_ms(), ttl)
        .await
}

/// Milliseconds since the Unix epoch: the clock of the lease (instances sharing a database must keep their
/// clocks in step to well under `lease_seconds`).
fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}
