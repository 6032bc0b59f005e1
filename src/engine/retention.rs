//! The pruner: a thread that, while the writer is idle, asks it to prune
//! one small batch of what the retention policy says is old enough.
//!
//! Batches of at most `PRUNE_ROWS_PER_BATCH` rows, each its own
//! transaction, so that pruning never holds the writer more than a few
//! milliseconds and never delays a request's write (it runs only when no op
//! waits). What is pruned, and what never is, is the store's
//! (`store/writer/prune.rs`). Holds no SQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::Retention;
use crate::limits::{PRUNE_LOOK_MS, PRUNE_ROWS_PER_BATCH};
use crate::model::Timestamp;
use crate::store::{Op, PrunePolicy, Store};

pub(super) struct Pruner {
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Pruner {
    pub(super) fn start(store: Arc<Store>, retention: Retention) -> std::io::Result<Pruner> {
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("taskyard-pruner".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let full = store.writer.is_idle() && prune_once(&store, &retention);
                    if !full {
                        std::thread::park_timeout(Duration::from_millis(PRUNE_LOOK_MS));
                    }
                }
            })?;
        Ok(Pruner {
            stopping,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One batch; true when it was full (more may be waiting).
fn prune_once(store: &Store, retention: &Retention) -> bool {
    let now = Timestamp::now().micros();
    let before = |age: Option<Duration>| age.map(|age| now - age.as_micros() as i64);
    let policy = PrunePolicy {
        runs_before: before(retention.runs),
        keys_before: before(retention.idempotency_keys),
        deliveries_before: before(retention.deliveries),
    };
    match store.writer.call(|reply| Op::Prune {
        policy,
        rows_max: PRUNE_ROWS_PER_BATCH,
        reply,
    }) {
        Ok(pruned) => pruned.runs >= PRUNE_ROWS_PER_BATCH || pruned.keys >= PRUNE_ROWS_PER_BATCH,
        Err(_) => false,
    }
}
