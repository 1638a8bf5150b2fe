//! SQLite's change signal: the database file's writes, as the kernel reports them (inotify).
//!
//! PostgreSQL tells every instance what changed; a SQLite file tells nobody, and other processes may write it
//! (a second instance on the same file, an operator's `sqlite3`). Without a signal the background tasks that
//! must see such changes (the kill switch, escalations decided elsewhere, runs, alerts) would have to read the
//! database several times a second forever, idle or not. With it they sleep until the file is written, by
//! anyone: a commit of this process's audit writer, or another process's.
//!
//! The directory is watched rather than the files, so a write-ahead log that SQLite deletes and creates again is
//! still seen. One look per [`PERIOD`] at most: after each signal the watcher takes the watch out of the
//! runtime's poll set and sleeps; the writes made meanwhile (which the kernel queues, merging repeats) are read
//! when it wakes and make one more signal. Only a whole quiet period puts the watch back in the poll set. So
//! under load the tasks look as often as they would poll and the writes wake nobody, idle nothing runs, and a
//! write is signalled within [`PERIOD`].

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use inotify::{Event, EventMask, Inotify, WatchMask};
use tokio::sync::{broadcast, oneshot};

use super::Change;

/// At most one [`Change::Written`] per this long; a write is signalled within it.
pub const PERIOD: Duration = Duration::from_millis(250);

/// Watches `file` (a SQLite database) and its journals for writes; each burst is a [`Change::Written`] on `tx`.
/// The watch ends when `stop`'s sender is dropped (with the last clone of the bus), or when `tx` has no sender
/// left. An error means the kernel refused the watch (no inotify, too many watches): the caller polls instead.
pub(super) fn start(
    file: &Path,
    tx: broadcast::WeakSender<Change>,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
        .to_owned();
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let names = journal_names(&name);
    let inotify = Inotify::init()?;
    inotify.watches().add(
        &dir,
        WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::DELETE,
    )?;
    tokio::spawn(async move {
        let mut inotify = inotify;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            // Armed: the file descriptor is in the runtime's poll set, so the first write wakes this task.
            let mut events = match inotify.into_event_stream(std::mem::take(&mut buffer)) {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "the audit database's watch failed; its upkeep reads it several times a second");
                    return poll(tx, stop).await;
                }
            };
            let first = tokio::select! {
                event = events.next() => event,
                _ = &mut stop => return,
            };
            let Some(first) = first else {
                return poll(tx, stop).await;
            };
            // Disarmed until the directory is quiet again: every write would otherwise wake a runtime thread
            // (the kernel wakes the poller on each event it cannot merge), under load thousands a second.
            inotify = events.into_inotify();
            buffer = vec![0u8; 16 * 1024];
            let mut written = concerns(&first, &names);
            loop {
                if written {
                    let Some(tx) = tx.upgrade() else { return };
                    let _ = tx.send(Change::Written);
                }
                tokio::select! {
                    () = tokio::time::sleep(PERIOD) => {}
                    _ = &mut stop => return,
                }
                // What the kernel queued meanwhile (merging repeats): nothing means quiet, so re-arm.
                let Some(burst) = drain(&mut inotify, &mut buffer, &names) else {
                    break;
                };
                written = burst;
            }
        }
    });
    Ok(())
}

/// Without a watch, what the tasks would do without a signal: look every [`PERIOD`].
async fn poll(tx: broadcast::WeakSender<Change>, mut stop: oneshot::Receiver<()>) {
    loop {
        let Some(sender) = tx.upgrade() else { return };
        let _ = sender.send(Change::Written);
        drop(sender);
        tokio::select! {
            () = tokio::time::sleep(PERIOD) => {}
            _ = &mut stop => return,
        }
    }
}

