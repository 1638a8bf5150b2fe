//! What a connection is doing, so that one that is doing nothing useful is closed: silent or trickling before a
//! complete request head (`server.header_read_timeout_seconds`), or idle between requests
//! (`server.idle_timeout_seconds`).
//!
//! The same rule holds for HTTP/1.1, HTTP/2 and TLS, because it is read off two facts every protocol has: bytes
//! arriving (the [`Watched`] stream below any TLS) and requests in flight (a [`Busy`] guard lives from the
//! service call until its response body is finished or dropped). A connection with a request in flight (a
//! long SSE stream, a held escalation) is never timed out.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerSettings;

/// Why an idle connection was closed (the `reason` label of `toolgate_connections_timed_out_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete request head in time after the connection opened or its next request began.
    HeaderTimeout,
    /// No new request in time after the last response.
    IdleTimeout,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::HeaderTimeout => "header_timeout",
            Expiry::IdleTimeout => "idle_timeout",
        }
    }
}

/// One connection's activity, shared by its stream, its service and its watchdog.
pub struct Activity {
    opened: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// Milliseconds since `opened` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Milliseconds since `opened`, plus one, of the first byte read while idle (0 = none since idle).
    head_started_ms: AtomicU64,
    /// Wakes the watchdog when its deadline may have moved earlier (idle again, a head begins).
    changed: Notify,
}

impl Activity {
    pub fn new(settings: &ServerSettings) -> Arc<Activity> {
        Activity::with_timeouts(settings.header_read_timeout(), settings.idle_timeout())
    }

    fn with_timeouts(header_timeout: Duration, idle_timeout: Duration) -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            header_timeout,
            idle_timeout,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// A request was handed to the service: the connection is busy until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// No request is in flight.
    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
            && self
                .head_started_ms
                .compare_exchange(0, self.now_ms() + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// When the connection expires if nothing changes, and why; `None` while a request is in flight.
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = self.at(self.idle_since_ms.load(Ordering::Acquire));
        // Before its first request a connection owes its head within the header timeout; afterwards it may
        // rest for the idle timeout.
        let mut expiry = if self.requests.load(Ordering::Relaxed) == 0 {
            (idle_since + self.header_timeout, Expiry::HeaderTimeout)
        } else {
            (idle_since + self.idle_timeout, Expiry::IdleTimeout)
        };
        let started = self.head_started_ms.load(Ordering::Acquire);
        if started > 0 {
            let head_deadline = self.at(started - 1) + self.header_timeout;
            if head_deadline < expiry.0 {
                expiry = (head_deadline, Expiry::HeaderTimeout);
            }
        }
        Some(expiry)
    }

    /// Resolves when the connection has expired, with why. Cancel-safe: it only reads the state.
    pub async fn expired(&self) -> Expiry {
        loop {
            match self.deadline() {
                None => self.changed.notified().await,
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// Proof that a request is in flight on a connection; the connection counts as idle again once every guard
/// is dropped.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        // The idle clock starts before the count reaches zero, so the watchdog never sees an idle connection
        // with an old `idle_since`.
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Release);
        activity.head_started_ms.store(0, Ordering::Release);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.changed.notify_one();
        }
    }
}

/// A response body that keeps its request's [`Busy`] guard until the body ends or is dropped.
pub struct BusyBody<B> {
    inner: B,
    busy: Option<Busy>,
}

impl<B> BusyBody<B> {
    pub fn new(inner: B, busy: Busy) -> BusyBody<B> {
        BusyBody {
            inner,
            busy: Some(busy),
        }
    }
}

impl<B> HttpBody for BusyBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's byte stream, reporting each read to the connection's [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `elapsed` is `want`, give or take scheduling (real time: tokio's paused clock is not built here). Up to
    /// 2 ms early too: tokio's timer wheel counts whole milliseconds from the runtime's start, so a deadline
    /// can fire within a millisecond before the instant it was computed from (seen: 199.8 ms for 200 ms).
    fn about(elapsed: Duration, want: Duration) {
        assert!(
            elapsed + 2 * MS >= want && elapsed < want + 150 * MS,
            "{elapsed:?} is not about {want:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_expires_at_the_header_timeout() {
        let a = Activity::with_timeouts(200 * MS, 2000 * MS);
        let t0 = Instant::now();
        assert_eq!(a.expired().await, Expiry::HeaderTimeout);
        about(t0.elapsed(), 200 * MS);
    }

    #[tokio::test]
    async fn in_flight_requests_never_expire_and_idle_counts_from_the_last_response() {
        let a = Activity::with_timeouts(100 * MS, 300 * MS);
        let busy = a.busy();
        assert!(
            tokio::time::timeout(600 * MS, a.expired()).await.is_err(),
            "a busy connection stays open past both timeouts"
        );
        drop(busy);
        let t0 = Instant::now();
        assert_eq!(a.expired().await, Expiry::IdleTimeout);
        about(t0.elapsed(), 300 * MS);
    }

    #[tokio::test]
    async fn a_head_begun_while_idle_must_complete_within_the_header_timeout() {
        let a = Activity::with_timeouts(200 * MS, 5000 * MS);
        drop(a.busy());
        tokio::time::sleep(100 * MS).await;
        let t0 = Instant::now();
        a.on_read();
        // More trickling bytes do not push the deadline.
        tokio::time::sleep(100 * MS).await;
        a.on_read();
        assert_eq!(a.expired().await, Expiry::HeaderTimeout);
        about(t0.elapsed(), 200 * MS);
    }
}
