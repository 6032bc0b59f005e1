//! The pruner: a thread that, while the writer is idle, asks it to prune
//! one small batch of what the retention policy says is old enough; and
//! the same pruning on demand, when a write finds the database full.
//!
//! Batches of at most `PRUNE_ROWS_PER_BATCH` rows, each its own
//! transaction, so that pruning never holds the writer more than a few
//! milliseconds and never delays a request's write (the thread prunes only
//! when no op waits). Each batch also gives up to `PRUNE_PAGES_PER_BATCH`
//! free pages back to the file system, so that the file shrinks. What is
//! pruned, and what never is, is the store's (`store/writer/prune.rs`).
//! Holds no SQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Engine, Retention};
use crate::limits::{
    PRUNE_LOOK_MS, PRUNE_PAGES_PER_BATCH, PRUNE_ROOM_BATCHES_MAX, PRUNE_ROOM_TRIES_MAX,
    PRUNE_ROWS_PER_BATCH,
};
use crate::model::Timestamp;
use crate::store::{self, Op, PrunePolicy, Pruned, Reply, Store};

pub(super) struct Pruner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the pruner's thread and the writes that make room share.
struct Shared {
    store: Arc<Store>,
    retention: Retention,
    stopping: AtomicBool,
    /// A write found the database full since the thread last looked. Its
    /// own `Arc`: the writer's hook holds it, and holding `Shared` there
    /// would make a cycle through the store that is never dropped.
    full: Arc<AtomicBool>,
    /// Held while room is made, so that writes that found the database
    /// full together prune once, not once each.
    making_room: Mutex<()>,
    /// Called once room was made: runs the full database could not claim
    /// or finish can go on.
    on_room: Box<dyn Fn() + Send + Sync>,
}

impl Pruner {
    pub(super) fn start(
        store: Arc<Store>,
        retention: Retention,
        on_room: Box<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Pruner> {
        let shared = Arc::new(Shared {
            store,
            retention,
            stopping: AtomicBool::new(false),
            full: Arc::new(AtomicBool::new(false)),
            making_room: Mutex::new(()),
            on_room,
        });
        let look_every = retention
            .look_every
            .unwrap_or(Duration::from_millis(PRUNE_LOOK_MS));
        let looking = shared.clone();
        let thread = std::thread::Builder::new()
            .name("taskyard-pruner".into())
            .spawn(move || looking.run(look_every))?;
        let (full, pruner) = (shared.full.clone(), thread.thread().clone());
        // Any write that finds the database full (a finish, a claim, a
        // fire, not only a request) wakes the thread to make room at once.
        shared.store.writer.on_full(Box::new(move || {
            full.store(true, Ordering::SeqCst);
            pruner.unpark();
        }));
        Ok(Pruner {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(super) fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn run(&self, look_every: Duration) {
        // Full until room is made: a database found full when nothing was
        // old enough yet is looked at again every `PRUNE_LOOK_MS`, whatever
        // `look_every` is, as the write that found it (a claim) may not
        // come back on its own.
        let mut full = false;
        while !self.stopping.load(Ordering::SeqCst) {
            full |= self.full.swap(false, Ordering::SeqCst);
            if full {
                full = !self.make_room();
                if full {
                    std::thread::park_timeout(Duration::from_millis(PRUNE_LOOK_MS));
                }
                continue;
            }
            let more = self.store.writer.is_idle()
                && prune_once(&self.store, &self.retention).is_some_and(|pruned| is_full(&pruned));
            if !more {
                std::thread::park_timeout(look_every);
            }
        }
    }

    /// Prunes what the policy allows now, for a database found full: batch
    /// after batch until nothing is left to prune or
    /// `PRUNE_ROOM_BATCHES_MAX` batches ran. True when room may have been
    /// made (this call pruned something, or another call pruned while this
    /// one waited for it), so that the write is worth trying again.
    fn make_room(&self) -> bool {
        // Another write pruning now may make this one's room too: wait for
        // it, then prune what is left, and call it room either way.
        let (_room, waited) = match self.making_room.try_lock() {
            Some(guard) => (guard, false),
            None => (self.making_room.lock(), true),
        };
        let mut made = waited;
        for _ in 0..PRUNE_ROOM_BATCHES_MAX {
            // Rows only: pages given back shrink the file, not the room
            // under the cap, which counts free pages as room already.
            match prune_once(&self.store, &self.retention) {
                Some(pruned) if pruned.rows() > 0 => made = true,
                _ => break,
            }
        }
        if made {
            (self.on_room)();
        }
        made
    }
}

/// The batch was as large as allowed: more may be waiting.
fn is_full(pruned: &Pruned) -> bool {
    pruned.runs >= PRUNE_ROWS_PER_BATCH
        || pruned.keys >= PRUNE_ROWS_PER_BATCH
        || pruned.deliveries >= PRUNE_ROWS_PER_BATCH
        || pruned.pages >= PRUNE_PAGES_PER_BATCH
}

/// One batch; `None` when it failed (it is tried again on the next look).
fn prune_once(store: &Store, retention: &Retention) -> Option<Pruned> {
    let now = Timestamp::now().micros();
    let before = |age: Option<Duration>| age.map(|age| now - age.as_micros() as i64);
    let policy = PrunePolicy {
        runs_before: before(retention.runs),
        keys_before: before(retention.idempotency_keys),
        deliveries_before: before(retention.deliveries),
    };
    store
        .writer
        .call(|reply| Op::Prune {
            policy,
            rows_max: PRUNE_ROWS_PER_BATCH,
            pages_max: PRUNE_PAGES_PER_BATCH,
            reply,
        })
        .ok()
}

impl Engine {
    /// Sends the op that `make` builds to the writer. When the database is
    /// full (`--db-size-max-mb`) and a retention policy is set, prunes
    /// what the policy allows at once, instead of at the pruner's next
    /// look, and sends the op once more: a full database answers
    /// `Unavailable` only when the policy lets nothing more go. `make` may
    /// be called twice, as the first op's payload went with it.
    pub(super) fn write<T: Send + 'static>(
        &self,
        mut make: impl FnMut(Reply<T>) -> Op,
    ) -> store::Result<T> {
        let writer = &self.inner.store.writer;
        let mut result = writer.call(&mut make);
        // Room made while other writes fill it again: try a few times, each
        // after pruning what the policy allows by then.
        for _ in 0..PRUNE_ROOM_TRIES_MAX {
            match (&result, &self.inner.pruner) {
                (Err(store::Error::Full(_)), Some(pruner)) if pruner.shared.make_room() => {
                    result = writer.call(&mut make);
                }
                _ => break,
            }
        }
        result
    }
}