/// Reads every queued event without waiting: `None` if there was none, else whether one concerns the database.
fn drain(inotify: &mut Inotify, buffer: &mut [u8], names: &[OsString; 3]) -> Option<bool> {
    let mut any = false;
    let mut written = false;
    loop {
        match inotify.read_events(buffer) {
            Ok(events) => {
                for event in events {
                    any = true;
                    written |= event.mask.contains(EventMask::Q_OVERFLOW)
                        || event
                            .name
                            .is_some_and(|n| names.iter().any(|m| m.as_os_str() == n));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // Cannot tell what happened: assume the database changed.
            Err(_) => return Some(true),
        }
    }
    any.then_some(written)
}

/// The database file and the journals SQLite keeps beside it.
fn journal_names(name: &std::ffi::OsStr) -> [OsString; 3] {
    let with = |suffix: &str| {
        let mut n = name.to_owned();
        n.push(suffix);
        n
    };
    [name.to_owned(), with("-wal"), with("-journal")]
}

/// Whether an event may mean the database changed: a write to one of its files, or one the kernel could not
/// report (its queue overflowed, or reading failed), which must be assumed to be one.
fn concerns(event: &io::Result<Event<OsString>>, names: &[OsString; 3]) -> bool {
    match event {
        Err(_) => true,
        Ok(event) => {
            event.mask.contains(EventMask::Q_OVERFLOW)
                || event.name.as_ref().is_some_and(|n| names.contains(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_written(rx: &mut broadcast::Receiver<Change>) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), rx.recv()).await,
            Ok(Ok(Change::Written))
        )
    }

    #[tokio::test]
    async fn a_write_to_the_database_or_its_log_is_signalled_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        std::fs::write(&db, b"").unwrap();
        let (tx, mut rx) = broadcast::channel(16);
        let (_stop, stopped) = oneshot::channel();
        start(&db, tx.downgrade(), stopped).unwrap();

        // Another file of the directory (a log beside the database): no signal.
        std::fs::write(dir.path().join("toolgate.log"), b"line\n").unwrap();
        assert!(
            tokio::time::timeout(PERIOD * 2, rx.recv()).await.is_err(),
            "a write to another file was signalled"
        );

        // The write-ahead log, created (as SQLite does on the first write) then written.
        std::fs::write(dir.path().join("audit.db-wal"), b"frame").unwrap();
        assert!(
            next_written(&mut rx).await,
            "a write to the WAL was not signalled"
        );

        // A burst of writes within one period is one signal, and what comes after is signalled again.
        for _ in 0..50 {
            std::fs::write(&db, b"page").unwrap();
        }
        assert!(
            next_written(&mut rx).await,
            "a write to the database was not signalled"
        );
        tokio::time::sleep(PERIOD * 2).await;
        let mut extra = 0;
        while rx.try_recv().is_ok() {
            extra += 1;
        }
        assert!(extra <= 1, "{extra} signals for one burst");
        std::fs::write(dir.path().join("audit.db-wal"), b"frame").unwrap();
        assert!(
            next_written(&mut rx).await,
            "a later write was not signalled"
        );
    }

    /// Under load the signal keeps coming, one per period: the tasks look as often as a poll would, no more.
    #[tokio::test]
    async fn a_steady_stream_of_writes_is_one_signal_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let (tx, mut rx) = broadcast::channel(64);
        let (_stop, stopped) = oneshot::channel();
        start(&db, tx.downgrade(), stopped).unwrap();
        let wal = dir.path().join("audit.db-wal");
        let started = tokio::time::Instant::now();
        while started.elapsed() < PERIOD * 6 {
            std::fs::write(&wal, b"frame").unwrap();
            std::fs::write(dir.path().join("toolgate.log"), b"line").unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let mut signals = 0;
        while rx.try_recv().is_ok() {
            signals += 1;
        }
        let most = (elapsed.as_secs_f64() / PERIOD.as_secs_f64()).ceil() as usize + 1;
        assert!(
            (3..=most).contains(&signals),
            "{signals} signals for {elapsed:?} of writes (at most {most}, and more than a couple)"
        );
    }

    #[tokio::test]
    async fn the_watch_ends_with_its_stop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let (tx, mut rx) = broadcast::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        start(&db, tx.downgrade(), stopped).unwrap();
        drop(stop);
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&db, b"page").unwrap();
        assert!(
            tokio::time::timeout(PERIOD * 2, rx.recv()).await.is_err(),
            "a stopped watch still signals"
        );
    }
}
