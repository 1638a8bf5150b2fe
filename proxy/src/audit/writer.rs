//! The single audit writer: the one task that owns the chain head, assigns `seq`, seals and commits events in
//! batches (group commit) and acknowledges each event once it is durable. Nothing else writes audit rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use toolgate_engine::chain::{AuditEvent, ChainHead, EventDraft};

use super::checkpoint::{Checkpoint, CheckpointKind, Signer, Sink};
use super::retention::Retention;
use super::store::{AuditStore, INDEX_HASHES_EVERY};
use super::stored::StoredDraft;
use super::{timestamp, AuditError, AuditMetrics, AuditSettings};

/// Proof that an event is durable. Only the writer makes one, so code that must not forward an unrecorded
/// call can demand it as an argument.
#[derive(Debug, Clone)]
pub struct Durable {
    id: String,
    seq: i64,
    event_hash: String,
}

impl Durable {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn event_hash(&self) -> &str {
        &self.event_hash
    }
}

/// Handle to the audit log: cheap to clone; sends drafts to the single writer task.
#[derive(Clone)]
pub struct AuditLog {
    requests: mpsc::Sender<Request>,
    committed: broadcast::Sender<Arc<AuditEvent>>,
    /// How many events failed to commit so far (changes on each failure): what watches the writer waits on it.
    failed: watch::Receiver<u64>,
    store: AuditStore,
    chain_id: Arc<str>,
    signer: Arc<Signer>,
    sink: Option<Arc<Sink>>,
    retention: Arc<Retention>,
    /// Stops the retention task when the log is closed.
    retention_stop: Arc<tokio::sync::Notify>,
    /// Consumers that must have read an event before retention may prune it (the SIEM sinks); set once at
    /// start.
    retention_hold: Arc<std::sync::OnceLock<Arc<dyn RetentionHold>>>,
}

/// A consumer of the log that retention waits for: nothing after its [`RetentionHold::ceiling`] is pruned.
pub trait RetentionHold: Send + Sync {
    /// The highest seq of `chain` that may be pruned (`i64::MAX`: no limit).
    fn ceiling<'a>(
        &'a self,
        chain: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<i64, AuditError>>;

    /// Retention would have pruned `chain` through `wanted` but stopped at `ceiling`.
    fn held<'a>(
        &'a self,
        chain: &'a str,
        wanted: i64,
        ceiling: i64,
    ) -> futures_util::future::BoxFuture<'a, ()>;
}

enum Request {
    Append {
        // Boxed: the queue holds up to `queue_capacity` requests, most of them waiting appends. Stored, not
        // raw: the writer seals only what redaction and capping let through.
        draft: Box<StoredDraft>,
        /// `None` for an enqueued event (nobody waits for its commit): it may be held for the next commit.
        ack: Option<oneshot::Sender<Result<Durable, AuditError>>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
    /// Sign a checkpoint of the head now (if it moved since the last one).
    Checkpoint {
        done: oneshot::Sender<()>,
    },
}

/// How many committed events a live consumer may fall behind before it starts losing them.
const FEED_CAPACITY: usize = 4096;

impl AuditLog {
    /// Connects (SQLite: creates a missing file, WAL journal, busy timeout; PostgreSQL by URL scheme), runs
    /// the migrations, loads this chain's head from the newest stored row (a restart continues the chain) and
    /// spawns the writer task.
    pub async fn open(
        settings: &AuditSettings,
        metrics: AuditMetrics,
    ) -> Result<AuditLog, AuditError> {
        Self::open_with(settings, metrics, crate::outbound::client()).await
    }

