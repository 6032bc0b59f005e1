//! The hub: who is waiting for which stream, the recent events of each
//! followed stream, and waking followers after commits.
//!
//! After each commit the writer hands the hub the new high-water event id,
//! the streams the commit advanced ([`StreamKey`]) and the stream rows it
//! wrote. The hub keeps the last [`WINDOW_EVENTS_MAX`] rows of each stream
//! that has a follower, so that a caught-up subscriber takes new events
//! from memory instead of every follower of a busy stream queueing on the
//! read pool after every commit (1,000 followers did: p99 of 232 ms from
//! commit to client). A follower that is behind the window (resuming from
//! an old cursor, or too slow) reads the store, as before, until it
//! reaches the window. The hub must not touch SQLite or know the wire
//! format: rows are opaque bytes here. With several nodes on one
//! PostgreSQL database, a notice may say that other nodes' events came
//! first (`CommitNotice::others_upto`): the windows restart above them.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{Thread, ThreadId};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::store::{CommitNotice, CommittedEvent, StreamKey};

/// Rows kept per followed stream. A follower further behind than this
/// reads the store; a larger window only spares slow followers that read.
pub const WINDOW_EVENTS_MAX: usize = 512;

/// Wakes subscribers when the streams they follow advance.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
    /// Outside the lock: every follower checks it on every step.
    closed: AtomicBool,
}

#[derive(Default)]
struct HubState {
    last_event_id: u64,
    watches: HashMap<StreamKey, Arc<Watch>>,
}

/// One followed stream: its recent rows, a counter of commits that touched
/// it, and its sleepers. The publisher unparks each sleeper itself: with a
/// condition variable every woken follower must take the same mutex again
/// on the way out, and 500 followers of one stream queued on it one
/// context switch after another.
struct Watch {
    state: RwLock<WatchState>,
    /// Sleeping (or about to sleep) followers, by watcher number.
    sleepers: Mutex<Vec<(u64, Thread)>>,
}

struct WatchState {
    version: u64,
    /// Every row of the stream with an id above `floor` is in `recent`.
    floor: u64,
    recent: VecDeque<CommittedEvent>,
}

impl Watch {
    fn new(floor: u64) -> Watch {
        Watch {
            state: RwLock::new(WatchState {
                version: 0,
                floor,
                recent: VecDeque::new(),
            }),
            sleepers: Mutex::new(Vec::new()),
        }
    }

    fn wake(&self) {
        for (_, thread) in self.sleepers.lock().iter() {
            thread.unpark();
        }
    }

    fn bump(&self) {
        self.state.write().version += 1;
        self.wake();
    }
}

/// What [`Watcher::recent_after`] found.
pub struct Recent {
    /// The stream's version when the rows were taken; pass it to
    /// [`Watcher::wait`].
    pub version: u64,
    /// Every row above this id is in the window.
    pub floor: u64,
    /// The rows above the asked id, in id order; `None` when the asked id
    /// is below the floor (some rows after it may be gone from memory).
    pub events: Option<Vec<CommittedEvent>>,
}

impl Hub {
    pub fn new(last_event_id: u64) -> Hub {
        Hub {
            state: Mutex::new(HubState {
                last_event_id,
                watches: HashMap::new(),
            }),
            closed: AtomicBool::new(false),
        }
    }

    /// Called by the writer after a commit, before callers are answered.
    /// Holding the hub's lock throughout orders publications with
    /// [`Hub::watch`]: a watch created before this sees all its rows, one
    /// created after starts its window above them.
    pub fn publish(&self, notice: &CommitNotice) {
        let mut state = self.state.lock();
        if let Some(upto) = notice
            .others_upto
            .filter(|upto| *upto > state.last_event_id)
        {
            // Other nodes committed events up to `upto` that no window
            // holds: every window restarts above them, and every follower
            // wakes to read them from the store. Ids at or below the last
            // published are covered already (the writer that published
            // them saw these ids taken, and said so).
            for watch in state.watches.values() {
                let mut watch_state = watch.state.write();
                watch_state.recent.clear();
                watch_state.floor = upto;
                drop(watch_state);
                watch.bump();
            }
            state.last_event_id = upto;
        }
        // Another node's notice can arrive after a later local one.
        state.last_event_id = state.last_event_id.max(notice.last_event_id);
        for event in &notice.events {
            if let Some(watch) = state.watches.get(&event.key) {
                let mut watch = watch.state.write();
                if event.id <= watch.floor {
                    // Published late, after a reset above it: the store
                    // has it for whoever needs it.
                    continue;
                }
                debug_assert!(watch.recent.back().is_none_or(|last| last.id < event.id));
                watch.recent.push_back(event.clone());
                if watch.recent.len() > WINDOW_EVENTS_MAX {
                    if let Some(evicted) = watch.recent.pop_front() {
                        watch.floor = evicted.id;
                    }
                }
            }
        }
        for key in &notice.keys {
            if let Some(watch) = state.watches.get(key) {
                watch.bump();
            }
        }
    }

