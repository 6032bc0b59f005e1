//! Following a stream: a group's events (resumable by event id) or a
//! run's progress and state (not resumable), as a blocking iterator.
//!
//! A caught-up group follower takes new events from the hub's window; one
//! that is behind, and every run follower, reads the store. Events are the
//! model's: a face renders them when it sends them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Result;
use super::Engine;
use crate::events::Watcher;
use crate::limits::STREAM_PAGE_ROWS_MAX;
use crate::model::{Event, EventData, RunStatus};
use crate::store::{Store, StreamKey};

/// Which stream to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// A group's status events and its runs' terminal states; resumable by
    /// event id.
    GroupEvents(String),
    /// A run's state, progress and final state; not resumable.
    RunEvents(String),
}

impl Engine {
    /// Follows a stream from just after `after` (0: from the start) for at
    /// most `timeout`.
    pub fn subscribe(
        &self,
        stream: StreamKind,
        after: u64,
        timeout: Duration,
    ) -> Result<Subscription> {
        let deadline = Instant::now() + timeout;
        let (key, state) = match &stream {
            StreamKind::GroupEvents(group_id) => {
                let group = self.group_row(group_id)?;
                (
                    StreamKey::Group(group.seq),
                    Following::Group {
                        seq: group.seq,
                        covered: after,
                        active: None,
                        status_seen: 0,
                    },
                )
            }
            StreamKind::RunEvents(run_id) => {
                let run = self.run_row(run_id)?;
                (
                    StreamKey::Run(run.seq),
                    Following::Run {
                        seq: run.seq,
                        started: false,
                    },
                )
            }
        };
        Ok(Subscription {
            store: self.inner.store.clone(),
            watcher: self.inner.hub.watch(key),
            following: state,
            cursor: after,
            deadline,
            buffer: VecDeque::new(),
            ended: false,
        })
    }
}

/// What a step of a subscription gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Event(Event),
    /// Nothing happened within the wait; the stream is still open (time for
    /// a keep-alive).
    Idle,
    /// The stream has ended.
    End,
}

enum Following {
    /// Every event of the group's stream up to `covered` has been taken;
    /// `active` is the group's state, when known. A group turns active or
    /// inactive only in a commit that also writes a group status
    /// event, so the status events in the window keep it current.
    Group {
        seq: i64,
        covered: u64,
        active: Option<bool>,
        /// Every group status event up to this id is reflected in
        /// `active` (the cursor may be past some: a resume from the future).
        status_seen: u64,
    },
    Run {
        seq: i64,
        started: bool,
    },
}

/// What a group stream's look at the hub's window found.
enum WindowStep {
    /// The window held the step: whether events were added, and the
    /// stream version they go with.
    Filled(bool, u64),
    /// The store must be read; the window's floor and version then.
    Behind { floor: u64, version: u64 },
}

/// A live stream: a blocking iterator over events, resumable by cursor.
pub struct Subscription {
    store: Arc<Store>,
    watcher: Watcher,
    following: Following,
    cursor: u64,
    deadline: Instant,
    buffer: VecDeque<Event>,
    ended: bool,
}