    /// [`AuditLog::open`] with the proxy's one outbound client, for a checkpoint sink URL.
    pub async fn open_with(
        settings: &AuditSettings,
        metrics: AuditMetrics,
        client: crate::outbound::HttpClient,
    ) -> Result<AuditLog, AuditError> {
        let signer = Arc::new(Signer::load_or_create(&settings.signing_key_path())?);
        let mut trusted = super::checkpoint::TrustedKeys::parse_all(&settings.trusted_public_keys)?;
        trusted.push(signer.verifying_key());
        let store = AuditStore::open(
            &settings.database_url,
            settings.durability,
            Duration::from_secs(settings.connect_timeout_seconds.max(1)),
        )
        .await?
        .with_trusted_keys(super::checkpoint::TrustedKeys::new(trusted));
        let chain_id = settings.effective_chain_id();
        // Before the head is read: another live writer on this chain would move it under us.
        let chain_lock = store.lock_chain(chain_id).await?;
        let (head, last_timestamp) = store.load_head(chain_id).await.map_err(AuditError::Query)?;
        store.init_chain(&head).await.map_err(AuditError::Query)?;
        let checkpointed = store
            .newest_checkpoint(chain_id, CheckpointKind::Head)
            .await?
            .map_or(0, |c| c.seq);
        let sink = match (&settings.checkpoint_dir, &settings.checkpoint_url) {
            (Some(dir), _) => Some(Arc::new(Sink::Dir(dir.clone()))),
            (None, Some(url)) => Some(Arc::new(Sink::Url(url.clone(), Box::new(client)))),
            (None, None) => None,
        };
        let (requests, inbox) = mpsc::channel(settings.queue_capacity.max(1));
        let (committed, _) = broadcast::channel(FEED_CAPACITY);
        let (failed_tx, failed) = watch::channel(0);
        let writer = Writer {
            failed: failed_tx,
            inbox,
            store: store.clone(),
            head,
            head_suspect: false,
            last_timestamp,
            batch_max: settings.batch_max.max(1),
            hold_unwaited: Duration::from_millis(settings.hold_outcomes_ms),
            metrics,
            committed: committed.clone(),
            signer: signer.clone(),
            sink: sink.clone(),
            checkpointed,
            checkpoint_every: Duration::from_secs(settings.checkpoint_interval_seconds.max(1)),
            wal_checkpoint_started: Instant::now(),
            wal_checkpoint_running: Arc::default(),
            publishing: None,
            chain_lock: Some(chain_lock),
            rest_due: None,
            unindexed: 0,
            busy: false,
        };
        tokio::spawn(writer.run());
        let log = AuditLog {
            requests,
            committed,
            failed,
            store,
            chain_id: Arc::from(chain_id),
            signer,
            sink,
            retention: Arc::new(Retention::new(
                settings.retention_days,
                &settings.retention_days_by_tenant,
            )),
            retention_stop: Arc::new(tokio::sync::Notify::new()),
            retention_hold: Arc::default(),
        };
        if !log.retention.keeps_everything() {
            tokio::spawn(log.clone().retention_task());
        }
        Ok(log)
    }

