//! The checkpointer: copies committed WAL frames into the database file on
//! a thread of its own, so that the writer thread does not.
//!
//! With SQLite's automatic checkpoint the writer copied every 1,000 frames
//! itself, inside the commit that crossed the mark: the profile of the
//! engine bench put 11% of all samples (a fifth of the writer's time) in
//! that copy and its fsyncs. Here the writer's automatic checkpoint is
//! moved to a far mark ([`WRITER_CHECKPOINT_PAGES`]) and this thread runs
//! `PASSIVE` checkpoints after commits, at most one per interval, which
//! never block the writer or readers. A passive checkpoint cannot reset the WAL while the
//! writer keeps appending, so the far mark stays as the backstop: when it
//! is crossed the writer checkpoints what is left (little, as most frames
//! were already copied) and SQLite starts the WAL over.
//!
//! It owns one connection and no data: it never reads or writes a row.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

use super::{Error, Result};

/// The shortest time between two checkpoints of this thread. Short, so
/// that little of the WAL is left unsynced when the writer crosses its far
/// mark: the writer's own checkpoint then syncs the WAL and the file inside
/// a commit, and with 100 ms here those commits took 10 to 25 ms and set
/// the p99 of a run created over HTTP at 32 clients (11.3 to 14.3 ms against
/// 8.0 and 8.1 ms at 10 ms, alternating runs of `cargo bench --bench
/// http`, issue 18). The engine bench did not slow (22,968 / 22,807 runs/s
/// at 100 ms, 23,936 / 24,350 at 10 ms). An idle store is not checkpointed
/// at all: only a commit wakes this thread.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

/// The writer connection's `wal_autocheckpoint`: the WAL size (in pages)
/// past which the writer checkpoints itself, so that the WAL is bounded
/// (about 32 MiB with 4 KiB pages) even when this thread falls behind.
pub(super) const WRITER_CHECKPOINT_PAGES: i64 = 8_000;

/// Handle to the checkpointer thread; stops it on drop.
pub(super) struct Checkpointer {
    wake: Sender<()>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(busy_timeout)?;
        let (wake, woken) = bounded(1);
        let (stop, stopped) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("taskyard-checkpoint".into())
            .spawn(move || run(connection, woken, stopped))
            .map_err(|e| Error::Sqlite(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            wake,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Called after each commit; never blocks the writer.
    pub(super) fn notify(&self) -> impl Fn() + Send + 'static {
        let wake = self.wake.clone();
        move || {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(connection: Connection, woken: Receiver<()>, stopped: Receiver<()>) {
    loop {
        crossbeam_channel::select! {
            recv(woken) -> message => if message.is_err() { return },
            recv(stopped) -> _ => return,
        }
        checkpoint(&connection);
        // At most one checkpoint per interval: each one fsyncs twice, and
        // a commit's wake-up during the wait is kept by the channel, so the
        // frames of the last commit are copied too.
        if !matches!(
            stopped.recv_timeout(CHECKPOINT_INTERVAL),
            Err(RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// One passive checkpoint. A failure (busy: the writer's own checkpoint
/// runs) is left to the next wake-up.
fn checkpoint(connection: &Connection) {
    let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}