impl Subscription {
    /// The id of the last event read from the log (the resume cursor).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next event, waiting at most `wait`.
    pub fn next_within(&mut self, wait: Duration) -> Result<Next> {
        let until = (Instant::now() + wait).min(self.deadline);
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Next::Event(event));
            }
            if self.ended || self.watcher.is_closed() {
                return Ok(Next::End);
            }
            let (added, seen) = self.fill()?;
            if added {
                continue;
            }
            if self.ended {
                return Ok(Next::End);
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.ended = true;
                return Ok(Next::End);
            }
            if now >= until {
                return Ok(Next::Idle);
            }
            self.watcher.wait(seen, until);
        }
    }

    /// The next event without waiting and without reading the store:
    /// `None` when the next step needs the store (the subscription is
    /// behind the hub's window, or it follows a run, whose terminal state
    /// is read from its row). For a caller that must not block, such as
    /// the HTTP layer's fan-out thread; hand the subscription to a thread
    /// of its own for [`Subscription::next_within`] on `None`.
    pub fn next_in_memory(&mut self) -> Result<Option<Next>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(Next::Event(event)));
            }
            if self.ended || self.watcher.is_closed() {
                return Ok(Some(Next::End));
            }
            if matches!(self.following, Following::Run { .. }) {
                return Ok(None);
            }
            match self.fill_from_window() {
                WindowStep::Behind { .. } => return Ok(None),
                WindowStep::Filled(true, _) => continue,
                WindowStep::Filled(false, _) if self.ended => return Ok(Some(Next::End)),
                WindowStep::Filled(false, _) if Instant::now() >= self.deadline => {
                    self.ended = true;
                    return Ok(Some(Next::End));
                }
                WindowStep::Filled(false, _) => return Ok(Some(Next::Idle)),
            }
        }
    }

    /// The followed stream's version: it moves with every commit that
    /// touches the stream. Read it before a step that found nothing; a
    /// version since moved means there may be more.
    pub fn version(&self) -> u64 {
        self.watcher.version()
    }

    /// Lists the calling thread to be unparked when the stream moves,
    /// without parking it: for a thread that waits on many subscriptions
    /// with its own `park`. Call it before reading [`Subscription::version`]
    /// so that no move is missed.
    pub fn listen(&self) {
        self.watcher.listen();
    }

    /// When the stream ends by its lifetime.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes what is new into the buffer: true when something was added,
    /// and the stream version to sleep on when nothing was.
    fn fill(&mut self) -> Result<(bool, u64)> {
        match self.following {
            Following::Group { .. } => match self.fill_from_window() {
                WindowStep::Filled(added, version) => Ok((added, version)),
                WindowStep::Behind { floor, version } => self.fill_from_store(floor, version),
            },
            Following::Run { seq, started } => self.fill_run(seq, started),
        }
    }

    /// A group stream's step from the hub's window, when the window holds
    /// it: it must hold both what is new and every status event since the
    /// group's state was last known.
    fn fill_from_window(&mut self) -> WindowStep {
        let Following::Group {
            ref mut covered,
            ref mut active,
            ref mut status_seen,
            ..
        } = self.following
        else {
            // Only group streams have a window.
            return WindowStep::Behind {
                floor: 0,
                version: self.watcher.version(),
            };
        };
        let recent = self.watcher.recent_after((*covered).min(*status_seen));
        if let (Some(events), Some(_)) = (recent.events, *active) {
            let mut added = false;
            for event in events {
                if let EventData::GroupStatus { status } = event.event.data() {
                    if event.id > *status_seen {
                        *active = Some(status.is_active());
                    }
                }
                *status_seen = (*status_seen).max(event.id);
                if event.id <= *covered {
                    continue;
                }
                // Paired with the writer's check that ids only grow.
                assert!(event.id > self.cursor, "stream ids must exceed the cursor");
                self.cursor = event.id;
                *covered = event.id;
                self.buffer.push_back(event.event.clone());
                added = true;
            }
            match *active {
                Some(active) if !added => {
                    self.ended = !active;
                    return WindowStep::Filled(false, recent.version);
                }
                Some(_) => return WindowStep::Filled(true, recent.version),
                // A status event that did not decode: ask the store.
                None if added => return WindowStep::Filled(true, recent.version),
                None => {}
            }
        }
        WindowStep::Behind {
            floor: recent.floor,
            version: recent.version,
        }
    }

    /// A group stream's step from the store: behind the window, or the
    /// group's state is unknown. `floor` and `version` are the window's
    /// when it was found wanting.
    fn fill_from_store(&mut self, floor: u64, version: u64) -> Result<(bool, u64)> {
        let Following::Group {
            seq,
            ref mut covered,
            ref mut active,
            ref mut status_seen,
        } = self.following
        else {
            // Only group streams are read this way.
            return Ok((false, version));
        };
        let (rows, snapshot_active) =
            self.store
                .group_events(seq, *covered, STREAM_PAGE_ROWS_MAX)?;
        let full_page = rows.len() == STREAM_PAGE_ROWS_MAX;
        let added = !rows.is_empty();
        for (id, data) in rows {
            assert!(id > self.cursor, "stream ids must exceed the cursor");
            self.cursor = id;
            *covered = id;
            self.buffer.push_back(Event::new(Some(id), data));
        }
        if full_page {
            *active = None;
        } else {
            // The snapshot began after `floor` was published and holds
            // every row of this stream up to its end: none lies between the
            // last one read and the floor, and the group's state is the
            // snapshot's, changed since only by status events above the
            // floor.
            *covered = (*covered).max(floor);
            *active = Some(snapshot_active);
            *status_seen = floor;
        }
        if !added {
            self.ended = !snapshot_active;
        }
        Ok((added, version))
    }

    /// A run stream's step: its new rows and its state, from the store.
    fn fill_run(&mut self, seq: i64, started: bool) -> Result<(bool, u64)> {
        let seen = self.watcher.version();
        let (rows, run, output) =
            self.store
                .run_progress(seq, self.cursor, STREAM_PAGE_ROWS_MAX)?;
        let status = run.status;
        let run = run.to_model()?;
        let before = self.buffer.len();
        if !started {
            // The run as it is now, then every message so far and only
            // the latest stats (Parallel's spec 4.3, kept for every face).
            self.buffer.push_back(Event::new(
                None,
                EventData::RunStatus {
                    run: run.clone(),
                    output: None,
                },
            ));
            self.following = Following::Run { seq, started: true };
        }
        let is_stats = |data: &EventData| matches!(data, EventData::Stats { .. });
        let latest_stats = rows.iter().rposition(|(_, data)| is_stats(data));
        let full_page = rows.len() == STREAM_PAGE_ROWS_MAX;
        for (index, (id, data)) in rows.into_iter().enumerate() {
            self.cursor = id;
            let old_stats = is_stats(&data) && !started && Some(index) != latest_stats;
            if !old_stats {
                self.buffer.push_back(Event::new(None, data));
            }
        }
        if status.is_terminal() && !full_page {
            let output = match output.filter(|_| status == RunStatus::Completed) {
                Some(text) => Some(crate::store::parse_output(&text)?),
                None => None,
            };
            self.buffer
                .push_back(Event::new(None, EventData::RunStatus { run, output }));
            self.ended = true;
        }
        Ok((self.buffer.len() > before, seen))
    }
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    /// Blocks until the next event; `None` once the stream has ended.
    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            let wait = self.deadline.saturating_duration_since(Instant::now());
            match self.next_within(wait.max(Duration::from_millis(1))) {
                Ok(Next::Event(event)) => return Some(Ok(event)),
                Ok(Next::Idle) => continue,
                Ok(Next::End) => return None,
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