    /// Wakes every follower for good: the engine is shutting down, so
    /// streams end instead of waiting for commits that will not come.
    pub fn close(&self) {
        let state = self.state.lock();
        self.closed.store(true, Ordering::SeqCst);
        for watch in state.watches.values() {
            watch.bump();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The largest event id known to be committed.
    pub fn last_event_id(&self) -> u64 {
        self.state.lock().last_event_id
    }

    /// Starts following a stream. Take the watch *before* reading the
    /// store, then sleep with [`Watcher::wait`] on the version seen before
    /// the read: a commit in between bumps the version, so no wake-up is
    /// lost.
    pub fn watch(self: &Arc<Hub>, key: StreamKey) -> Watcher {
        let mut state = self.state.lock();
        let floor = state.last_event_id;
        let watch = state
            .watches
            .entry(key)
            .or_insert_with(|| Arc::new(Watch::new(floor)))
            .clone();
        drop(state);
        Watcher {
            hub: self.clone(),
            key,
            watch,
            number: WATCHER_NUMBER.fetch_add(1, Ordering::Relaxed),
            listed: Cell::new(None),
        }
    }

    /// Streams with at least one follower (for metrics and tests).
    pub fn watched_streams(&self) -> usize {
        self.state.lock().watches.len()
    }
}

/// One subscriber's hold on a stream; dropping it stops the following.
pub struct Watcher {
    hub: Arc<Hub>,
    key: StreamKey,
    watch: Arc<Watch>,
    /// Names this watcher among the watch's sleepers.
    number: u64,
    /// The thread listed among the sleepers, once listed.
    listed: Cell<Option<ThreadId>>,
}

static WATCHER_NUMBER: AtomicU64 = AtomicU64::new(0);

impl Watcher {
    /// The stream's version now; pass it to [`Watcher::wait`].
    pub fn version(&self) -> u64 {
        self.watch.state.read().version
    }

    /// The stream's rows with an id above `after` that are in memory, with
    /// the version they go with, all under one lock so that a row published
    /// after the take also bumps the version past the one answered.
    pub fn recent_after(&self, after: u64) -> Recent {
        let watch = self.watch.state.read();
        let events = (after >= watch.floor).then(|| {
            // Rows are in id order: skip the ones already taken.
            let start = watch.recent.partition_point(|event| event.id <= after);
            watch.recent.range(start..).cloned().collect()
        });
        Recent {
            version: watch.version,
            floor: watch.floor,
            events,
        }
    }

    /// True once the hub is closed: the stream should end.
    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }

    /// Lists the calling thread as this watcher's sleeper, in place of the
    /// thread listed before (a subscription may move between threads): the
    /// next bump unparks it, whether it parks in [`Watcher::wait`] or
    /// elsewhere.
    pub fn listen(&self) {
        let current = std::thread::current();
        if self.listed.get() == Some(current.id()) {
            return;
        }
        self.listed.set(Some(current.id()));
        let mut sleepers = self.watch.sleepers.lock();
        match sleepers
            .iter_mut()
            .find(|(number, _)| *number == self.number)
        {
            Some(entry) => entry.1 = current,
            None => sleepers.push((self.number, current)),
        }
    }

    /// Sleeps until the version moves past `seen` or `deadline` passes;
    /// true when it moved.
    pub fn wait(&self, seen: u64, deadline: Instant) -> bool {
        // Listed before the check: a bump after the check unparks us, and
        // an unpark before the park makes the park return at once.
        self.listen();
        loop {
            if self.watch.state.read().version != seen {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::park_timeout(left);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.watch
            .sleepers
            .lock()
            .retain(|(number, _)| *number != self.number);
        let mut state = self.hub.state.lock();
        // The map's reference and ours: we are the last follower.
        if Arc::strong_count(&self.watch) == 2 {
            state.watches.remove(&self.key);
        }
    }
}
