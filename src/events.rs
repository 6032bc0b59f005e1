//! The hub: who is waiting for which stream, and waking them after commits.
//!
//! After each commit the writer hands the hub the new high-water event id
//! and the streams the commit advanced ([`StreamKey`]); the hub wakes only
//! the subscribers of those streams. Subscribers then read the new rows
//! from the store: the hub holds no events, so a reader resuming from an
//! old cursor and a live reader take the same path (DESIGN, events). It
//! must not touch SQLite or know the wire format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::store::{CommitNotice, StreamKey};

/// Wakes subscribers when the streams they follow advance.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    last_event_id: u64,
    watches: HashMap<StreamKey, Arc<Watch>>,
    closed: bool,
}

/// A counter of commits that touched one stream, and its sleepers.
#[derive(Default)]
struct Watch {
    version: Mutex<u64>,
    changed: Condvar,
}

impl Hub {
    pub fn new(last_event_id: u64) -> Hub {
        Hub {
            state: Mutex::new(HubState {
                last_event_id,
                watches: HashMap::new(),
                closed: false,
            }),
        }
    }

    /// Called by the writer after a commit, before callers are answered.
    pub fn publish(&self, notice: &CommitNotice) {
        let mut state = self.state.lock();
        debug_assert!(notice.last_event_id >= state.last_event_id);
        state.last_event_id = notice.last_event_id;
        for key in &notice.keys {
            if let Some(watch) = state.watches.get(key) {
                *watch.version.lock() += 1;
                watch.changed.notify_all();
            }
        }
    }

    /// Wakes every follower for good: the engine is shutting down, so
    /// streams end instead of waiting for commits that will not come.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        for watch in state.watches.values() {
            *watch.version.lock() += 1;
            watch.changed.notify_all();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
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
        let watch = self.state.lock().watches.entry(key).or_default().clone();
        Watcher {
            hub: self.clone(),
            key,
            watch,
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
}

impl Watcher {
    /// The stream's version now; pass it to [`Watcher::wait`].
    pub fn version(&self) -> u64 {
        *self.watch.version.lock()
    }

    /// True once the hub is closed: the stream should end.
    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }

    /// Sleeps until the version moves past `seen` or `deadline` passes;
    /// true when it moved.
    pub fn wait(&self, seen: u64, deadline: Instant) -> bool {
        let mut version = self.watch.version.lock();
        while *version == seen {
            if self
                .watch
                .changed
                .wait_until(&mut version, deadline)
                .timed_out()
            {
                return *version != seen;
            }
        }
        true
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut state = self.hub.state.lock();
        // The map's reference and ours: we are the last follower.
        if Arc::strong_count(&self.watch) == 2 {
            state.watches.remove(&self.key);
        }
    }
}