    /// Prunes once an hour (the first time a minute after start); stops when the log is closed.
    async fn retention_task(self) {
        let mut next = tokio::time::Instant::now() + RETENTION_FIRST_RUN;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.retention_stop.notified() => return,
            }
            if let Err(e) = self.prune().await {
                tracing::warn!(error = %e, "audit retention failed");
            }
            next = tokio::time::Instant::now() + RETENTION_EVERY;
        }
    }

    /// Makes retention wait for `hold` (once; a second hold is ignored).
    pub fn hold_retention(&self, hold: Arc<dyn RetentionHold>) {
        let _ = self.retention_hold.set(hold);
    }

    /// Applies `audit.retention_days` (and `audit.retention_days_by_tenant`, see [`super::retention`]) to this
    /// instance's chain now; returns the pruned seq, if any. Events a [`RetentionHold`] still waits for are
    /// kept, and the hold is told so.
    pub async fn prune(&self) -> Result<Option<i64>, AuditError> {
        if self.retention.keeps_everything() {
            return Ok(None);
        }
        let cutoffs = self.retention.cutoffs(time::OffsetDateTime::now_utc());
        let Some(hold) = self.retention_hold.get() else {
            return self
                .store
                .prune(
                    &self.chain_id,
                    &cutoffs,
                    i64::MAX,
                    &self.signer,
                    self.sink.as_deref(),
                )
                .await;
        };
        let ceiling = hold.ceiling(&self.chain_id).await?;
        let pruned = self
            .store
            .prune(
                &self.chain_id,
                &cutoffs,
                ceiling,
                &self.signer,
                self.sink.as_deref(),
            )
            .await?;
        if pruned.is_none_or(|seq| seq >= ceiling) {
            // Held back only if retention would have gone further without the hold.
            if let Some(wanted) = self
                .store
                .prune_point(&self.chain_id, &cutoffs, i64::MAX)
                .await?
                .filter(|&wanted| wanted > ceiling)
            {
                hold.held(&self.chain_id, wanted, ceiling).await;
            }
        }
        Ok(pruned)
    }

    /// Signs, stores and publishes a checkpoint of the head now, if it moved since the last one.
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        let (done, signed) = oneshot::channel();
        self.requests
            .send(Request::Checkpoint { done })
            .await
            .map_err(|_| AuditError::Closed)?;
        signed.await.map_err(|_| AuditError::Closed)
    }

    /// Resolves once the event is committed (durable).
    ///
    /// The draft is first made a [`StoredDraft`] here, in the caller's task: what DLP flags is redacted and
    /// long values are capped (`crate::redaction`), before anything is hashed.
    ///
    /// The writer stamps `timestamp` (RFC 3339 UTC, microseconds) when the draft's is empty and `id` (UUIDv7)
    /// when empty. If the commit fails, every event of that batch gets `Err` and none of them is recorded.
    pub async fn append(&self, draft: EventDraft) -> Result<Durable, AuditError> {
        let (ack, acked) = oneshot::channel();
        self.requests
            .send(Request::Append {
                draft: Box::new(StoredDraft::new(draft)),
                ack: Some(ack),
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        // A dropped ack means the writer stopped before it reached this event.
        acked.await.map_err(|_| AuditError::Closed)?
    }

    /// Queues an event behind everything queued before it without waiting for its commit: for outcome events,
    /// whose answer (often a stream) must not wait on a second commit. It is ordered with every other append
    /// (one queue, one writer), waits only while the queue is full (back-pressure, never a drop), and `close`
    /// commits it before the writer stops, so shutdown loses nothing queued here. A failed commit is counted
    /// and logged by the writer, like any other.
    ///
    /// Nobody waiting, the writer may hold it up to `audit.hold_outcomes_ms` for the next commit someone waits
    /// for (the next call's write-ahead event), so that one fsync carries both instead of one each.
    pub async fn enqueue(&self, draft: EventDraft) -> Result<(), AuditError> {
        self.requests
            .send(Request::Append {
                draft: Box::new(StoredDraft::new(draft)),
                ack: None,
            })
            .await
            .map_err(|_| AuditError::Closed)
    }

    /// Every committed event, in chain order, for live consumers (SSE feed, SIEM). A receiver that lags loses
    /// messages (`RecvError::Lagged`); the writer never waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditEvent>> {
        self.committed.subscribe()
    }

    /// The number of events that failed to commit so far; it changes on each failure, so a watcher can wait for
    /// one instead of polling the failure counter.
    pub fn failures(&self) -> watch::Receiver<u64> {
        self.failed.clone()
    }

    /// Committed events some live consumer has not read yet (each is kept alive until every one has).
    #[cfg(test)]
    pub(crate) fn unread_broadcasts(&self) -> usize {
        self.committed.len()
    }

    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Drains the queue, commits what is pending and stops the writer; later appends get `Closed`.
    ///
    /// A last checkpoint of the head is signed at close.
    pub async fn close(&self) {
        self.retention_stop.notify_waiters();
        let (done, stopped) = oneshot::channel();
        if self.requests.send(Request::Close { done }).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

const RETENTION_FIRST_RUN: Duration = Duration::from_secs(60);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

struct Writer {
    inbox: mpsc::Receiver<Request>,
    store: AuditStore,
    head: ChainHead,
    /// Set after a failed commit: the commit may have reached the database even though it reported an error,
    /// so the head is re-read before the next batch rather than reusing seqs that may be taken.
    head_suspect: bool,
    /// Keeps this chain's timestamps from going backwards when the wall clock does.
    last_timestamp: Option<String>,
    batch_max: usize,
    /// How long events nobody waits for ([`AuditLog::enqueue`]: outcomes) may be held before they are committed
    /// alone. Below saturation each call's outcome then rides in the commit of the next call's write-ahead
    /// event: half the commits (and fsyncs) per call. Bounded, so a lone outcome is still durable within this
    /// time; the timer runs only while such an event is held. `close` and `checkpoint` commit held events at once.
    hold_unwaited: Duration,
    metrics: AuditMetrics,
    committed: broadcast::Sender<Arc<AuditEvent>>,
    failed: watch::Sender<u64>,
    signer: Arc<Signer>,
    sink: Option<Arc<Sink>>,
    /// The seq of the newest stored head checkpoint.
    checkpointed: i64,
    checkpoint_every: Duration,
    /// When the last background WAL checkpoint started, and whether it is still running.
    wal_checkpoint_started: Instant,
    wal_checkpoint_running: Arc<std::sync::atomic::AtomicBool>,
    /// The background copy of the latest periodic checkpoint to the sink, if one may still run: a waiting
    /// checkpoint (explicit, or at close) waits for it first.
    publishing: Option<tokio::task::JoinHandle<()>>,
    /// This process's hold on its chain (PostgreSQL), for as long as the writer runs.
    chain_lock: Option<super::store::ChainLock>,
    /// [`REST_AFTER`] past the last commit: moved by every commit, cleared by the rest, so no timer runs while
    /// the log is idle.
    rest_due: Option<tokio::time::Instant>,
    /// Events committed since the hash lookup was last brought up to the head ([`AuditStore::index_hashes`]).
    unindexed: usize,
    /// The last commit carried more than one event: requests arrive faster than commits end.
    busy: bool,
}

/// How often the writer starts a background WAL checkpoint while it commits (SQLite files). Measured at
/// 2 000 calls/s: every 250 ms, each checkpoint's fsync of the database file was long enough to stall
/// commits behind it (end-to-end p99 ~20 ms); every 50 ms, p99 ~9 ms.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// How long without a commit before the writer has the store give back what the burst left
/// ([`AuditStore::rest`]). Shorter than the quiet time after which the server trims the allocator (500 ms,
/// `server::release::QUIET`, which asserts it at compile time), so the memory is free when that trim runs.
/// Under load commits come far more often and nothing is given back; calls further apart than this each pay a
/// statement preparation and a few page reads from the operating system's cache, when the writer has nothing
/// else to do.
pub(crate) const REST_AFTER: Duration = Duration::from_millis(250);

type Pending = (
    Box<StoredDraft>,
    Option<oneshot::Sender<Result<Durable, AuditError>>>,
);

impl Writer {
    async fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch_max);
        // The first tick is immediate: partitions for today and the next days exist before the first insert.
        let mut housekeeping = tokio::time::interval(self.checkpoint_every);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Held events nobody waits for (see `hold_unwaited`) are committed by this deadline at the latest.
        let mut hold_until: Option<tokio::time::Instant> = None;
        // Whatever the last run committed after its last catch-up (a crash leaves up to a batch) is covered first.
        self.index_hashes().await;
        // Blocking receive for the first request, then whatever else is already queued, then one commit.
        loop {
            let first = tokio::select! {
                request = self.inbox.recv() => match request {
                    Some(request) => request,
                    None => break,
                },
                _ = housekeeping.tick() => {
                    self.store.prepare_partitions().await;
                    self.checkpoint(false).await;
                    continue;
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)),
                    if hold_until.is_some() => {
                    hold_until = None;
                    self.flush(&mut batch).await;
                    continue;
                }
                _ = tokio::time::sleep_until(self.rest_due.unwrap_or_else(tokio::time::Instant::now)),
                    if self.rest_due.is_some() => {
                    self.rest_due = None;
                    if self.unindexed > 0 {
                        self.index_hashes().await;
                    }
                    if let Err(e) = self.store.rest().await {
                        tracing::warn!(error = %e, "audit store rest failed");
                    }
                    continue;
                }
            };
            // Under load, the request tasks already woken get to run before the batch is taken, and add their
            // events to it: a commit carries more of them, so there are fewer commits per call (measured at
            // 5 000 calls/s, BENCHMARKS.md round 9). One call at a time, nothing is waiting and nothing is added.
            if self.busy {
                tokio::task::yield_now().await;
            }
            let mut closing = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Append { draft, ack } => batch.push((draft, ack)),
                    Request::Close { done } => {
                        closing = Some(done);
                        break;
                    }
                    Request::Checkpoint { done } => {
                        self.flush(&mut batch).await;
                        hold_until = None;
                        self.checkpoint(true).await;
                        let _ = done.send(());
                    }
                }
                if batch.len() < self.batch_max {
                    next = self.inbox.try_recv().ok();
                }
            }
            if let Some(done) = closing {
                // Refuse new work, then commit everything already accepted before acknowledging the close.
                self.inbox.close();
                while let Ok(request) = self.inbox.try_recv() {
                    match request {
                        Request::Append { draft, ack } => batch.push((draft, ack)),
                        Request::Close { done } | Request::Checkpoint { done } => drop(done),
                    }
                    if batch.len() >= self.batch_max {
                        self.flush(&mut batch).await;
                    }
                }
                self.flush(&mut batch).await;
                self.checkpoint(true).await;
                if let Some(lock) = self.chain_lock.take() {
                    lock.release().await;
                }
                let _ = done.send(());
                return;
            }
            let someone_waits = batch.iter().any(|(_, ack)| ack.is_some());
            if someone_waits || batch.len() >= self.batch_max || self.hold_unwaited.is_zero() {
                hold_until = None;
                self.flush(&mut batch).await;
            } else if !batch.is_empty() && hold_until.is_none() {
                hold_until = Some(tokio::time::Instant::now() + self.hold_unwaited);
            }
        }
        // Every handle is gone: commit what is held.
        self.flush(&mut batch).await;
    }

    /// Signs a checkpoint of the head if it moved since the last one, stores it, and copies it to the sink
    /// (`wait`: before returning; else in the background, so a slow endpoint never holds up writes).
    async fn checkpoint(&mut self, wait: bool) {
        if wait {
            // A periodic checkpoint of this same head may still be on its way to the sink: a caller that waits
            // (an explicit checkpoint, the close) must find it there even when there is nothing newer to sign.
            if let Some(publishing) = self.publishing.take() {
                let _ = publishing.await;
            }
        }
        if self.head.seq <= self.checkpointed || self.head_suspect {
            return;
        }
        let signed = self.signer.sign(Checkpoint {
            chain_id: self.head.chain_id.clone(),
            kind: CheckpointKind::Head,
            seq: self.head.seq,
            head_hash: self.head.hash.clone(),
            count: self.head.seq,
            timestamp: timestamp::now(),
        });
        if let Err(e) = self.store.insert_checkpoint(&signed).await {
            tracing::warn!(error = %e, "audit checkpoint failed");
            return;
        }
        self.checkpointed = self.head.seq;
        if let Some(sink) = self.sink.clone() {
            if wait {
                sink.publish(&signed).await;
            } else {
                self.publishing = Some(tokio::spawn(async move { sink.publish(&signed).await }));
            }
        }
    }

    /// Starts a background WAL checkpoint if none runs and the last one started a while ago.
    fn start_wal_checkpoint(&mut self) {
        use std::sync::atomic::Ordering;
        if self.wal_checkpoint_started.elapsed() < WAL_CHECKPOINT_EVERY
            || self.wal_checkpoint_running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.wal_checkpoint_started = Instant::now();
        let store = self.store.clone();
        let running = self.wal_checkpoint_running.clone();
        tokio::spawn(async move {
            if let Err(e) = store.checkpoint_wal().await {
                tracing::warn!(error = %e, "audit WAL checkpoint failed");
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Brings the store's hash lookup up to the head (SQLite; see [`AuditStore::index_hashes`]). A failure only
    /// costs lookups time: they read the events past the lookup's cursor directly.
    async fn index_hashes(&mut self) {
        self.unindexed = 0;
        if let Err(e) = self.store.index_hashes().await {
            tracing::warn!(error = %e, "audit hash lookup update failed");
        }
    }

    fn count_failures(&self, events: usize) {
        self.metrics.write_failures.inc_by(events as u64);
        self.failed.send_modify(|n| *n += events as u64);
    }

    async fn flush(&mut self, batch: &mut Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        self.busy = batch.len() > 1;
        if self.head_suspect {
            match self.store.load_head(&self.head.chain_id).await {
                Ok((head, last_timestamp)) => {
                    self.head = head;
                    self.last_timestamp = last_timestamp.max(self.last_timestamp.take());
                    self.head_suspect = false;
                }
                // The head is unknown: fail this batch rather than risk sealing it after a stale head.
                Err(e) => {
                    tracing::warn!(error = %e, "audit head reload failed");
                    self.count_failures(batch.len());
                    tracing::error!(error = %e, events = batch.len(), "audit write failed");
                    let reason = e.to_string();
                    for ack in batch.drain(..).filter_map(|(_, ack)| ack) {
                        let _ = ack.send(Err(AuditError::Write(reason.clone())));
                    }
                    return;
                }
            }
        }

        let (drafts, acks): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let mut head = self.head.clone();
        let mut last_timestamp = self.last_timestamp.clone();
        let mut events = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let mut draft = draft.into_draft();
            if draft.id.is_empty() {
                draft.id = uuid::Uuid::now_v7().to_string();
            }
            if draft.timestamp.is_empty() {
                let now = timestamp::now();
                draft.timestamp = match &last_timestamp {
                    Some(last) if *last > now => last.clone(),
                    _ => now,
                };
            }
            last_timestamp = Some(draft.timestamp.clone()).max(last_timestamp);
            events.push(head.seal(draft));
        }

        let started = Instant::now();
        let result = self.store.insert_batch(&events, &self.head).await;
        self.metrics
            .write_duration
            .observe(started.elapsed().as_secs_f64());

        match result {
            Ok(()) => {
                self.head = head;
                self.last_timestamp = last_timestamp;
                self.start_wal_checkpoint();
                self.rest_due = Some(tokio::time::Instant::now() + REST_AFTER);
                self.unindexed += events.len();
                for (ack, event) in acks.into_iter().zip(events) {
                    // A caller that stopped waiting still has its event recorded.
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(Durable {
                            id: event.id.clone(),
                            seq: event.seq,
                            event_hash: event.event_hash.clone(),
                        }));
                    }
                    // No live consumer is not an error.
                    let _ = self.committed.send(Arc::new(event));
                }
                // After the acknowledgements: the callers of this batch do not wait for the catch-up.
                if self.unindexed >= INDEX_HASHES_EVERY {
                    self.index_hashes().await;
                }
            }
            Err(e) => {
                // Fail closed: every waiter learns its event is not recorded, and the head stays where it was.
                self.head_suspect = true;
                self.count_failures(acks.len());
                tracing::error!(error = %e, events = acks.len(), "audit write failed");
                let reason = e.to_string();
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(AuditError::Write(reason.clone())));
                }
            }
        }
    }
}
