//! SQLite's change signal: the database file's writes, as the kernel reports them (inotify).
//!
//! PostgreSQL tells every instance what changed; a SQLite file tells nobody, and other processes may write it
//! (a second instance on the same file, an operator's `sqlite3`). Without a signal the background tasks that
//! must see such changes (the kill switch, escalations decided elsewhere, runs, alerts) would have to read the
//! database several times a second forever, idle or not. With it they sleep until the file is written, by
//! anyone: a commit of this process's audit writer, or another process's.
//!
//! The directory is watched rather than the files, so a write-ahead log that SQLite deletes and creates again is
//! still seen. One signal per [`PERIOD`] at most: the first event removes the watch (under load the kernel
//! would otherwise make an event of every write, about thirty per commit, at the writer's expense), and while
//! it is off the files' metadata (inode, size, modification time) is compared every [`PERIOD`]: a change is
//! one more signal. A whole quiet period puts the watch back, then the metadata is read once more, so that no
//! write falls between the two. So under load the tasks look as often as they would poll and the writes cost
//! nothing more, idle nothing runs, and a write is signalled within [`PERIOD`].

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
    let paths = names.clone().map(|n| dir.join(n));
    let mut events = Inotify::init()?.into_event_stream(vec![0u8; 4096])?;
    let mut watches = events.watches();
    let mask = WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::DELETE;
    // Refused here, the caller polls; refused later, the task does.
    let mut wd = watches.add(&dir, mask)?;
    let mut last = Stamp::of(&paths);
    tokio::spawn(async move {
        loop {
            // Armed: the first event of the directory (of this watch: a removed one's are stale) wakes us.
            let written = loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    _ = &mut stop => return,
                };
                match event {
                    None => return poll(tx, stop).await,
                    Some(Ok(event)) if event.wd != wd => continue,
                    Some(event) => break concerns(&event, &names),
                }
            };
            // Disarmed while the files keep changing: the kernel would otherwise queue (and the writer pay for)
            // an event per write, about thirty per commit.
            let _ = watches.remove(wd.clone());
            let mut signal = written;
            loop {
                if signal {
                    let Some(sender) = tx.upgrade() else { return };
                    let _ = sender.send(Change::Written);
                }
                tokio::select! {
                    () = tokio::time::sleep(PERIOD) => {}
                    _ = &mut stop => return,
                }
                let now = Stamp::of(&paths);
                signal = now != last || !now.settled();
                last = now;
                if signal {
                    continue;
                }
                // Quiet for a period: arm, then look once more, so that a write between the look above and the
                // watch is not lost (it shows in the files' metadata; one after it is an event).
                wd = match watches.add(&dir, mask) {
                    Ok(wd) => wd,
                    Err(e) => {
                        tracing::warn!(error = %e, "the audit database's watch failed; its upkeep reads it several times a second");
                        return poll(tx, stop).await;
                    }
                };
                let now = Stamp::of(&paths);
                if now == last {
                    break;
                }
                last = now;
                let _ = watches.remove(wd.clone());
                signal = true;
            }
        }
    });
    Ok(())
}

/// The database files' metadata (inode, size, modification time; `None` for a file that is not there): what
/// tells of a write while the directory is not watched.
#[derive(PartialEq, Eq)]
struct Stamp([Option<(u64, u64, std::time::SystemTime)>; 3]);

/// A file modified less than this long before a look may be written again with the same modification time
/// (file systems stamp writes with a clock that ticks every few milliseconds): such a stamp proves nothing yet.
const SETTLING: Duration = Duration::from_millis(20);

impl Stamp {
    fn of(paths: &[std::path::PathBuf; 3]) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        Stamp(paths.each_ref().map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.ino(), meta.len(), meta.modified().ok()?))
        }))
    }

    /// Whether every file was last written long enough ago that a later write must change its stamp.
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now();
        self.0.iter().flatten().all(|(_, _, modified)| {
            now.duration_since(*modified)
                .is_ok_and(|age| age >= SETTLING)
        })
    }
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

    /// A watch of `audit.db` in a fresh folder.
    struct Watched {
        dir: tempfile::TempDir,
        db: std::path::PathBuf,
        /// The watch publishes only while a sender lives.
        _tx: broadcast::Sender<Change>,
        rx: broadcast::Receiver<Change>,
        stop: oneshot::Sender<()>,
    }

    fn watched() -> Watched {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let (tx, rx) = broadcast::channel(64);
        let (stop, stopped) = oneshot::channel();
        start(&db, tx.downgrade(), stopped).unwrap();
        Watched {
            dir,
            db,
            _tx: tx,
            rx,
            stop,
        }
    }

    async fn next_written(rx: &mut broadcast::Receiver<Change>) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), rx.recv()).await,
            Ok(Ok(Change::Written))
        )
    }

    #[tokio::test]
    async fn a_write_to_the_database_or_its_log_is_signalled_and_others_are_not() {
        // Every part bound: what `..` leaves is dropped at once (the sender, the stop).
        let Watched {
            dir,
            db,
            _tx,
            mut rx,
            stop: _stop,
        } = watched();

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
        let Watched {
            dir,
            db: _,
            _tx,
            mut rx,
            stop: _stop,
        } = watched();
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
        let Watched {
            dir: _dir,
            db,
            _tx,
            mut rx,
            stop,
        } = watched();
        drop(stop);
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&db, b"page").unwrap();
        assert!(
            tokio::time::timeout(PERIOD * 2, rx.recv()).await.is_err(),
            "a stopped watch still signals"
        );
    }
}
